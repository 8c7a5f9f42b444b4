//! Scheduler benchmark on a simulated clock: the puller's real scheduling policy
//! ([`Scheduler`] with its cooldown and backoff books, and [`PullPolicy`]: the acceptance
//! estimate, the automatic blacklist and the capacity rule, fed the figures of the puller's
//! own verdict windows, every housekeeping round as in the control loop) driving 50
//! simulated validators (v45 rules: 300 s cooldown, 30 s throttle, one task per miner) and G
//! GPUs with generation times uniform in 5–20 s; 10 validators are flaky (30 % of pulls fail
//! with a connect error). Reports GPU busy fraction and accepted tasks per hour against the
//! theoretical maximum, min(G × 3600 / mean generation time, 50 × 3600 / 300), and the
//! wall time the policy and scheduler calls take per tick. Every submission is accepted
//! (verdict `accepted`), so no validator is blacklisted.
//!
//! `cargo run --release -p splatfleet-puller --example scheduler_bench`

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use splatfleet_common::{config::PullerSettings, ledger::Verdict};
use splatfleet_puller::{
    capacity::CapacitySignal,
    policy::{PullPolicy, HOUSEKEEPING_EVERY_SECS},
    scheduler::Scheduler,
    verdict_windows::VerdictWindows,
};

const VALIDATORS: usize = 50;
const FLAKY: usize = 10;
const FLAKY_FAILURE: f64 = 0.3;
const COOLDOWN: f64 = 300.0;
const THROTTLE: f64 = 30.0;
const GEN_MIN: f64 = 5.0;
const GEN_MAX: f64 = 20.0;
/// Round trip of a PullTask call, and of a submission.
const CALL_LATENCY: f64 = 0.15;
const STEP: f64 = 0.01;
const WARMUP: f64 = 3600.0;
const MEASURED: f64 = 4.0 * 3600.0;

#[derive(Debug, Default, Clone)]
struct SimValidator {
    assigned: Option<(u64, f64)>,
    cooldown_until: i64,
    violations: u32,
}

#[derive(Debug, Clone, Copy)]
struct QueuedTask {
    validator: usize,
    id: u64,
}

#[derive(Debug)]
struct Gpu {
    busy_until: f64,
    task: Option<QueuedTask>,
}

#[derive(Debug)]
struct Outcome {
    busy_fraction: f64,
    accepted_per_hour: f64,
    max_per_hour: f64,
    violations: u32,
    /// Wall time in the policy and scheduler calls, per tick.
    policy_per_tick: Duration,
}

fn hotkey(i: usize) -> String {
    format!("validator-{i:02}")
}

