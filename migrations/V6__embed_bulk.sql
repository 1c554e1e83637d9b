-- crmflow schema, version 6: the embed stage's bulk path.
--
-- A (model, entity) listed here is being bulk-loaded: its HNSW index was dropped (in the same
-- transaction that inserted the row), so vectors go into `embeddings` without per-row index
-- inserts, through the same guarded upserts, deletes and offsets as always. Matching keeps
-- answering meanwhile by exact search over what is stored. When the backlog is drained, the
-- index is built once (CREATE INDEX with the configured maintenance_work_mem and parallel
-- workers) and the row deleted in the same transaction, so the index appears atomically. A
-- crash leaves the row, and the next run carries on loading and builds the index at the end.
CREATE TABLE embed_bulk (
    model       text        NOT NULL,
    entity      text        NOT NULL,
    reason      text        NOT NULL,
    backlog     bigint      NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, entity)
);
