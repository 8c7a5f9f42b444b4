-- Calibration: local score (of the submitted attempt) in buckets of 0.1 against the
-- validator's verdict: submissions, accepted, penalised, acceptance rate, mean validator
-- score; net_at_or_above = accepted − penalised among submissions with a local score at or
-- above the bucket's lower edge, and best_threshold = the lower edge that maximises it (the
-- local threshold that would have done best; ties go to the higher edge).
--   psql -d splatfleet -v since='7 days' -f sql/reports/calibration.sql
\if :{?since}
\else
\set since '7 days'
\endif
WITH judged AS (
    SELECT (least(floor(coalesce(a.local_score, s.local_score) * 10), 9) / 10)::numeric(3, 1)
               AS bucket,
           coalesce(s.task_fidelity_score, 0) > 0 AS accepted,
           coalesce(s.task_fidelity_score, 0) <= 0
               AND NOT coalesce(s.validation_failed, false) AS penalised,
           coalesce(s.task_fidelity_score, 0) AS score
    FROM submissions s
    LEFT JOIN attempts a ON a.id = s.attempt_id
    WHERE s.state = 'completed' AND NOT s.empty
      AND coalesce(a.local_score, s.local_score) IS NOT NULL
      AND s.completed_at > now() - :'since'::interval
), buckets AS (
    SELECT bucket,
           count(*) AS submitted,
           count(*) FILTER (WHERE accepted) AS accepted,
           count(*) FILTER (WHERE penalised) AS penalised,
           avg(score) AS mean_score
    FROM judged
    GROUP BY bucket
), net AS (
    SELECT bucket, sum(accepted - penalised) OVER (ORDER BY bucket DESC) AS net_at_or_above
    FROM buckets
)
SELECT b.bucket AS local_score_from,
       b.bucket + 0.1 AS local_score_to,
       b.submitted,
       b.accepted,
       b.penalised,
       round(b.accepted::numeric / b.submitted, 4) AS acceptance_rate,
       round(b.mean_score::numeric, 4) AS mean_validator_score,
       n.net_at_or_above,
       (SELECT bucket FROM net ORDER BY net_at_or_above DESC, bucket DESC LIMIT 1)
           AS best_threshold
FROM buckets b
JOIN net n USING (bucket)
ORDER BY b.bucket;
