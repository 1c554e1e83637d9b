-- crmflow schema, version 2: the work queue between the embed stage and the match step.
--
-- The embed stage inserts a row for every record whose vector it wrote (cascade = true) in the
-- same transaction as the vector and its offsets, and a delete enqueues the records whose match
-- lists point at the deleted one (cascade = false). The match step takes rows with
-- FOR UPDATE SKIP LOCKED (so several instances share the queue), recomputes those records' top-k
-- lists and deletes the rows in the same transaction: a crash loses no work and doubles none.
-- `cascade` asks the match step to also refresh the reverse direction (the other side's records
-- near this one); reverse refreshes themselves enqueue with cascade = false, so they never ripple.
CREATE TABLE match_queue (
    model        text        NOT NULL,
    entity       text        NOT NULL,
    crm          text        NOT NULL,
    crm_id       text        NOT NULL,
    cascade      boolean     NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, entity, crm, crm_id)
);
CREATE INDEX match_queue_order_idx ON match_queue (model, enqueued_at);

-- Records whose last top-k list came out shorter than k because the other side had fewer than
-- k vectors (typical during an initial load: candidates embedded before most positions). Any
-- new record of the other side belongs in such a list, so each change of that side queues them
-- again; a record leaves this table once its list is full (or its vector is gone).
CREATE TABLE match_hungry (
    model   text NOT NULL,
    entity  text NOT NULL,
    crm     text NOT NULL,
    crm_id  text NOT NULL,
    PRIMARY KEY (model, entity, crm, crm_id)
);
