-- crmflow schema, version 3: what running processes report about themselves, for
-- `crmflow status`. Each process running a stage upserts one row per (stage, instance) every few
-- seconds (its heartbeat); rows of instances gone for a day are pruned by the next heartbeat.
CREATE TABLE stage_status (
    stage             text        NOT NULL,
    instance          text        NOT NULL,
    heartbeat_at      timestamptz NOT NULL,
    started_at        timestamptz NOT NULL,
    last_progress_at  timestamptz,
    records_in        bigint      NOT NULL DEFAULT 0,
    records_out       bigint      NOT NULL DEFAULT 0,
    rejected          bigint      NOT NULL DEFAULT 0,
    last_error        text,
    last_error_at     timestamptz,
    PRIMARY KEY (stage, instance)
);

-- When a source last knew it had read everything modified up to `synced_at` (its cursor, or the
-- start of a poll that came back complete): source lag is now - synced_at.
CREATE TABLE source_status (
    source      text        NOT NULL,
    entity      text        NOT NULL,
    synced_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, entity)
);
