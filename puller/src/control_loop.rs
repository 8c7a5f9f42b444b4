//! The puller's control loop: one task owns the [`Scheduler`] and, every tick, reads the
//! capacity signal and, when a pull may start, refreshes what Postgres knows (cooldowns,
//! held tasks) and starts pulls for the validators the policy chooses. Pulls, publishes and releases of lost tasks run as
//! jobs beside the loop and report back; the loop alone changes scheduling state, so there
//! are no locks around it.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use splatfleet_common::{
    bittensor::{load_hotkey, Dendrite},
    broker::{Broker, Publisher, QueueKind},
    config::Config,
    db::Pool,
    discovery::{DiscoveredValidator, ValidatorInfo},
    ledger::{
        self,
        closed::{self, ClosedListener},
        validators::{self, PullRecord},
    },
    messages::TaskMsg,
    shutdown::Shutdown,
};
use tokio::task::JoinSet;

use crate::{
    capacity::{self, CapacitySignal},
    jobs::{now_secs, pull_job, JobContext, JobOutcome, JobReport, KnownValidator},
    metrics,
    policy::{Blacklisting, PullPolicy, HOUSEKEEPING_EVERY_SECS},
    scheduler::{NoTask, Scheduler},
    validator_set::{self, SetFilters, ValidatorSet},
    verdict_windows::VerdictWindows,
    PullerError,
};

/// The running puller.
#[derive(Debug)]
pub struct ControlLoop {
    config: Arc<Config>,
    pool: Pool,
    broker: Arc<Broker>,
    publisher: Option<Publisher<TaskMsg>>,
    jobs_context: Option<Arc<JobContext>>,
    capacity_channel: lapin::Channel,
    tasks_queue: String,
    scheduler: Scheduler,
    policy: PullPolicy,
    filters: SetFilters,
    discovered: Vec<DiscoveredValidator>,
    ids: HashMap<String, i64>,
    eligible: HashMap<String, KnownValidator>,
    last_set: Option<ValidatorSet>,
    jobs: JoinSet<JobReport>,
    pulls_in_flight: usize,
    /// When every validator was last read from Postgres (unix seconds; 0: never).
    last_full_snapshot: f64,
    /// The submitter's announcements of closed tasks; `None` while not listening.
    closed: Option<ClosedListener>,
    /// Each validator's recent verdicts, for the blacklist and the acceptance estimate.
    verdicts: VerdictWindows,
    /// When `verdicts` was last read from Postgres (unix seconds; 0: never).
    verdicts_read_at: f64,
}

/// Only the submitter changes a validator's standing once we hold its task (it closes the
/// task and records the cooldown), and it announces each close (`ledger::closed`). While we
/// listen, nothing else is read between full reads; while we do not, the validators holding a
/// task are read every tick. The full read catches anything else (a second puller, a hand
/// edit, a notice missed while the listening connection was down).
const FULL_SNAPSHOT_EVERY_SECS: f64 = 5.0;
/// While listening, how often what the notices keep current (the validators' standing, their
/// verdict windows) is read again from the ledger anyway.
const REREAD_WHILE_LISTENING_SECS: f64 = 30.0;

/// Listens for closed tasks, or says why not (the puller then reads Postgres every tick).
async fn listen_for_closes(config: &Config) -> Option<ClosedListener> {
    let listener = closed::listen(&config.database).await;
    ::metrics::gauge!("splatfleet_puller_close_notices_listening").set(if listener.is_ok() {
        1.0
    } else {
        0.0
    });
    match listener {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for closed tasks; reading Postgres every tick until it works");
            None
        }
    }
}

impl ControlLoop {
    pub async fn new(config: Config, pool: Pool, broker: Arc<Broker>) -> Result<Self, PullerError> {
        let scheduler = Scheduler::from_settings(&config.puller);
        let policy = PullPolicy::from_settings(&config.puller);
        let publisher = broker.publisher::<TaskMsg>().await?;
        let capacity_channel = broker.channel().await?;
        let tasks_queue = broker.topology().queue(QueueKind::Tasks);
        validators::clear_stops(&pool).await?;
        let closed = listen_for_closes(&config).await;
        let verdicts = VerdictWindows::new(policy.blacklist.window.max(policy.acceptance_window));
        Ok(Self {
            filters: SetFilters::from_config(&config),
            config: Arc::new(config),
            pool,
            broker,
            publisher: Some(publisher),
            jobs_context: None,
            capacity_channel,
            tasks_queue,
            scheduler,
            policy,
            discovered: Vec::new(),
            ids: HashMap::new(),
            eligible: HashMap::new(),
            last_set: None,
            jobs: JoinSet::new(),
            pulls_in_flight: 0,
            last_full_snapshot: 0.0,
            closed,
            verdicts,
            verdicts_read_at: 0.0,
        })
    }

