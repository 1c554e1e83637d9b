-- crmflow schema, version 1. Applied by `crmflow migrate` and at start-up (refinery).
CREATE EXTENSION IF NOT EXISTS vector;

-- Canonical candidates. A row is only replaced by a newer source_version (the sink's version
-- guard); a delete keeps the row as a tombstone with deleted_at set and the delete's version.
CREATE TABLE candidates (
    crm              text        NOT NULL,
    crm_id           text        NOT NULL,
    source_version   bigint      NOT NULL,
    deleted_at       timestamptz,
    first_name       text,
    last_name        text,
    email            text,
    phone            text,
    mobile           text,
    address_line1    text,
    address_line2    text,
    city             text,
    state            text,
    zip              text,
    country_code     text,
    status           text,
    occupation       text,
    company_name     text,
    skills           text[]      NOT NULL DEFAULT '{}',
    summary          text,
    date_available   timestamptz,
    owner_id         text,
    owner_name       text,
    date_added       timestamptz,
    -- lineage
    event_id         text        NOT NULL,
    raw_topic        text        NOT NULL,
    raw_partition    integer     NOT NULL,
    raw_offset       bigint      NOT NULL,
    trace_id         text,
    written_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (crm, crm_id)
);
CREATE INDEX candidates_email_idx ON candidates (email) WHERE deleted_at IS NULL;

-- Canonical positions (Bullhorn JobOrder).
CREATE TABLE positions (
    crm                      text        NOT NULL,
    crm_id                   text        NOT NULL,
    source_version           bigint      NOT NULL,
    deleted_at               timestamptz,
    title                    text,
    description              text,
    status                   text,
    is_open                  boolean,
    employment_type          text,
    salary                   double precision,
    salary_unit              text,
    pay_rate                 double precision,
    num_openings             integer,
    start_date               timestamptz,
    skills                   text[]      NOT NULL DEFAULT '{}',
    address_line1            text,
    address_line2            text,
    city                     text,
    state                    text,
    zip                      text,
    country_code             text,
    client_corporation_id    text,
    client_corporation_name  text,
    owner_id                 text,
    owner_name               text,
    date_added               timestamptz,
    event_id                 text        NOT NULL,
    raw_topic                text        NOT NULL,
    raw_partition            integer     NOT NULL,
    raw_offset               bigint      NOT NULL,
    trace_id                 text,
    written_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (crm, crm_id)
);

-- One vector per (record, model). The column has no fixed dimension so several models can
-- live side by side; each model gets its own HNSW expression index on embedding::vector(dim),
-- created by the embed stage for its configured model and dimension.
CREATE TABLE embeddings (
    entity          text        NOT NULL,
    crm             text        NOT NULL,
    crm_id          text        NOT NULL,
    model           text        NOT NULL,
    content_hash    text        NOT NULL,
    embedding       vector      NOT NULL,
    source_version  bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, crm, crm_id, model)
);

-- Top-k matches of one record against the other side, replaced as a whole when the record's
-- vector changes.
CREATE TABLE matches (
    model         text        NOT NULL,
    from_entity   text        NOT NULL,
    from_crm      text        NOT NULL,
    from_id       text        NOT NULL,
    rank          integer     NOT NULL,
    to_entity     text        NOT NULL,
    to_crm        text        NOT NULL,
    to_id         text        NOT NULL,
    score         real        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, from_entity, from_crm, from_id, rank)
);
CREATE INDEX matches_to_idx ON matches (model, to_entity, to_crm, to_id);

-- A source's resume point (Bullhorn (dateLastModified, id), an event requestId, ...), moved only
-- after Kafka acknowledged every event before it.
CREATE TABLE source_cursors (
    source      text        NOT NULL,
    entity      text        NOT NULL,
    cursor      jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, entity)
);

-- Kafka -> Postgres stages keep their consumer positions here, written in the same transaction
-- as the rows they cover. next_offset is the offset of the next message to read.
CREATE TABLE stage_offsets (
    stage        text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    next_offset  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, topic, partition)
);

-- Control channel from `crmflow replay` to running stages: a replay rewinds stage_offsets and
-- bumps replay_epoch in one transaction; a running stage that sees a new epoch drops the batch in
-- hand and seeks its partitions to the stored offsets. Stage writes read the epoch FOR SHARE, so
-- a write from before a replay can never overwrite the rewound offsets.
CREATE TABLE stage_control (
    stage         text        PRIMARY KEY,
    replay_epoch  bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Dead letters already sent back by `crmflow dlq replay`, so a second replay skips them.
CREATE TABLE dlq_replays (
    dlq_topic      text        NOT NULL,
    dlq_partition  integer     NOT NULL,
    dlq_offset     bigint      NOT NULL,
    replayed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
