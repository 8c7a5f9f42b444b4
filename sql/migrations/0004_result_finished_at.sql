-- When the worker finished the result a submission answers (ResultMsg.finished_at), so the
-- results-queue hop (worker done -> submitter starts sending, sent_at - result_finished_at)
-- can be read from SQL like the tasks-queue hop (tasks.pulled_at -> attempts.started_at).
-- Set by the submitter's claim; NULL on rows written before this migration and on the
-- puller's releases of lost tasks.

ALTER TABLE submissions ADD COLUMN result_finished_at timestamptz;
