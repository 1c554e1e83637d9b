-- crmflow schema, version 9: reconciliation lists id ranges concurrently.
--
-- A run splits the entity's id space into ranges and lists them at once; `ranges` keeps, per
-- range, its bounds, the last id whose repairs Kafka acknowledged, whether it is done and its
-- counts, so a killed run resumes every range where it stopped. The row's counts are the sums.
-- `last_id` stays for runs started before V9 (one range from the start, resumed after it).
ALTER TABLE reconcile_runs ADD COLUMN ranges jsonb;
