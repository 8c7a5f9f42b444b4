//! One process of a test fleet, run the way a service manager runs it: started from a fixed
//! command line, its stdout and stderr appended to one log file that survives restarts,
//! killed with SIGKILL or stopped with SIGTERM, and started again by the harness.

use std::{
    ffi::OsString,
    fs::OpenOptions,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// Why a fleet process could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{name}: starting {program}: {source}")]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: no log line containing {needle:?} within {waited:?} (log: {log})")]
    NotReady {
        name: String,
        needle: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error("{name} exited with {status} before logging {needle:?} (log: {log})")]
    Exited {
        name: String,
        needle: String,
        status: ExitStatus,
        log: PathBuf,
    },
}

/// A restartable child process with its log file.
#[derive(Debug)]
pub struct FleetChild {
    pub name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
    /// Where this run's output starts in the log file.
    log_offset: u64,
    /// Starts so far, the first included.
    pub starts: u32,
}

impl FleetChild {
    pub fn new(
        name: &str,
        program: &Path,
        args: Vec<OsString>,
        env: Vec<(String, String)>,
        log_path: PathBuf,
    ) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            env,
            log_path,
            child: None,
            log_offset: 0,
            starts: 0,
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts the process (its output appended to the log file).
    pub fn spawn(&mut self) -> Result<(), ChildError> {
        let spawn_error = |source| ChildError::Spawn {
            name: self.name.clone(),
            program: self.program.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(spawn_error)?;
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stdout = log.try_clone().map_err(spawn_error)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .map_err(spawn_error)?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// This run's output so far.
    pub fn output(&self) -> String {
        let Ok(mut file) = std::fs::File::open(&self.log_path) else {
            return String::new();
        };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(self.log_offset)).is_ok() {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits until this run logs a line containing `needle`; returns how long that took.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String, ChildError> {
        let started = Instant::now();
        loop {
            let output = self.output();
            if let Some(line) = output.lines().find(|line| line.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.exited() {
                return Err(ChildError::Exited {
                    name: self.name.clone(),
                    needle: needle.into(),
                    status,
                    log: self.log_path.clone(),
                });
            }
            if started.elapsed() > timeout {
                return Err(ChildError::NotReady {
                    name: self.name.clone(),
                    needle: needle.into(),
                    waited: timeout,
                    log: self.log_path.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs or when
    /// it was never started.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// SIGKILL, as a crash or the OOM killer would, and reap it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to `timeout` for the exit; SIGKILL after that. `None` when the
    /// process had to be killed (or was not running).
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for FleetChild {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
