-- Throughput per GPU (worker = host/gpuN): distinct tasks with an attempt in the window,
-- attempts, tasks per hour over the whole window, and mean generation attempt time.
--   psql -d splatfleet -v since='7 days' -f sql/reports/throughput.sql
\if :{?since}
\else
\set since '7 days'
\endif
SELECT a.worker,
       count(DISTINCT a.task_id) AS tasks,
       count(*) AS attempts,
       round(count(DISTINCT a.task_id)
             / (extract(epoch FROM :'since'::interval)::numeric / 3600), 3) AS tasks_per_hour,
       round(avg(extract(epoch FROM a.finished_at - a.started_at))::numeric, 3)
           AS mean_attempt_s
FROM attempts a
WHERE a.started_at > now() - :'since'::interval
GROUP BY a.worker
ORDER BY a.worker;
