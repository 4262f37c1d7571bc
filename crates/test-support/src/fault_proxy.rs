//! A TCP proxy that injects faults between a service and a server, without touching the
//! server's data: added latency, a blackhole (connections stay open, nothing moves — what a
//! hung broker looks like), refused connections, and cutting every open connection.
//!
//! Toxiproxy is not packaged here; this is the small part of it the tests need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    None,
    /// Hold every chunk this long before forwarding it (both directions).
    Latency(Duration),
    /// Accept and keep connections, forward nothing until the fault changes.
    Blackhole,
    /// Close new connections at once; open ones keep working.
    RefuseNew,
}

#[derive(Debug)]
struct Shared {
    fault: watch::Sender<Fault>,
    /// Bumped by `cut_connections`; every pump watches it and drops its connection.
    generation: watch::Sender<u64>,
    forwarded_to_upstream: AtomicU64,
    forwarded_to_client: AtomicU64,
}

#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 at an OS-chosen port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve(listener, upstream))
    }

    /// Like [`FaultProxy::start`] on a listener the caller bound (to know the port in advance).
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Arc::new(Shared {
            fault: watch::channel(Fault::None).0,
            generation: watch::channel(0).0,
            forwarded_to_upstream: AtomicU64::new(0),
            forwarded_to_client: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *accept_shared.fault.borrow() == Fault::RefuseNew {
                    drop(client);
                    continue;
                }
                let shared = Arc::clone(&accept_shared);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        proxy_connection(client, server, shared).await;
                    }
                });
            }
        });
        Self {
            addr,
            shared,
            accept_task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// Drops every open connection (clients see a reset/EOF and reconnect).
    pub fn cut_connections(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Bytes forwarded so far: (client → upstream, upstream → client).
    pub fn bytes_forwarded(&self) -> (u64, u64) {
        (
            self.shared.forwarded_to_upstream.load(Ordering::Relaxed),
            self.shared.forwarded_to_client.load(Ordering::Relaxed),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut_connections();
    }
}

async fn proxy_connection(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut generation = shared.generation.subscribe();
    generation.borrow_and_update();
    let up = pump(client_read, server_write, Arc::clone(&shared), true);
    let down = pump(server_read, client_write, Arc::clone(&shared), false);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = generation.changed() => {}
    }
}

async fn pump<R, W>(mut from: R, mut to: W, shared: Arc<Shared>, upstream: bool)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut fault = shared.fault.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Apply the fault in force now; a blackhole holds this chunk until it lifts.
        loop {
            let current = *fault.borrow_and_update();
            match current {
                Fault::Blackhole => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::None | Fault::RefuseNew => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let counter = if upstream {
            &shared.forwarded_to_upstream
        } else {
            &shared.forwarded_to_client
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr, wait: Duration) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(wait, stream.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_delays_blackholes_and_refuses() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let wait = Duration::from_millis(500);

        assert_eq!(round_trip(proxy.addr(), wait).await, Some(b"ping".to_vec()));
        assert_eq!(proxy.bytes_forwarded(), (4, 4));

        proxy.set_fault(Fault::Latency(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(proxy.addr(), wait).await, Some(b"ping".to_vec()));
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "latency not applied"
        );

        proxy.set_fault(Fault::Blackhole);
        assert_eq!(
            round_trip(proxy.addr(), wait).await,
            None,
            "blackhole leaked data"
        );

        proxy.set_fault(Fault::RefuseNew);
        assert_eq!(
            round_trip(proxy.addr(), wait).await,
            None,
            "refused connection answered"
        );

        proxy.set_fault(Fault::None);
        assert_eq!(round_trip(proxy.addr(), wait).await, Some(b"ping".to_vec()));
    }

    #[tokio::test]
    async fn cut_connections_drops_open_streams() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.expect("echo");
        proxy.cut_connections();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
            .await
            .expect("the cut connection must end, not hang");
        assert!(read.is_err() || rest.is_empty());
    }
}
