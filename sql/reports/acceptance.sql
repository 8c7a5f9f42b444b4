-- Acceptance rate and mean validator score of completed non-empty submissions, grouped by
-- validator, day, task type or config version. Verdicts from the submission_verdicts view
-- (migration 0007): accepted (scored above 0), penalised (scored 0 without failing validation:
-- the 600 s penalty), validation_failed.
--   psql -d splatfleet -v since='7 days' -v by=validator -f sql/reports/acceptance.sql
--   (by: validator | day | task-type | config)
\if :{?since}
\else
\set since '7 days'
\endif
\if :{?by}
\else
\set by validator
\endif
SELECT CASE :'by'
           WHEN 'day' THEN to_char(date_trunc('day', s.completed_at), 'YYYY-MM-DD')
           WHEN 'task-type' THEN t.kind
           WHEN 'config' THEN coalesce(t.config_version_id::text, 'none')
           ELSE v.hotkey
       END AS key,
       count(*) AS submitted,
       count(*) FILTER (WHERE s.verdict = 'accepted') AS accepted,
       count(*) FILTER (WHERE s.verdict = 'penalised') AS penalised,
       count(*) FILTER (WHERE s.verdict = 'validation_failed') AS validation_failed,
       round(count(*) FILTER (WHERE s.verdict = 'accepted')::numeric / count(*), 4)
           AS acceptance_rate,
       round(avg(coalesce(s.task_fidelity_score, 0))::numeric, 4) AS mean_score,
       -- By validator, its uid too (the number operators know it by); last, so the columns
       -- before it keep their places for scripts that read them by position.
       CASE WHEN :'by' = 'validator' THEN min(v.uid) END AS uid
FROM submission_verdicts s
JOIN tasks t ON t.id = s.task_id
JOIN validators v ON v.id = t.validator_id
WHERE s.verdict IN ('accepted', 'penalised', 'validation_failed')
  AND s.completed_at > now() - :'since'::interval
GROUP BY 1
ORDER BY 1;
