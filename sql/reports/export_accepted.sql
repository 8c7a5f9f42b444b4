-- Training-data export: one JSON object per accepted generation (validator score at least
-- min_score) with the prompt (text tasks) or the image reference (image tasks), generation
-- parameters, gate metrics, scores and artifact keys. `splatfleet-submitter export` writes
-- these lines to a JSONL file.
--   psql -d splatfleet -At -v since='30 days' -v min_score=0.7 -v task_type=any \
--        -f sql/reports/export_accepted.sql > accepted.jsonl
--   (task_type: any | text | image)
\if :{?since}
\else
\set since '30 days'
\endif
\if :{?min_score}
\else
\set min_score 0.7
\endif
\if :{?task_type}
\else
\set task_type any
\endif
SELECT jsonb_build_object(
           'task_id', t.task_id,
           'validator', v.hotkey,
           'task_type', t.kind,
           'prompt', CASE WHEN t.kind = 'text' THEN t.prompt END,
           'image', CASE WHEN t.kind = 'image' THEN jsonb_build_object(
                        'prompt_sha256', t.prompt_sha256, 'prompt_ref', t.prompt_ref) END,
           'params', a.params,
           'gate_metrics', a.gate_metrics,
           'stage_ms', a.stage_ms,
           'gaussian_count', a.gaussian_count,
           'local_score', a.local_score,
           'task_fidelity_score', s.task_fidelity_score,
           'average_fidelity_score', s.average_fidelity_score,
           'worker', a.worker,
           'artifacts', jsonb_build_object(
               'ply', jsonb_build_object('key', a.ply_key, 'sha256', a.ply_sha256),
               'spz', jsonb_build_object('key', a.spz_key, 'sha256', a.spz_sha256),
               'preview', a.preview_key),
           'config_version_id', t.config_version_id,
           'submitted_at', s.completed_at
       )::text AS line
FROM submission_verdicts s
JOIN tasks t ON t.id = s.task_id
JOIN validators v ON v.id = t.validator_id
LEFT JOIN attempts a ON a.id = s.attempt_id
WHERE s.verdict IN ('accepted', 'penalised', 'validation_failed')
  AND s.task_fidelity_score >= :'min_score'::real
  AND (:'task_type' = 'any' OR t.kind = :'task_type')
  AND s.completed_at > now() - :'since'::interval
ORDER BY s.completed_at, s.id;