fn run(gpus: usize, seed: u64) -> Outcome {
    let settings = PullerSettings::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scheduler = Scheduler::from_settings(&settings);
    let policy = PullPolicy::from_settings(&settings);
    let eligible = |blacklisted: &HashMap<String, (String, f64)>| {
        (0..VALIDATORS)
            .map(hotkey)
            .filter(|h| !blacklisted.contains_key(h))
            .map(|h| (h, settings.default_reward_weight))
            .collect::<Vec<_>>()
    };
    // hotkey → (reason, until): the validators' blacklist as Postgres would hold it.
    let mut blacklisted: HashMap<String, (String, f64)> = HashMap::new();
    scheduler.set_validators(eligible(&blacklisted));
    // The puller's own verdict windows, fed as its close notices feed them.
    let mut windows = VerdictWindows::new(policy.blacklist.window.max(policy.acceptance_window));
    let mut next_housekeeping = 0.0;
    let (mut ticks, mut policy_time) = (0u32, Duration::ZERO);
    let mut validators = vec![SimValidator::default(); VALIDATORS];
    let mut queue: VecDeque<QueuedTask> = VecDeque::new();
    let mut gpu_state: Vec<Gpu> = (0..gpus)
        .map(|_| Gpu {
            busy_until: 0.0,
            task: None,
        })
        .collect();
    // (finishes at, validator) for pulls in flight.
    let mut pulls: Vec<(f64, usize)> = Vec::new();
    // (recorded at, validator, task, cooldown) submissions the puller learns on its next tick.
    let mut closed: Vec<(f64, usize, u64, i64)> = Vec::new();
    let tick = settings.tick_ms as f64 / 1000.0;
    let mut next_tick = 0.0;
    let mut next_id = 0u64;
    let (mut busy, mut accepted) = (0.0, 0u32);
    let end = WARMUP + MEASURED;
    let mut t = 0.0;
    while t < end {
        // GPUs finish and take the next task.
        for gpu in gpu_state.iter_mut() {
            if let Some(task) = gpu.task {
                if gpu.busy_until <= t {
                    let v = &mut validators[task.validator];
                    if let Some((id, assigned_at)) = v.assigned {
                        if id == task.id {
                            let now = t + CALL_LATENCY;
                            v.cooldown_until =
                                (now + COOLDOWN - THROTTLE).max(assigned_at + COOLDOWN) as i64;
                            v.assigned = None;
                            if t >= WARMUP {
                                accepted += 1;
                            }
                            windows.record(&hotkey(task.validator), Verdict::Accepted, now);
                            closed.push((now, task.validator, id, v.cooldown_until));
                        }
                    }
                    gpu.task = None;
                }
            }
            if gpu.task.is_none() {
                if let Some(task) = queue.pop_front() {
                    let generate = rng.random_range(GEN_MIN..GEN_MAX);
                    gpu.busy_until = t + generate;
                    gpu.task = Some(task);
                }
            }
            if gpu.task.is_some() && t >= WARMUP {
                busy += STEP;
            }
        }
        // Pull answers arrive.
        let (done, pending): (Vec<_>, Vec<_>) = pulls.drain(..).partition(|(at, _)| *at <= t);
        pulls = pending;
        for (_, i) in done {
            let name = hotkey(i);
            scheduler.call_finished(&name);
            if i < FLAKY && rng.random::<f64>() < FLAKY_FAILURE {
                scheduler.pull_failed(&name, t);
                continue;
            }
            let v = &mut validators[i];
            if (t as i64) < v.cooldown_until && v.cooldown_until != 0 {
                v.violations += 1;
                // The control loop's reading of an answer without a task.
                scheduler.answered_without_task(
                    &name,
                    v.cooldown_until as f64,
                    i64::from(v.violations),
                    t,
                );
                continue;
            }
            let id = match v.assigned {
                Some((id, _)) => id,
                None => {
                    next_id += 1;
                    v.assigned = Some((next_id, t));
                    next_id
                }
            };
            scheduler.task_held(&name, &id.to_string());
            queue.push_back(QueuedTask { validator: i, id });
        }
        // The puller's tick: what Postgres says, then capacity, then pulls.
        if t >= next_tick {
            next_tick += tick;
            let (known, later): (Vec<_>, Vec<_>) = closed.drain(..).partition(|c| c.0 <= t);
            closed = later;
            // The verdict windows' figures, read before the clock starts, as before.
            let housekeeping = t >= next_housekeeping;
            let (judged, recent) = if housekeeping {
                next_housekeeping += HOUSEKEEPING_EVERY_SECS;
                (
                    windows.stats(policy.blacklist.window),
                    windows.stats(policy.acceptance_window),
                )
            } else {
                Default::default()
            };
            let started = Instant::now();
            for (_, i, id, until) in known {
                scheduler.task_closed(&hotkey(i), &id.to_string(), Some(until as f64));
            }
            if housekeeping {
                // As the control loop's housekeeping: blacklist, expire, the set, acceptance.
                let already: HashMap<String, String> = blacklisted
                    .iter()
                    .map(|(h, (reason, _))| (h.clone(), reason.clone()))
                    .collect();
                let mut changed = false;
                for b in policy.blacklist.blacklistings(&judged, &already) {
                    let until = t + policy.blacklist.secs as f64;
                    windows.blacklisted(&b.hotkey, until);
                    blacklisted.insert(b.hotkey, (b.reason, until));
                    changed = true;
                }
                let before = blacklisted.len();
                blacklisted.retain(|_, (_, until)| *until > t);
                if changed || before != blacklisted.len() {
                    scheduler.set_validators(eligible(&blacklisted));
                }
                scheduler.set_acceptances(&recent);
            }
            let signal = CapacitySignal {
                ready: u32::try_from(queue.len()).unwrap_or(u32::MAX),
                consumers: u32::try_from(gpus).unwrap_or(u32::MAX),
            };
            let slots = policy.capacity.free_slots(signal, pulls.len());
            let chosen = scheduler.choose(t, slots);
            for name in &chosen {
                scheduler.pull_started(name, t);
            }
            policy_time += started.elapsed();
            ticks += 1;
            for name in chosen {
                let Some(i) = name
                    .strip_prefix("validator-")
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                pulls.push((t + CALL_LATENCY, i));
            }
        }
        t += STEP;
    }
    let mean_gen = (GEN_MIN + GEN_MAX) / 2.0;
    let max_per_hour = (gpus as f64 * 3600.0 / mean_gen).min(VALIDATORS as f64 * 3600.0 / COOLDOWN);
    Outcome {
        busy_fraction: busy / (gpus as f64 * MEASURED),
        accepted_per_hour: f64::from(accepted) / (MEASURED / 3600.0),
        max_per_hour,
        violations: validators.iter().map(|v| v.violations).sum(),
        policy_per_tick: policy_time / ticks.max(1),
    }
}

fn main() {
    println!(
        "{VALIDATORS} validators ({FLAKY} flaky, {:.0} % failed pulls), cooldown {COOLDOWN} s, throttle {THROTTLE} s, generation uniform {GEN_MIN}-{GEN_MAX} s, call latency {CALL_LATENCY} s, default [puller] settings, {:.0} h measured after {:.0} h warm-up",
        FLAKY_FAILURE * 100.0,
        MEASURED / 3600.0,
        WARMUP / 3600.0
    );
    println!();
    println!(
        "| GPUs | GPU busy | accepted/h | max/h | of max | cooldown violations | policy per tick |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for gpus in [1, 4, 16] {
        let o = run(gpus, 404 + gpus as u64);
        println!(
            "| {gpus} | {:.1} % | {:.1} | {:.1} | {:.1} % | {} | {:.1} µs |",
            o.busy_fraction * 100.0,
            o.accepted_per_hour,
            o.max_per_hour,
            100.0 * o.accepted_per_hour / o.max_per_hour,
            o.violations,
            o.policy_per_tick.as_secs_f64() * 1e6
        );
    }
}
