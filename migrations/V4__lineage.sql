-- crmflow schema, version 4: what `crmflow lineage` and per-record traces need beyond version 1.
--
-- Rows remember the canonical message they were written from (the canonical topic is known from
-- the table: crm.canonical.candidate / .position), next to the raw one they already name.
ALTER TABLE candidates ADD COLUMN canonical_partition integer, ADD COLUMN canonical_offset bigint;
ALTER TABLE positions ADD COLUMN canonical_partition integer, ADD COLUMN canonical_offset bigint;

-- Vectors and match-queue entries carry the W3C traceparent of the change that produced them:
-- the vector's trace id for lineage, and for a sampled change the embed span the match step's
-- span hangs under.
ALTER TABLE embeddings ADD COLUMN traceparent text;
ALTER TABLE match_queue ADD COLUMN traceparent text;
