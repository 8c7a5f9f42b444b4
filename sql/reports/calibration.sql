-- Calibration: the gate's score of each submitted model against the validator's verdict, per
-- gate mode (the chosen attempt's attempts.gate_mode):
--   validator  the predicted validator score (attempts.predicted_score) in buckets of 0.05;
--   geometry   the local score in buckets of 0.1 (geometry-mode attempts, and every
--              submission recorded before gate modes were).
-- Per bucket: submissions, accepted, penalised, acceptance rate, mean validator score
-- (task_fidelity_score), mean gate score, and for validator mode the mean (validator score −
-- predicted) over accepted submissions, the only ones whose validator score is known (a
-- penalty's fidelity 0 is a verdict, not a score; the fidelity is capped at 1, so the
-- prediction is too); mode_validator_minus_predicted is that mean over the whole mode.
-- net_at_or_above = accepted − penalised among the mode's submissions at or above the
-- bucket's lower edge; best_threshold = the lower edge that maximises it (the pass score that
-- would have done best; ties go to the higher edge). In validator mode, best_threshold minus
-- the validator's 0.6 is the margin ([worker.scorer] margin) that would have done best.
--   psql -d splatfleet -v since='7 days' -f sql/reports/calibration.sql
\if :{?since}
\else
\set since '7 days'
\endif
WITH judged AS (
    SELECT CASE WHEN a.gate_mode = 'validator' AND a.predicted_score IS NOT NULL
                THEN 'validator' ELSE 'geometry' END AS gate_mode,
           CASE WHEN a.gate_mode = 'validator' AND a.predicted_score IS NOT NULL
                THEN a.predicted_score
                ELSE coalesce(a.local_score, s.local_score) END AS gate_score,
           s.verdict = 'accepted' AS accepted,
           s.verdict = 'penalised' AS penalised,
           coalesce(s.task_fidelity_score, 0)::float8 AS score
    FROM submission_verdicts s
    LEFT JOIN attempts a ON a.id = s.attempt_id
    WHERE s.verdict IN ('accepted', 'penalised', 'validation_failed')
      AND s.completed_at > now() - :'since'::interval
), bucketed AS (
    SELECT *,
           CASE WHEN gate_mode = 'validator'
                THEN (least(greatest(floor(gate_score * 20), 0), 27) / 20)::numeric(4, 2)
                ELSE (least(greatest(floor(gate_score * 10), 0), 9) / 10)::numeric(4, 2)
           END AS bucket,
           CASE WHEN gate_mode = 'validator' THEN 0.05 ELSE 0.1 END::numeric(4, 2) AS width,
           CASE WHEN gate_mode = 'validator' AND accepted
                THEN score - least(gate_score, 1) END AS validator_minus_predicted
    FROM judged
    WHERE gate_score IS NOT NULL AND gate_score <> 'NaN'::float8
), buckets AS (
    SELECT gate_mode, bucket, width,
           count(*) AS submitted,
           count(*) FILTER (WHERE accepted) AS accepted,
           count(*) FILTER (WHERE penalised) AS penalised,
           avg(score) AS mean_score,
           avg(gate_score) AS mean_gate_score,
           avg(validator_minus_predicted) AS validator_minus_predicted
    FROM bucketed
    GROUP BY gate_mode, bucket, width
), modes AS (
    SELECT gate_mode, avg(validator_minus_predicted) AS validator_minus_predicted
    FROM bucketed
    GROUP BY gate_mode
), net AS (
    SELECT gate_mode, bucket,
           sum(accepted - penalised) OVER (PARTITION BY gate_mode ORDER BY bucket DESC)
               AS net_at_or_above
    FROM buckets
), best AS (
    SELECT DISTINCT ON (gate_mode) gate_mode, bucket AS best_threshold
    FROM net
    ORDER BY gate_mode, net_at_or_above DESC, bucket DESC
)
SELECT b.gate_mode,
       b.bucket AS score_from,
       b.bucket + b.width AS score_to,
       b.submitted,
       b.accepted,
       b.penalised,
       round(b.accepted::numeric / b.submitted, 4) AS acceptance_rate,
       round(b.mean_score::numeric, 4) AS mean_validator_score,
       round(b.mean_gate_score::numeric, 4) AS mean_gate_score,
       round(b.validator_minus_predicted::numeric, 4) AS mean_validator_minus_predicted,
       round(m.validator_minus_predicted::numeric, 4) AS mode_validator_minus_predicted,
       n.net_at_or_above,
       best.best_threshold
FROM buckets b
JOIN net n USING (gate_mode, bucket)
JOIN modes m USING (gate_mode)
JOIN best USING (gate_mode)
ORDER BY b.gate_mode, b.bucket;