    /// Runs until shutdown, then waits for the jobs in flight.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), PullerError> {
        let settings = self.config.puller.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(settings.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let discovery_every = Duration::from_secs(settings.discovery_refresh_secs);
        let mut next_discovery = Instant::now();
        let mut next_housekeeping = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.requested() => break,
                Some(joined) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    match joined {
                        Ok(report) => self.on_report(report).await,
                        Err(err) => tracing::error!(%err, "a puller job panicked"),
                    }
                }
                _ = tick.tick() => {
                    if Instant::now() >= next_discovery {
                        next_discovery = Instant::now() + discovery_every;
                        self.refresh_discovery().await?;
                    }
                    if Instant::now() >= next_housekeeping {
                        next_housekeeping =
                            Instant::now() + Duration::from_secs_f64(HOUSEKEEPING_EVERY_SECS);
                        if let Err(err) = self.housekeeping().await {
                            tracing::warn!(%err, "puller housekeeping failed; retrying next round");
                        }
                        self.report_queues().await;
                    }
                    if let Err(err) = self.schedule().await {
                        tracing::warn!(%err, "scheduling round failed; retrying next tick");
                    }
                }
            }
        }
        tracing::info!(
            jobs = self.jobs.len(),
            "puller stopping; waiting for calls in flight"
        );
        while let Some(joined) = self.jobs.join_next().await {
            if let Ok(report) = joined {
                self.on_report(report).await;
            }
        }
        let _ = self
            .capacity_channel
            .close(200, "puller stopping".into())
            .await;
        Ok(())
    }

    /// The uid of a discovered validator, for the metrics' `uid` label.
    fn uid_of(&self, hotkey: &str) -> Option<u16> {
        self.discovered
            .iter()
            .find(|v| v.info.hotkey == hotkey)
            .map(|v| v.info.uid)
    }

    /// Rediscovers validators; a failure (finding nobody included) keeps the last good set,
    /// marked stale until a refresh succeeds.
    async fn refresh_discovery(&mut self) -> Result<(), PullerError> {
        let refreshed = match validator_set::discover(&self.config).await {
            Ok(found) => {
                let source = validator_set::source_name(&self.config);
                let infos: Vec<ValidatorInfo> = found.iter().map(|v| v.info.clone()).collect();
                match validators::upsert_validators(&self.pool, &infos, source).await {
                    Ok(ids) => {
                        self.ids = ids;
                        self.discovered = found;
                        ::metrics::gauge!(
                            "splatfleet_puller_discovery_last_success_timestamp_seconds"
                        )
                        .set(now_secs());
                        self.last_set = None;
                        true
                    }
                    Err(err) => {
                        ::metrics::counter!("splatfleet_puller_discovery_failures_total")
                            .increment(1);
                        tracing::warn!(%err, "recording discovered validators failed; keeping the last set");
                        false
                    }
                }
            }
            Err(err) => {
                ::metrics::counter!("splatfleet_puller_discovery_failures_total").increment(1);
                tracing::warn!(%err, "validator discovery failed; keeping the last good set");
                false
            }
        };
        metrics::discovery_stale(!refreshed);
        if !self.discovered.is_empty() && self.jobs_context.is_none() {
            self.start_jobs_context()?;
        }
        Ok(())
    }

    /// Loads the miner hotkey once there is someone to pull from.
    fn start_jobs_context(&mut self) -> Result<(), PullerError> {
        let hotkey = load_hotkey(&self.config.wallet)?;
        tracing::info!(miner = hotkey.ss58(), "miner hotkey loaded");
        let dendrite = Dendrite::new(Arc::new(hotkey), self.config.dendrite.settings());
        let settings = &self.config.puller;
        let Some(publisher) = self.publisher.take() else {
            return Ok(());
        };
        self.jobs_context = Some(Arc::new(JobContext {
            pool: self.pool.clone(),
            publisher,
            dendrite,
            timeout: Duration::from_millis(settings.pull_timeout_ms),
            task_deadline: Duration::from_secs(settings.task_deadline_secs),
            publish_tries: settings.publish_tries,
        }));
        Ok(())
    }

    /// Blacklist, acceptance, the validator set, lost tasks and the listening connection: the facts
    /// from the ledger, the decisions from [`PullPolicy`].
    async fn housekeeping(&mut self) -> Result<(), PullerError> {
        let rule = self.policy.blacklist;
        let now = now_secs();
        // Verdicts come with the close notices; the ledger is read again now and then (an
        // operator's blacklisting, a notice missed), and every round while not listening.
        if self.closed.is_none() || now - self.verdicts_read_at >= REREAD_WHILE_LISTENING_SECS {
            let recent = ledger::recent_verdicts(&self.pool, self.verdicts.cap()).await?;
            self.verdicts.seed(recent);
            self.verdicts_read_at = now;
        }
        let judged = self.verdicts.stats(rule.window);
        for blacklisting in rule.blacklistings(&judged, &self.filters.auto_blacklist) {
            let Blacklisting { hotkey, reason } = blacklisting;
            tracing::warn!(validator = %hotkey, %reason, secs = rule.secs, "automatic blacklist");
            validators::auto_blacklist(&self.pool, &hotkey, &reason, rule.secs).await?;
            self.verdicts.blacklisted(&hotkey, now + rule.secs as f64);
        }
        self.filters.auto_blacklist = validators::blacklisted(&self.pool).await?;
        let recent = self.verdicts.stats(self.policy.acceptance_window);
        self.apply_set().await?;
        self.scheduler.set_acceptances(&recent);
        if self.closed.is_none() {
            self.closed = listen_for_closes(&self.config).await;
            if self.closed.is_some() {
                // Closes during the gap were not announced to us: read everything next.
                self.last_full_snapshot = 0.0;
            }
        }
        self.release_lost_tasks().await
    }

    /// Applies the filters and hands the eligible validators to the scheduler.
    async fn apply_set(&mut self) -> Result<(), PullerError> {
        let set = self.filters.apply(&self.discovered);
        if self.last_set.as_ref() == Some(&set) {
            return Ok(());
        }
        let wanted: Vec<validators::Exclusion<'_>> = set
            .excluded
            .iter()
            .map(|e| {
                (
                    e.validator.hotkey.as_str(),
                    Some((e.reason.as_str(), e.detail.as_str())),
                )
            })
            .chain(set.eligible.iter().map(|v| (v.hotkey.as_str(), None)))
            .collect();
        validators::record_exclusions(&self.pool, &self.ids, &wanted).await?;
        metrics::validator_set(set.eligible.len(), &set.excluded);
        let weights = &self.config.puller.reward_weights;
        let default_weight = self.scheduler.default_reward_weight();
        self.scheduler.set_validators(set.eligible.iter().map(|v| {
            (
                v.hotkey.clone(),
                weights.get(&v.hotkey).copied().unwrap_or(default_weight),
            )
        }));
        self.eligible = set
            .eligible
            .iter()
            .filter_map(|v| {
                let id = *self.ids.get(&v.hotkey)?;
                Some((
                    v.hotkey.clone(),
                    KnownValidator {
                        info: v.clone(),
                        id,
                    },
                ))
            })
            .collect();
        self.last_set = Some(set);
        Ok(())
    }

    /// Publishes every queue's ready messages and consumers (tasks, results, dead letters)
    /// for alerts and dashboards, so no RabbitMQ exporter is needed. A failed read leaves the
    /// gauges as they were; the capacity probe reopens the channel.
    async fn report_queues(&self) {
        let topology = self.broker.topology();
        for queue in [
            topology.queue(QueueKind::Tasks),
            topology.queue(QueueKind::Results),
            topology.dead_queue(),
        ] {
            match splatfleet_common::broker::queue_counts(&self.capacity_channel, &queue).await {
                Ok(counts) => metrics::queue(&queue, counts.ready, counts.consumers),
                Err(err) => {
                    tracing::debug!(%queue, %err, "reading queue counts failed");
                    return;
                }
            }
        }
    }

    /// One scheduling round: capacity, then (only when a pull may start) Postgres state,
    /// then pulls.
    async fn schedule(&mut self) -> Result<(), PullerError> {
        let Some(context) = self.jobs_context.clone() else {
            return Ok(());
        };
        self.apply_close_notices();
        // Count pulls in flight before reading the queue: a pull that publishes in between
        // is then counted twice (safe), never missed.
        let in_flight = self.pulls_in_flight;
        let signal = match capacity::probe(&self.capacity_channel, &self.tasks_queue).await {
            Ok(signal) => signal,
            Err(err) => {
                // The channel may have died with the connection; open a fresh one.
                tracing::warn!(%err, "reading the tasks queue failed; no pulls this tick");
                if let Ok(channel) = self.broker.channel().await {
                    self.capacity_channel = channel;
                }
                return Ok(());
            }
        };
        let slots = self.policy.capacity.free_slots(signal, in_flight);
        report_capacity(signal, slots, in_flight);
        if slots == 0 {
            // Nothing may start this tick: the snapshot (one query over every validator)
            // would change nothing that is used before the next tick's.
            return Ok(());
        }
        self.refresh_from_postgres().await?;
        let now = now_secs();
        for hotkey in self.scheduler.choose(now, slots) {
            let Some(validator) = self.eligible.get(&hotkey).cloned() else {
                continue;
            };
            self.scheduler.pull_started(&hotkey, now);
            self.pulls_in_flight += 1;
            self.jobs.spawn(pull_job(context.clone(), validator));
        }
        Ok(())
    }

    /// Folds what Postgres knows (cooldowns, the latest task of each validator and whether
    /// it is still open) into the scheduler.
    async fn refresh_from_postgres(&mut self) -> Result<(), PullerError> {
        let now = now_secs();
        let listening = self.closed.is_some();
        let every = if listening {
            REREAD_WHILE_LISTENING_SECS
        } else {
            FULL_SNAPSHOT_EVERY_SECS
        };
        let full = now - self.last_full_snapshot >= every;
        if !full && listening {
            return Ok(());
        }
        let holding: Vec<String> = if full {
            Vec::new()
        } else {
            self.scheduler
                .validators()
                .filter(|(_, standing)| standing.held_task.is_some())
                .map(|(hotkey, _)| hotkey.clone())
                .collect()
        };
        if !full && holding.is_empty() {
            return Ok(());
        }
        let snapshots =
            validators::snapshot(&self.pool, (!full).then_some(holding.as_slice())).await?;
        if full {
            self.last_full_snapshot = now;
        }
        for snap in snapshots {
            if let Some(until) = snap.cooldown_until {
                self.scheduler.cooldowns.raise(&snap.hotkey, until);
            }
            let Some(standing) = self.scheduler.standing_mut(&snap.hotkey) else {
                continue;
            };
            match snap.latest_task {
                Some((task_id, true)) => standing.held_task = Some(task_id),
                Some((task_id, false)) => {
                    self.scheduler.task_closed(&snap.hotkey, &task_id, None);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Folds the closes announced since the last tick into the scheduler; notices the
    /// listening connection's end (then every tick reads Postgres until it listens again).
    fn apply_close_notices(&mut self) {
        let Some(listener) = self.closed.as_mut() else {
            return;
        };
        let Some(notices) = listener.drain() else {
            tracing::warn!("stopped listening for closed tasks; reading Postgres every tick until listening again");
            ::metrics::gauge!("splatfleet_puller_close_notices_listening").set(0.0);
            self.closed = None;
            return;
        };
        if notices.is_empty() {
            return;
        }
        let hotkeys: HashMap<i64, &String> = self.ids.iter().map(|(h, id)| (*id, h)).collect();
        let now = now_secs();
        for notice in notices {
            if let Some(hotkey) = hotkeys.get(&notice.validator_id) {
                self.scheduler
                    .task_closed(hotkey, &notice.task_id, notice.cooldown_until);
                if let Some(verdict) = notice.verdict {
                    self.verdicts.record(hotkey, verdict, now);
                }
            }
        }
    }

    /// Requests the empty release of each task the fleet lost; the submitter sends it. The
    /// validator holds the task until then, so it is not pulled meanwhile.
    async fn release_lost_tasks(&mut self) -> Result<(), PullerError> {
        let grace = self.config.puller.lost_task_grace_secs;
        for lost in ledger::lost_tasks(&self.pool, grace).await? {
            if !ledger::request_release(&self.pool, lost.id, "lost: no result by the deadline")
                .await?
            {
                continue;
            }
            tracing::warn!(validator = %lost.hotkey, task_id = %lost.task_id, "task lost by the fleet; requested its release with an empty submission");
            metrics::release_requested(&lost.hotkey, self.uid_of(&lost.hotkey), "lost");
            self.scheduler.task_held(&lost.hotkey, &lost.task_id);
        }
        Ok(())
    }

    /// Folds a job's outcome into the scheduler and the records.
    async fn on_report(&mut self, report: JobReport) {
        let JobReport {
            hotkey,
            validator_id,
            is_pull,
            outcome,
        } = report;
        if is_pull {
            self.pulls_in_flight = self.pulls_in_flight.saturating_sub(1);
        }
        ::metrics::gauge!("splatfleet_puller_pulls_in_flight").set(self.pulls_in_flight as f64);
        self.scheduler.call_finished(&hotkey);
        let now = now_secs();
        let record = match outcome {
            JobOutcome::Held { task_id } => {
                self.scheduler.task_held(&hotkey, &task_id);
                None
            }
            JobOutcome::Cooldown { until, violations } => {
                match self
                    .scheduler
                    .answered_without_task(&hotkey, until as f64, violations, now)
                {
                    NoTask::NothingOffered { backoff_until } => {
                        tracing::info!(validator = %hotkey, backoff_secs = backoff_until - now, "validator had no task for us");
                        Some(PullRecord::Failed {
                            error: "no task offered".into(),
                            backoff_until,
                        })
                    }
                    NoTask::Cooldown => {
                        if violations > 0 {
                            metrics::violation(&hotkey, self.uid_of(&hotkey));
                            tracing::error!(validator = %hotkey, violations, cooldown_until = until, "the validator counted a cooldown violation");
                        } else if until as f64 > now {
                            tracing::warn!(validator = %hotkey, cooldown_until = until, "validator answered with a cooldown we did not know (not registered?)");
                        }
                        Some(PullRecord::Answered {
                            cooldown_until: Some(until as f64),
                            violations: i32::try_from(violations).ok(),
                        })
                    }
                }
            }
            JobOutcome::Unavailable(error)
            | JobOutcome::Refused(error)
            | JobOutcome::Error(error) => {
                let until = self.scheduler.pull_failed(&hotkey, now);
                tracing::warn!(validator = %hotkey, %error, backoff_secs = until - now, "pull failed; backing off");
                Some(PullRecord::Failed {
                    error,
                    backoff_until: until,
                })
            }
            JobOutcome::Unauthorized(error) => {
                tracing::error!(validator = %hotkey, %error, "validator refused our signature or nonce (401): pulls from it stop; check the system clock and the miner hotkey");
                metrics::unauthorized(&hotkey, self.uid_of(&hotkey));
                self.scheduler.stop(&hotkey, error.clone());
                self.filters
                    .unauthorized
                    .insert(hotkey.clone(), error.clone());
                if let Err(err) = self.apply_set().await {
                    tracing::warn!(%err, "recording the exclusion failed");
                }
                Some(PullRecord::Stopped { error })
            }
        };
        if let Some(record) = record {
            if let Err(err) = validators::record_pull(&self.pool, validator_id, &record).await {
                tracing::warn!(validator = %hotkey, %err, "recording the pull failed");
            }
        }
    }
}

fn report_capacity(signal: CapacitySignal, slots: usize, in_flight: usize) {
    ::metrics::gauge!("splatfleet_puller_tasks_ready").set(f64::from(signal.ready));
    ::metrics::gauge!("splatfleet_puller_task_consumers").set(f64::from(signal.consumers));
    ::metrics::gauge!("splatfleet_puller_pull_slots_free").set(slots as f64);
    ::metrics::gauge!("splatfleet_puller_pulls_in_flight").set(in_flight as f64);
}
