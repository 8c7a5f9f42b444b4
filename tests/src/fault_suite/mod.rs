//! The fault suite of issue 10: the whole fleet as separate processes ([`crate::fleet`]),
//! faults injected one after another at points a seeded RNG picks (`kill -9` of each role,
//! restarted by the harness as systemd would; RabbitMQ `stop_app` / `start_app` on the
//! private node; a PostgreSQL restart of the private cluster; pause / drop / reset of the
//! links to the validators and to the generation service), the time from each fault's end to
//! the fleet's recovery, then a drain and the checks of [`checks`].
//!
//! The seed is printed at the start; `SPLATFLEET_FAULT_SEED` replays a run's plan (the
//! fleet's timing is not deterministic, so the faults land at the same moments of the plan,
//! not at the same instructions).

pub mod broker_probe;
pub mod checks;
pub mod validator_log;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, seq::SliceRandom as _, Rng as _, SeedableRng as _};

use crate::{
    fault_proxy::ProxyMode,
    fleet::{Fleet, FleetBinaries, FleetError, FleetSettings, RoleSlot, DBNAME},
    private_broker::PrivateBrokerError,
    private_postgres::{PrivatePostgresError, StopMode},
    sim::rules::now_secs,
};
use checks::CheckReport;
use validator_log::ValidatorLog;

/// Which link a proxy fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Every validator's axon (pulls, submissions, releases).
    Validators,
    /// The generation service the workers call.
    Generator,
}

/// One fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of a role, restarted after the hold.
    Kill(RoleSlot),
    /// `rabbitmqctl stop_app`, the hold, `start_app`.
    BrokerRestart,
    /// `pg_ctl stop -m fast|immediate`, the hold, `pg_ctl start`.
    PostgresRestart(StopMode),
    /// The proxy in `mode` for the hold, then forwarding again.
    Proxy(Link, ProxyMode),
}

impl Fault {
    /// The fault's kind for the matrix (`kill puller`, `proxy validators reset`, ...).
    pub fn kind(&self) -> String {
        match self {
            Self::Kill(RoleSlot::Worker(_)) => "kill -9 worker".into(),
            Self::Kill(slot) => format!("kill -9 {slot}"),
            Self::BrokerRestart => "rabbitmq stop_app/start_app".into(),
            Self::PostgresRestart(_) => "postgresql restart".into(),
            Self::Proxy(link, mode) => format!(
                "{} link {}",
                match link {
                    Link::Validators => "validators",
                    Link::Generator => "generator",
                },
                match mode {
                    ProxyMode::Pause => "pause",
                    ProxyMode::Drop => "drop",
                    ProxyMode::Reset => "reset",
                    ProxyMode::Forward => "forward",
                }
            ),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kill(slot) => write!(f, "kill -9 {slot}"),
            Self::PostgresRestart(mode) => write!(f, "postgresql restart ({mode:?})"),
            other => f.write_str(&other.kind()),
        }
    }
}

/// A fault and when: `delay` after the fleet recovered from the previous one, held `hold`.
#[derive(Debug, Clone)]
pub struct PlannedFault {
    pub fault: Fault,
    pub delay: Duration,
    pub hold: Duration,
}

/// How much of everything a run injects, and its bounds.
#[derive(Debug, Clone)]
pub struct SuiteSettings {
    pub seed: u64,
    /// `kill -9` of the puller, of the submitter, and of workers (a random one each time).
    pub kills_per_role: usize,
    pub broker_restarts: usize,
    pub postgres_restarts: usize,
    /// Of each (link, pause | drop | reset).
    pub proxy_faults_per_kind: usize,
    /// Random wait before each fault, after the previous recovery.
    pub delay: (Duration, Duration),
    /// How long a killed role stays down (systemd's `RestartSec`) and RabbitMQ or
    /// PostgreSQL stays stopped.
    pub hold: (Duration, Duration),
    /// How long a link stays paused, dropped or reset: from shorter than every timeout on
    /// that link (pull 5 s, submit 8 s, generate 4 s) to longer than all of them, so some
    /// requests are cut mid-flight and some time out.
    pub link_hold: (Duration, Duration),
    /// The fleet must be moving again (a new task pulled and a submission accepted) this long
    /// after a fault ends.
    pub recovery_bound: Duration,
    /// Accepted submissions before the first fault.
    pub warmup_accepted: usize,
    /// How long the fleet runs on after the last fault before the drain.
    pub settle: Duration,
    /// Longest drain: every task closed and the queues empty.
    pub drain_timeout: Duration,
    pub fleet: FleetSettings,
}

