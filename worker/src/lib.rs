//! The worker, one process per GPU: consumes `TaskMsg` with manual acks (prefetch = slots),
//! turns each task into a model through its generation service, gates it on its GPU, stores
//! the artifacts and publishes a `ResultMsg` with confirms, acking the task only after the
//! publish is confirmed. A worker needs no PostgreSQL. [`check`] runs the same gate over
//! model files on disk, for operators tuning its settings.

pub mod budget;
pub mod check;
pub mod gate;
pub mod generation_client;
pub mod image_prompt;
pub mod metric_help;
pub mod models;
pub mod preview;
pub mod process_task;
pub mod score;
pub mod service_http;
pub mod validation_client;

use std::sync::{Arc, Mutex};

use tracing::Instrument as _;

use splatfleet_kernels::{Backend, Renderer};

use splatfleet_common::{
    artifacts::{ArtifactError, ArtifactStore},
    broker::{Broker, BrokerError, ConsumeError, Disposition, Incoming},
    config::Config,
    messages::{ResultMsg, TaskMsg},
    shutdown::Shutdown,
};

pub use gate::Gate;
pub use process_task::TaskContext;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error("--gpu {gpu}: worker.generation_endpoints has only {count} entries")]
    NoEndpoint { gpu: usize, count: usize },
    #[error(transparent)]
    Generation(#[from] generation_client::GenerateError),
    #[error("--gpu {gpu}: worker.validation_endpoints has {count} entries, neither one shared URL nor one per GPU up to {gpu}")]
    NoValidationEndpoint { gpu: usize, count: usize },
    #[error(transparent)]
    Validation(#[from] validation_client::ValidateError),
    #[error("the renderer could not be started: {0}")]
    Renderer(String),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error("the scorer could not be started on the renderer's device: {0}")]
    Scorer(splatfleet_kernels::KernelError),
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What a worker opens and reads before it starts: its renderer on GPU `gpu` and, when
/// `gate_mode = "validator"`, the scorer's models.
#[derive(Debug)]
pub struct Prepared {
    pub renderer: Renderer,
    pub models: Option<models::ValidatorModels>,
}

/// Why a worker cannot start with its config; `main` exits 78, as for a bad config.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "worker.require_gpu is set but GPU {gpu} cannot be used ({reason}); fix the driver or \
         --gpu, or set require_gpu = false to let this worker render on the CPU reference"
    )]
    NoGpu { gpu: usize, reason: String },
    #[error(transparent)]
    Models(#[from] models::ModelsError),
}

/// Opens the renderer on GPU `gpu` (refused when `require_gpu` is set and only the CPU
/// reference is left) and reads the scorer's models (blocking; `main` runs it before the
/// runtime, so a missing GPU or model file exits 78 like a bad config).
pub fn prepare(config: &Config, gpu: usize) -> Result<Prepared, PrepareError> {
    let settings = &config.worker;
    let renderer = Renderer::new(gpu);
    if let (true, Backend::Cpu { reason }) = (settings.require_gpu, renderer.backend()) {
        return Err(PrepareError::NoGpu {
            gpu,
            reason: reason.clone(),
        });
    }
    let models = models::models_for(settings)?;
    if models.is_some() && (settings.gate_views != 16 || settings.gate_render_size != 518) {
        tracing::warn!(
            views = settings.gate_views,
            size = settings.gate_render_size,
            "gate_mode = \"validator\" on a render other than the validator's 16 views of 518: \
             the predicted score is not quite the validator's"
        );
    }
    Ok(Prepared { renderer, models })
}

/// Runs the worker bound to GPU `gpu` until shutdown is requested, reading its models first
/// ([`prepare`]).
pub async fn run(config: Config, shutdown: Shutdown, gpu: usize) -> Result<(), WorkerError> {
    let prepare_config = config.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&prepare_config, gpu))
        .await
        .map_err(|e| WorkerError::Renderer(e.to_string()))??;
    run_prepared(config, prepared, shutdown, gpu).await
}

