-- The one classification of a submission (common/src/ledger/verdict.rs spells the same list):
--   accepted           completed, not empty, the validator scored it (fidelity > 0);
--   penalised          completed, not empty, scored 0 without failing validation (the 600 s
--                      penalty);
--   validation_failed  completed, not empty, validation failed (scored 0, no penalty);
--   empty              completed empty submission (a release, or nothing worth submitting);
--   lost               failed: the validator never processed it (refused or never delivered);
--   sending            not finished yet.
-- The submitter's counters read the function (its finish statement returns it), and the
-- puller's acceptance figures and every report in sql/reports read the view.

CREATE FUNCTION submission_verdict(state text, empty boolean, task_fidelity_score real,
                                   validation_failed boolean)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN state = 'failed' THEN 'lost'
        WHEN state <> 'completed' THEN 'sending'
        WHEN empty THEN 'empty'
        WHEN task_fidelity_score > 0 THEN 'accepted'
        WHEN coalesce(validation_failed, false) THEN 'validation_failed'
        ELSE 'penalised'
    END
$$;

CREATE VIEW submission_verdicts AS
SELECT s.*,
       submission_verdict(s.state, s.empty, s.task_fidelity_score, s.validation_failed)
           AS verdict
FROM submissions s;
