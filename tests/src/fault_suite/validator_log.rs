//! The simulated validators' event log (`splatfleet-sim validators --events`, one JSON object
//! a line, see `sim::events`) read incrementally while the fleet runs: the suite watches it
//! for the first pull and the first accepted submission after a fault, and checks the whole
//! of it at the end.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
};

use serde_json::Value;

/// One validator event, with the fields the suite looks at.
#[derive(Debug, Clone)]
pub struct ValidatorEvent {
    /// Unix seconds.
    pub ts: f64,
    /// `pull`, `submit`, `verdict`, `violation`, `penalty` or `rejected`.
    pub kind: String,
    pub validator: String,
    pub task_id: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub status: Option<u64>,
    pub message: Option<String>,
    pub score: Option<f64>,
    pub payload_chars: Option<u64>,
}

impl ValidatorEvent {
    fn parse(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            ts: value.get("ts")?.as_f64()?,
            kind: text("event")?,
            validator: text("validator").unwrap_or_default(),
            task_id: text("task_id"),
            outcome: text("outcome"),
            reason: text("reason"),
            status: value.get("status").and_then(Value::as_u64),
            message: text("message"),
            score: value.get("score").and_then(Value::as_f64),
            payload_chars: value.get("payload_chars").and_then(Value::as_u64),
        })
    }

    /// A pull that handed out a new task.
    pub fn is_new_task(&self) -> bool {
        self.kind == "pull" && self.outcome.as_deref() == Some("new")
    }

    /// A verdict that accepted a submission.
    pub fn is_accepted(&self) -> bool {
        self.kind == "verdict" && self.outcome.as_deref() == Some("accepted")
    }
}

/// The event log, read up to its last complete line.
#[derive(Debug)]
pub struct ValidatorLog {
    path: PathBuf,
    offset: u64,
    partial: String,
    pub events: Vec<ValidatorEvent>,
    /// Lines that were not events (they would mean the simulator wrote garbage).
    pub unreadable_lines: usize,
}

impl ValidatorLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            offset: 0,
            partial: String::new(),
            events: Vec::new(),
            unreadable_lines: 0,
        }
    }

    /// Reads what was appended since the last call.
    pub fn refresh(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        let Ok(read) = file.read_to_end(&mut bytes) else {
            return;
        };
        self.offset += read as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(end) = self.partial.rfind('\n') else {
            return;
        };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line)
                .ok()
                .as_ref()
                .and_then(ValidatorEvent::parse)
            {
                Some(event) => self.events.push(event),
                None => self.unreadable_lines += 1,
            }
        }
    }

    /// The time of the first event at or after `since` that `matches`.
    pub fn first_after(
        &self,
        since: f64,
        matches: impl Fn(&ValidatorEvent) -> bool,
    ) -> Option<f64> {
        self.events
            .iter()
            .filter(|e| e.ts >= since && matches(e))
            .map(|e| e.ts)
            .reduce(f64::min)
    }
}
