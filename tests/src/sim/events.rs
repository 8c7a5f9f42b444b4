//! The simulator's event log: one JSON object per line (`pull`, `submit`, `verdict`,
//! `violation`, `penalty`, `rejected`), appended to a file when one is given and kept in memory
//! for in-process tests.

use std::{
    fs::File,
    io::Write as _,
    path::Path,
    sync::{Arc, Mutex},
};

use serde_json::{Map, Value};

/// Most events kept in memory; older ones are dropped (the file keeps everything).
const MEMORY_LIMIT: usize = 100_000;

/// A shared, append-only event log.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    file: Option<File>,
    memory: Vec<Value>,
}

impl EventLog {
    /// A log kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A log that also appends to `path`.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                file: Some(file),
                memory: Vec::new(),
            })),
        })
    }

    /// Records `event` with its fields plus `ts` (unix seconds) and `event`.
    pub fn record(&self, event: &str, fields: Value) {
        let mut object = Map::new();
        object.insert("ts".into(), Value::from(super::rules::now_secs()));
        object.insert("event".into(), Value::from(event));
        if let Value::Object(extra) = fields {
            object.extend(extra);
        }
        let value = Value::Object(object);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(file) = inner.file.as_mut() {
            let mut line = value.to_string();
            line.push('\n');
            if let Err(e) = file.write_all(line.as_bytes()) {
                eprintln!("splatfleet-sim: event log write failed: {e}");
            }
        }
        if inner.memory.len() >= MEMORY_LIMIT {
            inner.memory.remove(0);
        }
        inner.memory.push(value);
    }

    /// Every event kept in memory, oldest first.
    pub fn snapshot(&self) -> Vec<Value> {
        self.inner
            .lock()
            .map(|i| i.memory.clone())
            .unwrap_or_default()
    }

    /// Events of one kind.
    pub fn of_kind(&self, event: &str) -> Vec<Value> {
        self.snapshot()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect()
    }
}
