-- Per validator: non-empty submissions, accepted, acceptance rate, penalties, empty releases,
-- failed submissions, mean feedback delay (SubmitResults call to answer) and mean time from
-- pull to feedback.
--   psql -d splatfleet -v since='7 days' -f sql/reports/validators.sql
\if :{?since}
\else
\set since '7 days'
\endif
SELECT v.hotkey AS validator,
       v.uid,
       count(*) FILTER (WHERE s.verdict IN ('accepted', 'penalised', 'validation_failed'))
           AS submitted,
       count(*) FILTER (WHERE s.verdict = 'accepted') AS accepted,
       round(count(*) FILTER (WHERE s.verdict = 'accepted')::numeric
             / nullif(count(*) FILTER (WHERE s.verdict IN ('accepted', 'penalised',
                                                           'validation_failed')), 0), 4)
           AS acceptance_rate,
       count(*) FILTER (WHERE s.verdict = 'penalised') AS penalties,
       count(*) FILTER (WHERE s.verdict = 'empty') AS empty,
       count(*) FILTER (WHERE s.verdict = 'lost') AS failed,
       round((avg(s.latency_ms) FILTER (WHERE s.state = 'completed') / 1000.0)::numeric, 3)
           AS mean_feedback_delay_s,
       round(avg(extract(epoch FROM s.completed_at - t.pulled_at))
                 FILTER (WHERE s.state = 'completed')::numeric, 3) AS mean_pull_to_feedback_s
FROM submission_verdicts s
JOIN tasks t ON t.id = s.task_id
JOIN validators v ON v.id = t.validator_id
WHERE coalesce(s.completed_at, s.created_at) > now() - :'since'::interval
GROUP BY v.hotkey, v.uid
ORDER BY v.uid, v.hotkey;