impl SuiteSettings {
    /// The variant in `cargo test` / `ops/test.sh`: every kind of fault at least once.
    pub fn fast(seed: u64) -> Self {
        Self {
            seed,
            kills_per_role: 1,
            broker_restarts: 1,
            postgres_restarts: 1,
            proxy_faults_per_kind: 1,
            delay: (Duration::from_millis(500), Duration::from_secs(3)),
            hold: (Duration::from_millis(200), Duration::from_secs(4)),
            link_hold: (Duration::from_millis(500), Duration::from_secs(12)),
            recovery_bound: Duration::from_secs(60),
            warmup_accepted: 3,
            settle: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(120),
            fleet: FleetSettings {
                seed,
                ..FleetSettings::default()
            },
        }
    }

    /// The documented long run: 10 kills of each role.
    pub fn long(seed: u64) -> Self {
        Self {
            kills_per_role: 10,
            broker_restarts: 3,
            postgres_restarts: 3,
            proxy_faults_per_kind: 2,
            delay: (Duration::from_millis(500), Duration::from_secs(6)),
            ..Self::fast(seed)
        }
    }
}

/// `SPLATFLEET_FAULT_SEED` when set (a run to replay), else a fresh random seed.
pub fn seed_from_env() -> u64 {
    std::env::var("SPLATFLEET_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

fn between(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.random_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}

/// The run's faults, in a seeded random order with seeded delays and holds.
pub fn plan(settings: &SuiteSettings) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut faults = Vec::new();
    for _ in 0..settings.kills_per_role {
        faults.push(Fault::Kill(RoleSlot::Puller));
        faults.push(Fault::Kill(RoleSlot::Submitter));
        let worker = rng.random_range(0..settings.fleet.workers.max(1));
        faults.push(Fault::Kill(RoleSlot::Worker(worker)));
    }
    for _ in 0..settings.broker_restarts {
        faults.push(Fault::BrokerRestart);
    }
    for n in 0..settings.postgres_restarts {
        // Alternate a clean shutdown and a crash-like one.
        let mode = if n % 2 == 0 {
            StopMode::Fast
        } else {
            StopMode::Immediate
        };
        faults.push(Fault::PostgresRestart(mode));
    }
    for _ in 0..settings.proxy_faults_per_kind {
        for link in [Link::Validators, Link::Generator] {
            for mode in [ProxyMode::Pause, ProxyMode::Drop, ProxyMode::Reset] {
                faults.push(Fault::Proxy(link, mode));
            }
        }
    }
    faults.shuffle(&mut rng);
    faults
        .into_iter()
        .map(|fault| PlannedFault {
            fault,
            delay: between(&mut rng, settings.delay),
            hold: between(
                &mut rng,
                match fault {
                    Fault::Proxy(..) => settings.link_hold,
                    _ => settings.hold,
                },
            ),
        })
        .collect()
}

/// What happened to one fault.
#[derive(Debug, Clone)]
pub struct FaultOutcome {
    pub fault: Fault,
    pub hold: Duration,
    pub injected_at: f64,
    pub ended_at: f64,
    /// When a new task had been pulled and a submission accepted after the end.
    pub recovered_at: Option<f64>,
    pub notes: Vec<String>,
}

impl FaultOutcome {
    pub fn recovery_secs(&self) -> Option<f64> {
        self.recovered_at.map(|t| t - self.ended_at)
    }
}

/// A role that exited without being killed by the suite (the harness restarted it, as
/// systemd's `Restart=always` would).
#[derive(Debug, Clone)]
pub struct UnexpectedExit {
    pub role: RoleSlot,
    pub status: String,
    pub at: f64,
    /// The fault in progress or last injected.
    pub during: Option<String>,
}

/// Everything a run found.
#[derive(Debug)]
pub struct SuiteRun {
    pub seed: u64,
    pub dir: PathBuf,
    pub faults: Vec<FaultOutcome>,
    pub unexpected_exits: Vec<UnexpectedExit>,
    pub unclean_stops: Vec<(RoleSlot, String)>,
    pub drained: bool,
    pub drain_secs: f64,
    pub queues_after_drain: Vec<(String, u64)>,
    pub elapsed_secs: f64,
    pub check: CheckReport,
    pub recovery_bound: Duration,
}

/// Why a run could not be carried out (as opposed to a failed check).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("private RabbitMQ: {0}")]
    Broker(#[from] PrivateBrokerError),
    #[error("private PostgreSQL: {0}")]
    Postgres(#[from] PrivatePostgresError),
    #[error("reading the fleet's database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("the fleet never got going: {0}")]
    Warmup(String),
}

/// The suite's view of a running fleet: the fleet, the validators' log and the exits it saw.
struct Harness {
    fleet: Fleet,
    log: ValidatorLog,
    exits: Vec<UnexpectedExit>,
    current: Option<String>,
}

impl Harness {
    /// Restarts any role that exited by itself, as a service manager would.
    fn supervise(&mut self) {
        for slot in self.fleet.slots() {
            if let Some(status) = self.fleet.role(slot).exited() {
                eprintln!("fault-suite: {slot} exited by itself ({status}); restarting it");
                self.exits.push(UnexpectedExit {
                    role: slot,
                    status: status.to_string(),
                    at: now_secs(),
                    during: self.current.clone(),
                });
                if let Err(e) = self.fleet.start_role(slot) {
                    eprintln!("fault-suite: restarting {slot}: {e}");
                }
            }
        }
    }

    /// Sleeps `duration`, supervising and reading the log meanwhile.
    async fn idle(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.supervise();
            self.log.refresh();
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
    }

    /// Waits until a new task was handed out and a submission accepted at or after `since`;
    /// the later of the two, or `None` past `bound`.
    async fn wait_recovery(&mut self, since: f64, bound: Duration) -> Option<f64> {
        let until = Instant::now() + bound;
        loop {
            self.log.refresh();
            let pulled = self.log.first_after(since, |e| e.is_new_task());
            let accepted = self.log.first_after(since, |e| e.is_accepted());
            if let (Some(p), Some(a)) = (pulled, accepted) {
                return Some(p.max(a));
            }
            if Instant::now() >= until {
                return None;
            }
            self.supervise();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the role's current run logs a line containing `needle`; the time it was
    /// seen, or `None` past `bound` from `since`.
    async fn wait_role_output(
        &mut self,
        slot: RoleSlot,
        needle: &str,
        since: f64,
        bound: Duration,
    ) -> Option<f64> {
        loop {
            if self.fleet.role(slot).output().contains(needle) {
                return Some(now_secs());
            }
            if now_secs() - since > bound.as_secs_f64() {
                return None;
            }
            self.supervise();
            self.log.refresh();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Injects `planned` and returns when the fault ended, with notes.
    async fn inject(&mut self, planned: &PlannedFault) -> Result<(f64, Vec<String>), SuiteError> {
        let mut notes = Vec::new();
        match planned.fault {
            Fault::Kill(slot) => {
                self.fleet.role(slot).kill_hard();
                tokio::time::sleep(planned.hold).await;
                self.fleet.start_role(slot)?;
                let restarted = now_secs();
                match self.fleet.wait_ready(slot, Duration::from_secs(60)) {
                    Ok(()) => notes.push(format!(
                        "ready {:.1} s after restart",
                        now_secs() - restarted
                    )),
                    Err(e) => notes.push(format!("not ready after restart: {e}")),
                }
                Ok((restarted, notes))
            }
            Fault::BrokerRestart => {
                self.fleet.broker.stop_app()?;
                tokio::time::sleep(planned.hold).await;
                self.fleet.broker.start_app()?;
                let ended = now_secs();
                let url = self.fleet.broker.amqp_url();
                let probe = format!("sf-probe.new-{}", (ended * 1000.0) as u64);
                match broker_probe::declare_new_queue(&url, &probe).await {
                    Ok(()) => notes.push("new at-least-once queue: declared".into()),
                    Err(e) => notes.push(format!("new at-least-once queue: {e}")),
                }
                match broker_probe::dead_letter_from_existing_queue(&url).await {
                    Ok(()) => notes.push("existing queue: dead-letters".into()),
                    Err(e) => notes.push(format!("existing queue: {e}")),
                }
                Ok((ended, notes))
            }
            Fault::PostgresRestart(mode) => {
                self.fleet.postgres.stop_server(mode)?;
                tokio::time::sleep(planned.hold).await;
                self.fleet.postgres.start_server()?;
                Ok((now_secs(), notes))
            }
            Fault::Proxy(link, mode) => {
                let proxies: Vec<_> = match link {
                    Link::Validators => self.fleet.validator_proxies.iter().collect(),
                    Link::Generator => vec![&self.fleet.generator_proxy],
                };
                for proxy in &proxies {
                    proxy.set_mode(mode);
                }
                tokio::time::sleep(planned.hold).await;
                for proxy in &proxies {
                    proxy.resume();
                }
                Ok((now_secs(), notes))
            }
        }
    }

    /// Whether every task is closed, no submission is being sent and the work queues are
    /// empty. (A `failed` submission is final: the submitter gave up or the validator refused
    /// it; the puller then requests a release, which leaves its task open until it is sent.)
    async fn drained(&self) -> Result<bool, SuiteError> {
        let client = self.fleet.postgres.client(DBNAME).await?;
        let open: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM tasks
                         WHERE status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed'))
                      + (SELECT count(*) FROM submissions WHERE state = 'sending')",
                &[],
            )
            .await?
            .get(0);
        if open > 0 {
            return Ok(false);
        }
        let queues = self.fleet.queue_messages()?;
        Ok(queues
            .iter()
            .filter(|(name, _)| !name.ends_with(".dead"))
            .all(|(_, n)| *n == 0))
    }
}

/// Runs the suite in `dir` (kept for the logs) and returns what it found; the caller asserts.
pub async fn run(
    settings: &SuiteSettings,
    binaries: &FleetBinaries,
    dir: &Path,
) -> Result<SuiteRun, SuiteError> {
    let started = Instant::now();
    let plan = plan(settings);
    eprintln!(
        "fault-suite: seed {} (replay with SPLATFLEET_FAULT_SEED={}), {} faults, fleet in {}",
        settings.seed,
        settings.seed,
        plan.len(),
        dir.display()
    );
    let fleet = Fleet::start(dir, settings.fleet.clone(), binaries).await?;
    let url = fleet.broker.amqp_url();
    if let Err(e) = broker_probe::prepare(&url).await {
        eprintln!("fault-suite: broker probe queues: {e}");
    }
    let mut harness = Harness {
        log: ValidatorLog::new(&fleet.events_path),
        fleet,
        exits: Vec::new(),
        current: Some("warm-up".into()),
    };
    let warmup_until = Instant::now() + Duration::from_secs(120);
    loop {
        harness.idle(Duration::from_millis(500)).await;
        let accepted = harness
            .log
            .events
            .iter()
            .filter(|e| e.is_accepted())
            .count();
        if accepted >= settings.warmup_accepted {
            break;
        }
        if Instant::now() > warmup_until {
            return Err(SuiteError::Warmup(format!(
                "{accepted} accepted submissions in 120 s; logs in {}",
                dir.join("logs").display()
            )));
        }
    }
    eprintln!(
        "fault-suite: warmed up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut outcomes = Vec::new();
    for (n, planned) in plan.iter().enumerate() {
        harness.idle(planned.delay).await;
        harness.current = Some(planned.fault.to_string());
        let injected_at = now_secs();
        let (ended_at, mut notes) = harness.inject(planned).await?;
        let mut recovered_at = harness
            .wait_recovery(ended_at, settings.recovery_bound)
            .await;
        if let (Fault::Kill(slot @ RoleSlot::Worker(_)), Some(pipeline)) =
            (planned.fault, recovered_at)
        {
            // The other worker keeps the pipeline going: the restarted one has recovered
            // when it publishes a result of its own.
            let worked = harness
                .wait_role_output(slot, "result published", ended_at, settings.recovery_bound)
                .await;
            recovered_at = worked.map(|t| t.max(pipeline));
            if worked.is_none() {
                notes.push("the restarted worker published no result within the bound".into());
            }
        }
        if recovered_at.is_none() && planned.fault == Fault::BrokerRestart {
            notes.push(format!(
                "no recovery within {:?} after start_app: full node restart",
                settings.recovery_bound
            ));
            harness.fleet.broker.restart_node()?;
            recovered_at = harness
                .wait_recovery(now_secs(), settings.recovery_bound)
                .await;
        }
        let outcome = FaultOutcome {
            fault: planned.fault,
            hold: planned.hold,
            injected_at,
            ended_at,
            recovered_at,
            notes,
        };
        eprintln!(
            "fault-suite: [{}/{}] {} held {:.1} s: recovered {} {}",
            n + 1,
            plan.len(),
            outcome.fault,
            planned.hold.as_secs_f64(),
            outcome
                .recovery_secs()
                .map(|s| format!("in {s:.1} s"))
                .unwrap_or_else(|| "NOT within the bound".into()),
            outcome.notes.join("; ")
        );
        outcomes.push(outcome);
    }
    harness.current = Some("settle".into());
    harness.idle(settings.settle).await;

    harness.current = Some("drain".into());
    let drain_started = Instant::now();
    harness.fleet.restart_puller_draining()?;
    let mut drained = false;
    while drain_started.elapsed() < settings.drain_timeout {
        harness.idle(Duration::from_millis(500)).await;
        if harness.drained().await.unwrap_or(false) {
            drained = true;
            break;
        }
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let queues_after_drain = harness.fleet.queue_messages().unwrap_or_default();
    let unclean_stops = harness.fleet.stop_roles();
    harness.log.refresh();
    let client = harness.fleet.postgres.client(DBNAME).await?;
    let rows = checks::load_pg(&client).await?;
    let pulls_stopped = checks::load_pulls_stopped(&client).await?;
    let check = checks::check(
        &harness.log.events,
        &rows,
        pulls_stopped,
        harness.log.unreadable_lines,
    );
    Ok(SuiteRun {
        seed: settings.seed,
        dir: dir.to_owned(),
        faults: outcomes,
        unexpected_exits: harness.exits,
        unclean_stops,
        drained,
        drain_secs,
        queues_after_drain,
        elapsed_secs: started.elapsed().as_secs_f64(),
        check,
        recovery_bound: settings.recovery_bound,
    })
}

impl SuiteRun {
    /// The invariants that failed, one sentence each.
    pub fn failures(&self) -> Vec<String> {
        let mut out = self.check.failures();
        for outcome in &self.faults {
            if outcome.recovered_at.is_none() {
                out.push(format!(
                    "no recovery within {:?} after {}",
                    self.recovery_bound, outcome.fault
                ));
            }
        }
        if !self.drained {
            out.push(format!(
                "the fleet did not drain in {:.0} s (queues {:?})",
                self.drain_secs, self.queues_after_drain
            ));
        }
        for (slot, how) in &self.unclean_stops {
            out.push(format!("{slot} did not stop cleanly on SIGTERM: {how}"));
        }
        out
    }

    /// The run as Markdown: totals, the fault matrix with recovery times, the checks.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let c = &self.check;
        out.push_str(&format!(
            "seed {} · {} faults · {:.0} s · tasks handed out {} · in Postgres {} · lost {} · duplicates {} · in-doubt resends {} · violations {} · bad-signature penalties {} · low-score penalties {} · drained in {:.1} s\n\n",
            self.seed,
            self.faults.len(),
            self.elapsed_secs,
            c.tasks_handed_out,
            c.tasks_in_pg,
            c.lost.len(),
            c.duplicates.len(),
            c.in_doubt_resends,
            c.violations,
            c.bad_signature_penalties,
            c.low_score_penalties,
            self.drain_secs,
        ));
        out.push_str("| fault | injected | recovered | recovery p50 (s) | recovery max (s) |\n|---|---|---|---|---|\n");
        let mut kinds: Vec<String> = self.faults.iter().map(|f| f.fault.kind()).collect();
        kinds.sort();
        kinds.dedup();
        let mut all = Vec::new();
        for kind in &kinds {
            let of_kind: Vec<_> = self
                .faults
                .iter()
                .filter(|f| &f.fault.kind() == kind)
                .collect();
            let mut secs: Vec<f64> = of_kind.iter().filter_map(|f| f.recovery_secs()).collect();
            all.extend(secs.iter().copied());
            secs.sort_by(f64::total_cmp);
            out.push_str(&format!(
                "| {kind} | {} | {} | {} | {} |\n",
                of_kind.len(),
                secs.len(),
                percentile(&secs, 0.5)
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or("-".into()),
                secs.last().map(|s| format!("{s:.1}")).unwrap_or("-".into()),
            ));
        }
        all.sort_by(f64::total_cmp);
        out.push_str(&format!(
            "| **all** | {} | {} | {} | {} |\n\n",
            self.faults.len(),
            all.len(),
            percentile(&all, 0.5)
                .map(|s| format!("{s:.1}"))
                .unwrap_or("-".into()),
            all.last().map(|s| format!("{s:.1}")).unwrap_or("-".into()),
        ));
        out.push_str(&format!(
            "verdicts {:?} · postgres task statuses {:?} · refusals by status {:?} (stale requests delivered late: {}) · expiries {} · answers lost {} · same-task pulls {}\n",
            c.verdicts,
            c.pg_statuses,
            c.refusals,
            c.stale_requests,
            c.expiries.len(),
            c.answers_lost.len(),
            c.same_task_pulls,
        ));
        for lost in &c.answers_lost {
            out.push_str(&format!("- answer lost: {lost}\n"));
        }
        if !self.unexpected_exits.is_empty() {
            out.push_str("\nroles that exited by themselves (restarted by the harness):\n");
            for exit in &self.unexpected_exits {
                out.push_str(&format!(
                    "- {} {} during {}\n",
                    exit.role,
                    exit.status,
                    exit.during.as_deref().unwrap_or("-")
                ));
            }
        }
        let notes: Vec<String> = self
            .faults
            .iter()
            .filter(|f| !f.notes.is_empty() && !matches!(f.fault, Fault::Kill(_)))
            .map(|f| format!("- {}: {}", f.fault, f.notes.join("; ")))
            .collect();
        if !notes.is_empty() {
            out.push_str("\nnotes:\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        let failures = self.failures();
        if !failures.is_empty() {
            out.push_str("\nFAILED:\n");
            for failure in failures {
                out.push_str(&format!("- {failure}\n"));
            }
        }
        out
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
