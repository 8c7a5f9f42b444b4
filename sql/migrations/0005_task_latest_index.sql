-- The puller reads each validator's latest task (ORDER BY pulled_at DESC, id DESC LIMIT 1) on
-- its scheduling ticks. tasks_validator_pulled_at_idx (validator_id, pulled_at) cannot give the
-- id tie-break, so PostgreSQL read and sorted every task of the validator on each read: a cost
-- that grew with the table (about 1,800 rows scanned per task in the broker-path benchmark
-- after a few thousand tasks). This index answers the read with one row, and serves every
-- range scan the old one did.
CREATE INDEX tasks_validator_latest_idx ON tasks (validator_id, pulled_at DESC, id DESC);
DROP INDEX tasks_validator_pulled_at_idx;
