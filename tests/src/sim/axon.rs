//! The simulated validator's axon: an HTTP server that treats requests the way Bittensor SDK
//! 9.9.0's `AxonMiddleware` does (`bittensor/core/axon.py`): route by synapse name (404 for an
//! unknown one), parse headers (400), blacklist (403), verify nonce and signature (401), check
//! the body hash (500), then run the forward function. Errors are `{"message": ...}` bodies
//! with the SDK's texts.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use http_body_util::{BodyExt as _, Limited};
use hyper::{body::Incoming, header, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use splatfleet_common::{
    bittensor::{
        synapse::{
            self, from_headers, HeaderSynapse, Synapse, SynapseBody, NONCE_WINDOW_MIN_VERSION,
            SDK_VERSION_AS_INT,
        },
        Hotkey, Verifier,
    },
    protocol::sn17::{PullTask, SubmitResults},
};
use tokio::{net::TcpListener, task::JoinHandle};

use super::{
    events::EventLog,
    misbehaviour::{full, Misbehaviour, SimBody},
    pacer::TaskPacer,
    rules::ValidatorRules,
};

/// The axon's nonce slack (`ALLOWED_DELTA`, 4 s) in ns.
const ALLOWED_DELTA_NS: f64 = 4_000_000_000.0;

/// Largest request body the simulator reads.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Synapse names served, in attach order (the SDK attaches its `Synapse` ping first).
const SERVED: &[&str] = &["Synapse", "PullTask", "SubmitResults"];

/// The base `Synapse` the SDK attaches as a ping: no fields of its own.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Ping {}

impl Synapse for Ping {
    const NAME: &'static str = "Synapse";
    const REQUIRED_FIELDS: &'static [(&'static str, &'static str)] = &[];
}

/// One simulated validator: its key, its rules and its axon's nonce memory.
#[derive(Debug)]
pub struct SimValidator {
    pub uid: u16,
    pub hotkey: Hotkey,
    uuid: String,
    rules: Mutex<ValidatorRules>,
    nonces: Mutex<HashMap<String, u64>>,
    events: EventLog,
    /// HTTP statuses the next SubmitResults requests are answered with, before any rule
    /// runs (fault injection for tests).
    submit_faults: Mutex<std::collections::VecDeque<u16>>,
    /// How PullTask and SubmitResults are answered instead of by the rules' answer, once
    /// verified and judged (bad-input tests).
    pull_misbehaviour: Mutex<Option<Misbehaviour>>,
    submit_misbehaviour: Mutex<Option<Misbehaviour>>,
    /// The network's task supply limit (benchmarks): PullTask answers wait for a slot.
    pacer: Option<Arc<TaskPacer>>,
}

/// An error answer: status and message, as `create_error_response` sends them.
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal Server Error #{}", uuid::Uuid::new_v4()),
        )
    }
}

impl SimValidator {
    pub fn new(uid: u16, hotkey: Hotkey, rules: ValidatorRules, events: EventLog) -> Self {
        Self {
            uid,
            hotkey,
            uuid: uuid::Uuid::new_v4().to_string(),
            rules: Mutex::new(rules),
            nonces: Mutex::new(HashMap::new()),
            events,
            submit_faults: Mutex::new(std::collections::VecDeque::new()),
            pull_misbehaviour: Mutex::new(None),
            submit_misbehaviour: Mutex::new(None),
            pacer: None,
        }
    }

    /// Holds every PullTask answer until `pacer` gives it a slot.
    pub fn with_pacer(mut self, pacer: Option<Arc<TaskPacer>>) -> Self {
        self.pacer = pacer;
        self
    }

    /// Answers the next SubmitResults requests with these statuses (one each, in order)
    /// before looking at them, as a validator behind a failing proxy would.
    pub fn fail_next_submits(&self, statuses: &[u16]) {
        if let Ok(mut faults) = self.submit_faults.lock() {
            faults.extend(statuses.iter().copied());
        }
    }

    /// Answers every verified PullTask with `misbehaviour` (`None`: by the rules again). The
    /// rules still run, so a task they assign stays assigned as on a real validator.
    pub fn misbehave_on_pull(&self, misbehaviour: Option<Misbehaviour>) {
        if let Ok(mut slot) = self.pull_misbehaviour.lock() {
            *slot = misbehaviour;
        }
    }

    /// Answers every SubmitResults that passed the axon's checks with `misbehaviour` (`None`:
    /// honestly again). The rules judge the submission first, as a validator whose answer is
    /// lost on the way back would have.
    pub fn misbehave_on_submit(&self, misbehaviour: Option<Misbehaviour>) {
        if let Ok(mut slot) = self.submit_misbehaviour.lock() {
            *slot = misbehaviour;
        }
    }

