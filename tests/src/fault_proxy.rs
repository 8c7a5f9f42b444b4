//! A TCP fault proxy for the fault suite: listens on a loopback port, forwards every
//! connection to one target, and on command pauses (holds connections and stops moving
//! bytes), drops (closes existing and new connections with a FIN), resets (the same with an
//! RST, through `SO_LINGER` 0) and resumes. It sits between the fleet and the things the fleet
//! talks to over the network (the validators' axons, the generation service), so the suite can
//! break those links the way a flaky network or a dying peer would.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// Longest wait to open the upstream connection before the client is reset.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy does with traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Forward,
    /// Accept and hold connections, move no bytes.
    Pause,
    /// Close existing connections and every new one with a FIN.
    Drop,
    /// Close existing connections and every new one with an RST.
    Reset,
}

/// Counters of what the proxy did, for the suite's report.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub closed_by_fault: AtomicU64,
    pub reset_by_fault: AtomicU64,
    pub upstream_failures: AtomicU64,
}

/// A running proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    stats: Arc<ProxyStats>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, watcher) = watch::channel(ProxyMode::Forward);
        let stats = Arc::new(ProxyStats::default());
        let acceptor = tokio::spawn(accept_loop(listener, target, watcher, stats.clone()));
        Ok(Self {
            addr,
            target,
            mode,
            stats,
            acceptor,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Switches every connection, existing and new, to `mode`.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    pub fn pause(&self) {
        self.set_mode(ProxyMode::Pause);
    }

    pub fn drop_connections(&self) {
        self.set_mode(ProxyMode::Drop);
    }

    pub fn reset_connections(&self) {
        self.set_mode(ProxyMode::Reset);
    }

    pub fn resume(&self) {
        self.set_mode(ProxyMode::Forward);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Connection tasks see the sender gone and end.
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<ProxyMode>,
    stats: Arc<ProxyStats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, target, mode.clone(), stats.clone()));
    }
}

/// Closes `stream` with a FIN, or an RST when `reset`.
fn close(stream: TcpStream, reset: bool, stats: &ProxyStats) {
    if reset {
        // SO_LINGER 0: close() sends RST and discards unsent data.
        let _ = stream.set_zero_linger();
        stats.reset_by_fault.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.closed_by_fault.fetch_add(1, Ordering::Relaxed);
    }
    drop(stream);
}

/// Waits until the mode lets traffic through; `Err(reset)` when the connection must close.
async fn wait_for_forward(mode: &mut watch::Receiver<ProxyMode>) -> Result<(), bool> {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            ProxyMode::Forward => return Ok(()),
            ProxyMode::Drop => return Err(false),
            ProxyMode::Reset => return Err(true),
            ProxyMode::Pause => {
                if mode.changed().await.is_err() {
                    return Err(false);
                }
            }
        }
    }
}

async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
    stats: Arc<ProxyStats>,
) {
    if let Err(reset) = wait_for_forward(&mut mode).await {
        close(client, reset, &stats);
        return;
    }
    let upstream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let mut upstream = match upstream {
        Ok(Ok(stream)) => stream,
        _ => {
            // The target is down: the client sees what it would see talking to it directly.
            stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_upstream = vec![0u8; 64 * 1024];
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        if let Err(reset) = wait_for_forward(&mut mode).await {
            close(upstream, reset, &stats);
            close(client, reset, &stats);
            return;
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client.read(&mut from_client), if client_open => match read {
                Ok(0) => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        let _ = client.set_zero_linger();
                        return;
                    }
                }
                Err(_) => {
                    let _ = upstream.set_zero_linger();
                    return;
                }
            },
            read = upstream.read(&mut from_upstream), if upstream_open => match read {
                Ok(0) => {
                    upstream_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&from_upstream[..n]).await.is_err() {
                        let _ = upstream.set_zero_linger();
                        return;
                    }
                }
                Err(_) => {
                    let _ = client.set_zero_linger();
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut buf = vec![0u8; text.len()];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn forwards_then_pauses_then_resumes() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut stream, b"hello").await.expect("echo"), b"hello");
        proxy.pause();
        let held =
            tokio::time::timeout(Duration::from_millis(300), echo(&mut stream, b"held")).await;
        assert!(held.is_err(), "bytes moved while paused");
        proxy.resume();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf))
            .await
            .expect("held bytes arrive after resume")
            .expect("read");
        assert_eq!(&buf, b"held");
    }

    #[tokio::test]
    async fn drop_closes_existing_and_new_connections_until_resumed() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut stream, b"a").await.expect("echo"), b"a");
        proxy.drop_connections();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0)), "expected EOF, got {read:?}");
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("connect");
        let read = tokio::time::timeout(Duration::from_secs(2), fresh.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0)), "expected EOF, got {read:?}");
        proxy.resume();
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut again, b"b").await.expect("echo"), b"b");
        assert!(proxy.stats().closed_by_fault.load(Ordering::Relaxed) >= 2);
    }

    #[tokio::test]
    async fn reset_sends_rst() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut stream, b"a").await.expect("echo"), b"a");
        proxy.reset_connections();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("reset in time");
        let err = read.expect_err("a reset is an error, not EOF");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }
}
