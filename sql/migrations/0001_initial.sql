-- splatfleet schema v1: validators and their state, tasks, generation attempts, submissions
-- with validator feedback, and config versions. Status columns are checked text rather than
-- enums so later migrations can add values inside a transaction.

CREATE TABLE validators (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hotkey        text NOT NULL UNIQUE CHECK (hotkey ~ '^[1-9A-HJ-NP-Za-km-z]{46,48}$'),
    uid           integer CHECK (uid BETWEEN 0 AND 65535),
    ip            inet,
    port          integer CHECK (port BETWEEN 1 AND 65535),
    stake         double precision CHECK (stake >= 0),
    source        text NOT NULL CHECK (source IN ('static', 'subtensor')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

-- What the puller needs to decide whom to pull from; one row per validator.
CREATE TABLE validator_state (
    validator_id        bigint PRIMARY KEY REFERENCES validators (id) ON DELETE CASCADE,
    cooldown_until      timestamptz,
    cooldown_violations integer NOT NULL DEFAULT 0 CHECK (cooldown_violations >= 0),
    last_pull_at        timestamptz,
    last_pull_error     text,
    consecutive_errors  integer NOT NULL DEFAULT 0 CHECK (consecutive_errors >= 0),
    blacklisted         boolean NOT NULL DEFAULT false,
    blacklist_reason    text,
    blacklisted_until   timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT blacklisted OR blacklist_reason IS NOT NULL)
);

-- The effective configuration each process ran with (secrets removed), so acceptance can be
-- compared across config changes.
CREATE TABLE config_versions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256     text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    label      text,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    validator_id         bigint NOT NULL REFERENCES validators (id),
    -- The validator's own task id; a validator never reuses one for us.
    task_id              text NOT NULL CHECK (length(task_id) BETWEEN 1 AND 256),
    kind                 text NOT NULL CHECK (kind IN ('text', 'image')),
    prompt_sha256        text NOT NULL CHECK (prompt_sha256 ~ '^[0-9a-f]{64}$'),
    -- Text prompts are kept verbatim; image prompts (hundreds of KB) by object-store key.
    prompt               text,
    prompt_ref           text,
    pulled_at            timestamptz NOT NULL,
    deadline_at          timestamptz NOT NULL,
    validation_threshold real NOT NULL CHECK (validation_threshold BETWEEN 0 AND 1),
    throttle_period_s    integer NOT NULL CHECK (throttle_period_s >= 0),
    status               text NOT NULL DEFAULT 'pulled' CHECK (status IN (
                             'pulled', 'queued', 'generating', 'generated',
                             'submitting', 'submitted', 'submitted_empty', 'expired', 'failed')),
    status_reason        text,
    publish_attempts     integer NOT NULL DEFAULT 0 CHECK (publish_attempts >= 0),
    config_version_id    bigint REFERENCES config_versions (id),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (validator_id, task_id),
    CHECK (deadline_at >= pulled_at),
    CHECK (prompt IS NOT NULL OR prompt_ref IS NOT NULL)
);
CREATE INDEX tasks_pulled_at_idx ON tasks (pulled_at);
CREATE INDEX tasks_validator_pulled_at_idx ON tasks (validator_id, pulled_at);
CREATE INDEX tasks_config_version_idx ON tasks (config_version_id);
-- Open tasks: what the puller and the expiry sweep look for.
CREATE INDEX tasks_open_idx ON tasks (status, deadline_at)
    WHERE status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed');

-- Every generation attempt, whatever its outcome.
CREATE TABLE attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id        bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt_no     smallint NOT NULL CHECK (attempt_no >= 1),
    worker         text NOT NULL,
    gpu            smallint CHECK (gpu >= 0),
    params         jsonb NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    -- Milliseconds per stage: generate, decode, render, gate, store.
    stage_ms       jsonb NOT NULL DEFAULT '{}',
    gaussian_count integer CHECK (gaussian_count >= 0),
    local_score    real,
    gate_passed    boolean,
    gate_metrics   jsonb NOT NULL DEFAULT '{}',
    ply_key        text,
    ply_sha256     text CHECK (ply_sha256 ~ '^[0-9a-f]{64}$'),
    ply_bytes      bigint CHECK (ply_bytes >= 0),
    spz_key        text,
    spz_sha256     text CHECK (spz_sha256 ~ '^[0-9a-f]{64}$'),
    spz_bytes      bigint CHECK (spz_bytes >= 0),
    preview_key    text,
    error          text,
    UNIQUE (task_id, attempt_no),
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);
CREATE INDEX attempts_worker_finished_at_idx ON attempts (worker, finished_at);
CREATE INDEX attempts_local_score_idx ON attempts (local_score) WHERE local_score IS NOT NULL;

-- Exactly one submission per task: written before sending ('sending'), completed after.
CREATE TABLE submissions (
    id                            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id                       bigint NOT NULL UNIQUE REFERENCES tasks (id) ON DELETE CASCADE,
    attempt_id                    bigint REFERENCES attempts (id),
    state                         text NOT NULL DEFAULT 'sending'
                                      CHECK (state IN ('sending', 'completed', 'failed')),
    empty                         boolean NOT NULL,
    empty_reason                  text,
    tries                         smallint NOT NULL DEFAULT 0 CHECK (tries >= 0),
    created_at                    timestamptz NOT NULL DEFAULT now(),
    sent_at                       timestamptz,
    completed_at                  timestamptz,
    http_status                   smallint CHECK (http_status BETWEEN 100 AND 599),
    error                         text,
    latency_ms                    integer CHECK (latency_ms >= 0),
    -- Validator feedback, as the SubmitResults answer carries it.
    validation_failed             boolean,
    task_fidelity_score           real,
    average_fidelity_score        real,
    generations_within_the_window integer,
    current_duel_rating           real,
    current_miner_reward          real,
    cooldown_until                timestamptz,
    CHECK (empty OR attempt_id IS NOT NULL OR state <> 'completed'),
    CHECK (NOT empty OR empty_reason IS NOT NULL)
);
CREATE INDEX submissions_completed_at_idx ON submissions (completed_at);
CREATE INDEX submissions_attempt_idx ON submissions (attempt_id);
