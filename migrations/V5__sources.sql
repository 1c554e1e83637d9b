-- crmflow schema, version 5: sources as a plug-in point with active/standby readers.

-- One lease per source: the process named `holder` is the source's only active reader until
-- `expires_at` (database clock). It renews the lease every fifth of its time to live; a standby
-- takes an expired (or released) lease over and increments `epoch`, the fencing token every cursor
-- write of the holder is checked against.
CREATE TABLE source_leases (
    source       text        PRIMARY KEY,
    holder       text        NOT NULL,
    epoch        bigint      NOT NULL,
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

-- Every process running a source, active or standby, with its heartbeat (for `crmflow status`).
CREATE TABLE source_instances (
    source        text        NOT NULL,
    instance      text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('active', 'standby')),
    since         timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    PRIMARY KEY (source, instance)
);

-- What each entity of a source is doing: `polling` (poll sources), `snapshot` (a push or event
-- source reading everything by poll before it follows events; with records read and found) or
-- `streaming` (following events). A snapshot that is not `streaming` yet is resumed at start-up.
CREATE TABLE source_phases (
    source          text        NOT NULL,
    entity          text        NOT NULL,
    phase           text        NOT NULL CHECK (phase IN ('polling', 'snapshot', 'streaming')),
    snapshot_read   bigint      NOT NULL DEFAULT 0,
    snapshot_total  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, entity)
);
