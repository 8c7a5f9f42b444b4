//! A role binary run as a child process: started with a config, watched until it logs
//! "ready", scraped on `/metrics`, stopped with SIGTERM, and its exit awaited with a deadline.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// A running role process and the lines it has logged so far.
#[derive(Debug)]
pub struct RoleProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl RoleProcess {
    /// Starts `binary --config config` with logs on stderr captured.
    pub fn spawn(binary: &Path, config: &Path) -> Self {
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits until a log line contains `needle`; panics with the log so far on timeout.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log.iter().any(|line| line.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// SIGKILL, as a crash or the OOM killer would, and reap the process.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log.extend(self.lines.try_iter());
    }

    pub fn terminate(&self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits for exit at most `timeout`; kills the process and panics if it overruns.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                self.log.extend(self.lines.try_iter());
                return (status, started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                self.log.extend(self.lines.try_iter());
                panic!(
                    "process did not exit within {timeout:?}; log:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `http://addr/metrics` and returns the body (status checked).
pub fn scrape_metrics(addr: SocketAddr) -> String {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "metrics answered: {response}"
    );
    response
}
