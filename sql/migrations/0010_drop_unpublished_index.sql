-- The puller now records a task in the transaction that publishes it (`ledger::record_task`):
-- a row exists only once the broker confirmed its message, with `published_at` set, so no
-- queued task is ever unpublished and nothing looks for one. 0002's index of them is dead.

DROP INDEX IF EXISTS tasks_unpublished_idx;