    /// The bad answer set for `slot`, recorded as an event, if one is set.
    fn misbehaviour<S: Synapse>(
        &self,
        slot: &Mutex<Option<Misbehaviour>>,
        syn: &SynapseBody<S>,
    ) -> Result<Option<Response<SimBody>>, Failure> {
        let Some(misbehaviour) = slot.lock().map_err(|_| Failure::internal())?.clone() else {
            return Ok(None);
        };
        self.events.record(
            "misbehaved",
            json!({"validator_uid": self.uid, "synapse": S::NAME, "how": misbehaviour.label()}),
        );
        let honest = serde_json::to_vec(syn).unwrap_or_default();
        Ok(Some(misbehaviour.answer(S::NAME, &honest)))
    }

    /// Hands out these tasks, in order, before the generated ones (bad-input tests: an image
    /// prompt that is not base64, a prompt of megabytes).
    pub fn hand_out_first(&self, tasks: Vec<splatfleet_common::protocol::sn17::ProtocolTask>) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.hand_out_first(tasks);
        }
    }

    /// Restricts which miner hotkeys count as registered (`None`: all).
    pub fn set_registered(&self, hotkeys: Option<Vec<String>>) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.set_registered(hotkeys);
        }
    }

    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<SimBody> {
        let started = Instant::now();
        match self.dispatch(request, peer, started).await {
            Ok(response) => response,
            Err(failure) => {
                self.events.record(
                    "rejected",
                    json!({
                        "validator_uid": self.uid,
                        "validator": self.hotkey.ss58(),
                        "status": failure.status.as_u16(),
                        "message": failure.message,
                    }),
                );
                json_response(failure.status, &json!({ "message": failure.message }))
            }
        }
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        started: Instant,
    ) -> Result<Response<SimBody>, Failure> {
        let path = request.uri().path().to_owned();
        let name = path.split('/').nth(1).unwrap_or("").to_owned();
        if !SERVED.contains(&name.as_str()) {
            let available = SERVED
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("Synapse name '{name}' not found. Available synapses [{available}]"),
            ));
        }
        let header_pairs: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let parsed = from_headers(header_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Improperly formatted request. Could not parse headers into synapse of type {name}."
                    ),
                )
            })?;
        if name == SubmitResults::NAME {
            let fault = self
                .submit_faults
                .lock()
                .ok()
                .and_then(|mut f| f.pop_front());
            if let Some(status) = fault {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Err(Failure::new(status, format!("injected fault {status}")));
            }
            self.blacklist_submit(&parsed, peer)?;
        }
        self.verify(&parsed)?;
        let body = Limited::new(request.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
            .map_err(|_| Failure::internal())?
            .to_bytes();
        let header_hash = parsed.computed_body_hash.clone().unwrap_or_default();
        match name.as_str() {
            "PullTask" => {
                let mut syn: SynapseBody<PullTask> = parse_body(&body, &header_hash)?;
                if let Some(pacer) = &self.pacer {
                    pacer.wait().await;
                }
                let rules_out = {
                    let mut rules = self.rules.lock().map_err(|_| Failure::internal())?;
                    rules.pull(syn.dendrite_hotkey(), syn.synapse.clone())
                };
                syn.synapse = rules_out;
                if let Some(bad) = self.misbehaviour(&self.pull_misbehaviour, &syn)? {
                    return Ok(bad);
                }
                Ok(self.success(syn, started))
            }
            "SubmitResults" => {
                let mut syn: SynapseBody<SubmitResults> = parse_body(&body, &header_hash)?;
                let rules_out = {
                    let mut rules = self.rules.lock().map_err(|_| Failure::internal())?;
                    rules.submit(
                        syn.dendrite_hotkey(),
                        syn.axon_hotkey(),
                        syn.synapse.clone(),
                    )
                };
                syn.synapse = rules_out.map_err(|_| Failure::internal())?;
                if let Some(bad) = self.misbehaviour(&self.submit_misbehaviour, &syn)? {
                    return Ok(bad);
                }
                Ok(self.success(syn, started))
            }
            _ => {
                let syn: SynapseBody<Ping> = parse_body(&body, &header_hash)?;
                Ok(self.success(syn, started))
            }
        }
    }

    /// `blacklist_submitting_results`, on the header-parsed synapse.
    fn blacklist_submit(&self, parsed: &HeaderSynapse, peer: SocketAddr) -> Result<(), Failure> {
        let hotkey = parsed.dendrite.hotkey.clone();
        let mut rules = self.rules.lock().map_err(|_| Failure::internal())?;
        let reason = match hotkey.as_deref() {
            Some(h) if rules.is_registered(h) => {
                if rules.has_assigned_task(h) {
                    return Ok(());
                }
                format!(
                    "[{}] submitted results while having no task assigned. \
                     It could happen if validator restarts or miner faults",
                    rules.miner_uid(h)
                )
            }
            other => format!(
                "Unrecognized hotkey {} ({})",
                other.unwrap_or("None"),
                peer.ip()
            ),
        };
        Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("Forbidden. Key is blacklisted: {reason}."),
        ))
    }

    /// `default_verify`: nonce rules, then the signature over
    /// `{nonce}.{dendrite}.{own hotkey}.{uuid}.{computed_body_hash}`.
    fn verify(&self, parsed: &HeaderSynapse) -> Result<(), Failure> {
        let not_verified = |why: String| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                format!("Not Verified with error: {why}"),
            )
        };
        let d = &parsed.dendrite;
        let Some(hotkey) = d.hotkey.as_deref() else {
            return Err(not_verified(
                "No SS58 formatted address or public key provided".into(),
            ));
        };
        let verifier = Verifier::from_ss58(hotkey)
            .map_err(|_| not_verified("Invalid SS58 address: hotkey".into()))?;
        let nonce_text = d
            .nonce
            .map(|n| n.to_string())
            .unwrap_or_else(|| "None".into());
        let uuid = d.uuid.as_deref().unwrap_or("None");
        let body_hash = parsed.computed_body_hash.as_deref().unwrap_or("None");
        let message = format!(
            "{nonce_text}.{hotkey}.{}.{uuid}.{body_hash}",
            self.hotkey.ss58()
        );
        let endpoint_key = format!("{hotkey}:{uuid}");
        let Some(nonce) = d.nonce else {
            return Err(not_verified("Missing Nonce".into()));
        };
        let mut nonces = self.nonces.lock().map_err(|_| Failure::internal())?;
        let last = nonces.get(&endpoint_key).copied();
        if d.version.is_some_and(|v| v >= NONCE_WINDOW_MIN_VERSION) {
            let now_ns = splatfleet_common::bittensor::nonce::wall_clock_ns() as f64;
            let timeout_ns = parsed.timeout.unwrap_or(0.0) * 1e9;
            let window = now_ns - ALLOWED_DELTA_NS - timeout_ns;
            if last.is_none() && (nonce as f64) <= window {
                return Err(not_verified(format!(
                    "Nonce is too old: acceptable delta is {:.2} seconds but request was {:.2} seconds old",
                    (ALLOWED_DELTA_NS + timeout_ns) / 1e9,
                    (now_ns - nonce as f64) / 1e9
                )));
            }
        }
        if last.is_some_and(|l| nonce <= l) {
            return Err(not_verified(
                "Nonce is too old, a newer one was last processed".into(),
            ));
        }
        if let Some(signature) = d.signature.as_deref().filter(|s| !s.is_empty()) {
            let ok = verifier
                .verify_hex(message.as_bytes(), signature)
                .unwrap_or(false);
            if !ok {
                return Err(not_verified(format!(
                    "Signature mismatch with {message} and {signature}"
                )));
            }
        }
        nonces.insert(endpoint_key, nonce);
        Ok(())
    }

    /// `synapse_to_response`: 200, the synapse as JSON, its headers.
    fn success<S: Synapse>(&self, mut syn: SynapseBody<S>, started: Instant) -> Response<SimBody> {
        let mut axon = syn.axon.take().unwrap_or_default();
        axon.status_code = Some(200);
        if axon.status_message.as_deref().is_none_or(str::is_empty) {
            axon.status_message = Some("Success".into());
        }
        axon.process_time = Some(started.elapsed().as_secs_f64());
        axon.version = Some(SDK_VERSION_AS_INT);
        axon.uuid = Some(self.uuid.clone());
        syn.axon = Some(axon);
        syn.name = Some(S::NAME.to_owned());
        let headers = synapse::to_headers(&syn);
        let mut response = json_response(StatusCode::OK, &syn);
        for (k, v) in headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(k.as_bytes()),
                header::HeaderValue::from_str(&v),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// `verify_body_integrity`: the body must parse as the synapse and its hash match the header.
fn parse_body<S: Synapse>(body: &[u8], header_hash: &str) -> Result<SynapseBody<S>, Failure> {
    let syn: SynapseBody<S> = serde_json::from_slice(body).map_err(|_| Failure::internal())?;
    if syn.body_hash() != header_hash {
        return Err(Failure::internal());
    }
    Ok(syn)
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<SimBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `validator` on `listener` until the task is aborted.
pub fn spawn_validator(listener: TcpListener, validator: Arc<SimValidator>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("splatfleet-sim: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let validator = validator.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let validator = validator.clone();
                    async move { Ok::<_, Infallible>(validator.handle(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
