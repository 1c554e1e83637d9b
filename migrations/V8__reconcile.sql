-- crmflow schema, version 8: reconciliation runs.
--
-- One row per reconcile of one (crm, entity). A run lists the CRM in id order and moves
-- `last_id` (the last id whose repairs Kafka acknowledged) page by page, with the counts so far,
-- so a killed run is resumed where it stopped by the next one (same crm and entity, not dry).
-- `crmflow status` shows the latest finished run of each entity.
CREATE TABLE reconcile_runs (
    run_id        bigserial   PRIMARY KEY,
    crm           text        NOT NULL,
    entity        text        NOT NULL,
    dry_run       boolean     NOT NULL,
    state         text        NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    last_id       text,
    listed        bigint      NOT NULL DEFAULT 0,
    missing       bigint      NOT NULL DEFAULT 0,
    stale         bigint      NOT NULL DEFAULT 0,
    gone          bigint      NOT NULL DEFAULT 0,
    newer_in_pg   bigint      NOT NULL DEFAULT 0,
    in_dlq        bigint      NOT NULL DEFAULT 0,
    repaired      bigint      NOT NULL DEFAULT 0,
    requests      bigint      NOT NULL DEFAULT 0,
    error         text
);
CREATE INDEX reconcile_runs_entity_idx ON reconcile_runs (crm, entity, run_id DESC);
