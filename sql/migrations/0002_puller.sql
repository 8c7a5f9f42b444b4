-- The puller's records: when a task was confirmed by the broker (a queued task without it is
-- republished after a restart), why a validator is excluded or not pulled from, and the
-- history of every exclusion with its reason.

ALTER TABLE tasks ADD COLUMN published_at timestamptz;
-- Queued tasks the broker has not confirmed: what the puller's publish sweep looks for.
CREATE INDEX tasks_unpublished_idx ON tasks (pulled_at)
    WHERE status = 'queued' AND published_at IS NULL;

ALTER TABLE validator_state
    -- Why the validator set leaves this validator out right now (NULL: eligible).
    ADD COLUMN excluded_reason      text,
    ADD COLUMN excluded_since       timestamptz,
    -- Exponential backoff after connect errors, timeouts and 5xx answers.
    ADD COLUMN backoff_until        timestamptz,
    -- Set after a 401 (our signature or nonce refused): no pulls until an operator looks.
    ADD COLUMN pulls_stopped_reason text;

-- Every exclusion of a validator from pulling, with its reason; ended_at is set when the
-- validator becomes eligible again (or is excluded for another reason).
CREATE TABLE validator_exclusions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    validator_id bigint NOT NULL REFERENCES validators (id) ON DELETE CASCADE,
    reason       text NOT NULL CHECK (reason IN (
                     'not_serving', 'low_stake', 'no_permit', 'config_blacklist',
                     'auto_blacklist', 'unauthorized')),
    detail       text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX validator_exclusions_open_idx ON validator_exclusions (validator_id)
    WHERE ended_at IS NULL;
CREATE INDEX tasks_validator_status_idx ON tasks (validator_id, status);
