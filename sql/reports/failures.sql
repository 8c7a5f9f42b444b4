-- Failure reasons, most frequent first: failed submissions (the validator's refusal or the
-- transport error), penalties, tasks that expired or whose result could not be loaded, and
-- failed generation attempts. Ids inside messages are folded to <id> so reasons group.
--   psql -d splatfleet -v since='7 days' -f sql/reports/failures.sql
\if :{?since}
\else
\set since '7 days'
\endif
SELECT source,
       regexp_replace(reason, '[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}', '<id>', 'g') AS reason,
       count(*) AS failures,
       to_char(max(at), 'YYYY-MM-DD HH24:MI:SS') AS last_seen
FROM (
    SELECT 'submission' AS source, coalesce(s.error, 'unknown') AS reason,
           coalesce(s.completed_at, s.created_at) AS at
    FROM submission_verdicts s WHERE s.verdict = 'lost'
    UNION ALL
    SELECT 'penalty', 'scored under the validation threshold', s.completed_at
    FROM submission_verdicts s WHERE s.verdict = 'penalised'
    UNION ALL
    SELECT 'validation', 'validation failed', s.completed_at
    FROM submission_verdicts s WHERE s.verdict = 'validation_failed'
    UNION ALL
    SELECT 'task', t.status || ': ' || coalesce(t.status_reason, 'no reason'), t.updated_at
    FROM tasks t
    WHERE t.status = 'expired'
       OR (t.status = 'generated' AND t.status_reason LIKE 'submitter could not load%')
    UNION ALL
    SELECT 'attempt', a.error, a.started_at FROM attempts a WHERE a.error IS NOT NULL
) f
WHERE at > now() - :'since'::interval
GROUP BY 1, 2
ORDER BY failures DESC, source, reason;
