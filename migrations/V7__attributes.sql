-- crmflow schema, version 7: custom fields.
--
-- `attributes` holds a record's mapped custom fields ([mapping.<crm>.<entity>]) as one jsonb
-- object: attribute name -> string, number, boolean, array of strings, or (type `date`) an
-- RFC 3339 UTC string. The sink writes the whole object under the same version guard as every
-- other column, so a row's attributes are those of its latest version under the mapping that
-- normalized it. A GIN index with jsonb_path_ops serves containment filters such as
-- `attributes @> '{"visa_status": "Citizen"}'` (and jsonpath `@?`/`@@`). It indexes one hash per
-- path and value instead of every key and value, which halves the write cost of the default
-- jsonb_ops (100,000 rows of five attributes: 0.67-0.72 s vs 1.37-1.46 s to insert, 0.74 s with
-- no index; psql on the shared machine). Key-existence (`?`) is not indexed; add a jsonb_ops or
-- an expression index for a key you filter on by presence.
--
-- Adding a column with a constant default does not rewrite the table (PostgreSQL 11+); the
-- index build reads it once and blocks writes meanwhile (the sink waits).
ALTER TABLE candidates ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE positions ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
CREATE INDEX candidates_attributes_idx ON candidates USING gin (attributes jsonb_path_ops);
CREATE INDEX positions_attributes_idx ON positions USING gin (attributes jsonb_path_ops);
