//! The worker's metric descriptions (the help text Prometheus shows and `promtool check
//! metrics` wants), given once at start. The metrics themselves are recorded where they happen.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_counter!(
        "splatfleet_worker_attempts_total",
        "Generation attempts started (one rung of the retry ladder each)."
    );
    describe_counter!(
        "splatfleet_worker_gate_decisions_total",
        "How each attempt ended: passed or failed by the fidelity gate, the generation error \
         that stopped it (connect, timeout, status, too_large, body, not_ply, bad_ply), or \
         tier 2's verdict (tier2_passed, tier2_failed, tier2_unavailable, spz_encode)."
    );
    describe_counter!(
        "splatfleet_worker_generation_errors_total",
        "Attempts whose generation gave no usable PLY, by kind (connect, timeout, status, \
         too_large, body, not_ply, bad_ply, bad_endpoint): the generation-errors alert's \
         numerator, so no gate or tier-2 verdict is ever counted as one."
    );
    describe_counter!(
        "splatfleet_worker_results_total",
        "Tasks answered, by outcome (ready: a model to submit; empty: nothing passed)."
    );
    describe_histogram!(
        "splatfleet_worker_stage_seconds",
        Unit::Seconds,
        "Duration of one stage of an attempt (generate, decode, gate, validate, store)."
    );
    describe_counter!(
        "splatfleet_worker_validation_errors_total",
        "Tier-2 validation calls that gave no score, by kind (connect, timeout, status, \
         too_large, body, malformed, missing_score, non_finite_score)."
    );
    describe_histogram!(
        "splatfleet_worker_attempts_per_task",
        "Attempts a task took before it was answered."
    );
    describe_gauge!(
        "splatfleet_worker_busy_slots",
        "Tasks this worker is working on right now."
    );
    describe_gauge!(
        "splatfleet_worker_gpu_backend",
        "1 for the renderer the gate runs on (cuda, or cpu when no usable GPU was found)."
    );
}
