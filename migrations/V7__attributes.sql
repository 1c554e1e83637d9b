-- crmflow schema, version 7: custom fields.
--
-- `attributes` holds a record's mapped custom fields ([mapping.<crm>.<entity>]) as one jsonb
-- object: attribute name -> string, number, boolean, array of strings, or (type `date`) an
-- RFC 3339 UTC string. The sink writes the whole object under the same version guard as every
-- other column, so a row's attributes are those of its latest version under the mapping that
-- normalized it. A GIN index (default jsonb_ops: @>, ?, ?|, ?&) serves filters such as
-- `attributes @> '{"visa_status": "Citizen"}'` and `attributes ? 'day_rate'`.
--
-- Adding a column with a constant default does not rewrite the table (PostgreSQL 11+); the
-- index build reads it once and blocks writes meanwhile (the sink waits).
ALTER TABLE candidates ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE positions ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
CREATE INDEX candidates_attributes_idx ON candidates USING gin (attributes);
CREATE INDEX positions_attributes_idx ON positions USING gin (attributes);