/// Runs the worker bound to GPU `gpu` with what [`prepare`] opened.
pub async fn run_prepared(
    config: Config,
    prepared: Prepared,
    shutdown: Shutdown,
    gpu: usize,
) -> Result<(), WorkerError> {
    let settings = &config.worker;
    let endpoint = settings
        .generation_endpoints
        .get(gpu)
        .ok_or(WorkerError::NoEndpoint {
            gpu,
            count: settings.generation_endpoints.len(),
        })?;
    let client = generation_client::GenerationClient::new(endpoint, settings.max_response_bytes)?;
    let validation = match settings.validation_endpoint(gpu) {
        Some(endpoint) => Some(validation_client::ValidationClient::new(endpoint)?),
        None if settings.validation_endpoints.is_empty() => None,
        None => {
            return Err(WorkerError::NoValidationEndpoint {
                gpu,
                count: settings.validation_endpoints.len(),
            })
        }
    };
    let store = ArtifactStore::open(&config.object_store)?;
    let gate_settings = settings.clone();
    let Prepared { renderer, models } = prepared;
    let gate = tokio::task::spawn_blocking(move || Gate::start(renderer, &gate_settings, models))
        .await
        .map_err(|e| WorkerError::Renderer(e.to_string()))?
        .map_err(WorkerError::Scorer)?;
    metric_help::describe();
    metrics::gauge!("splatfleet_worker_gpu_backend", "backend" => gate.backend_name()).set(1.0);
    let context = Arc::new(TaskContext {
        client,
        gate: Arc::new(Mutex::new(gate)),
        validation,
        store,
        settings: settings.clone(),
        worker_name: format!("{}/gpu{gpu}", host_name()),
    });
    let broker = Broker::connect(&config.broker, "splatfleet-worker").await?;
    broker.declare_topology().await?;
    let publisher = Arc::new(broker.publisher::<ResultMsg>().await?);
    // A task still running at the drain deadline is nacked so another worker takes it.
    let consumer = broker
        .consumer::<TaskMsg>(settings.slots, &format!("worker-gpu{gpu}"))
        .await?
        .drain_within(config.shutdown.drain_timeout());
    tracing::info!(
        prefix = %broker.topology().prefix,
        endpoint = context.client.url(),
        tier2 = context
            .validation
            .as_ref()
            .map(|v| v.url(splatfleet_common::messages::TaskKind::Text)),
        slots = settings.slots,
        gate_mode = ?context.settings.gate_mode,
        "ready"
    );
    let outcome = consumer
        .run(
            shutdown.token().clone(),
            move |incoming: Incoming<TaskMsg>| {
                let context = Arc::clone(&context);
                let publisher = Arc::clone(&publisher);
                let span = tracing::info_span!(
                    "task",
                    task_id = %incoming.body.task_id,
                    validator = %incoming.body.validator.hotkey
                );
                async move { handle(&context, &publisher, incoming.body).await }.instrument(span)
            },
        )
        .await;
    broker.close().await;
    outcome.map_err(Into::into)
}

/// Processes one task and publishes its answer; ack only once the publish is confirmed.
async fn handle(
    context: &TaskContext,
    publisher: &splatfleet_common::broker::Publisher<ResultMsg>,
    task: TaskMsg,
) -> Disposition {
    metrics::gauge!("splatfleet_worker_busy_slots").increment(1.0);
    let result = context.process(&task).await;
    metrics::gauge!("splatfleet_worker_busy_slots").decrement(1.0);
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            tracing::warn!(task_id = %task.task_id, %err, "task not answered; requeueing it");
            return Disposition::Requeue;
        }
    };
    let publishing = std::time::Instant::now();
    let published = publisher.publish(&result).await;
    process_task::observe_stage("publish", publishing.elapsed());
    match published {
        Ok(()) => {
            tracing::info!(task_id = %task.task_id, attempts = result.attempts.len(), ready = matches!(result.outcome, splatfleet_common::messages::ResultOutcome::Ready { .. }), "result published");
            Disposition::Ack
        }
        Err(err) => {
            tracing::warn!(task_id = %task.task_id, %err, "result publish failed; requeueing the task");
            Disposition::Requeue
        }
    }
}
