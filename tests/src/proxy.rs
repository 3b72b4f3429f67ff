//! A loopback TCP proxy a test programs while traffic flows, to put real faults between
//! Pulselink and a real server: black holes, latency with jitter, bandwidth limits, 1-byte
//! segments, abrupt resets, a close after N bytes, and WebSocket upgrades swallowed (a proxy
//! that lets plain HTTP through but not WebSocket).
//!
//! Each accepted connection gets an upstream connection and two pumps (one per direction).
//! A pump reads what arrives and hands it to a delay line, which writes it out no earlier than
//! its due time and never out of order; the faults are read afresh for every chunk, so a
//! change applies to connections already open.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::{mpsc, watch},
    time::Instant,
};

/// The faults applied to traffic; change them with [`FaultProxy::set`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop every byte both ways without closing (no FIN, no RST): a half-open link.
    pub blackhole: bool,
    /// Added one-way delay for every chunk.
    pub latency: Duration,
    /// Up to this much more delay, uniformly random per chunk (order is kept).
    pub jitter: Duration,
    /// Bytes per second per direction (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Write one byte per TCP segment.
    pub slice: bool,
    /// Close a connection (FIN both ways) once it has carried this many bytes in total.
    pub close_after_bytes: Option<u64>,
    /// Swallow connections whose first request is a WebSocket upgrade (bytes dropped, never
    /// answered, never closed), as some corporate proxies do; plain HTTP passes.
    pub blackhole_websocket_upgrades: bool,
}

struct Shared {
    faults: Mutex<Faults>,
    /// Bumped by [`FaultProxy::reset_all`]; every live connection resets when it changes.
    resets: watch::Sender<u64>,
    open: AtomicUsize,
    accepted: AtomicUsize,
    forwarded: AtomicU64,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }
}

/// A running proxy; dropping it stops accepting (live connections end with their peers).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            resets: watch::channel(0).0,
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(client, upstream, shared.clone()));
                }
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the faults; open connections see the change on their next chunk.
    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.faults.lock().unwrap());
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.set(|f| *f = Faults::default());
    }

    /// Resets every live connection abruptly (RST to the client, upstream closed).
    pub fn reset_all(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

/// One proxied connection: runs until either side closes, a reset, or `close_after_bytes`.
async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return; // upstream down: the client sees the connection close
    };
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut resets = shared.resets.subscribe();
    resets.borrow_and_update();
    let carried = AtomicU64::new(0);
    let reset = {
        // Borrowed halves: the sockets outlive the pumps, so a reset can set SO_LINGER before
        // they close.
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump(cr, sw, &shared, &carried, true);
        let down = pump(sr, cw, &shared, &carried, false);
        tokio::select! {
            _ = up => false,
            _ = down => false,
            _ = resets.changed() => true,
        }
    };
    if reset {
        // SO_LINGER 0: closing sends RST instead of FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    drop((client, server));
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

/// Moves bytes one way through the faults until the source closes or the connection must end;
/// then what is queued is written and the far side gets a FIN.
async fn pump(
    mut from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    shared: &Shared,
    carried: &AtomicU64,
    client_to_server: bool,
) {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = true;
        let mut swallowed = false;
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let faults = shared.faults();
            if first && client_to_server && faults.blackhole_websocket_upgrades {
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                swallowed = head.contains("upgrade: websocket");
            }
            first = false;
            if swallowed || faults.blackhole {
                continue;
            }
            let total = carried.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if let Some(limit) = faults.close_after_bytes
                && total > limit
            {
                break;
            }
            let jitter = faults.jitter.mul_f64(fastrand::f64());
            // Never earlier than the chunk before: jitter delays, it does not reorder bytes.
            let due = (Instant::now() + faults.latency + jitter).max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    tokio::join!(read, delay_line(rx, to, shared));
}

/// Writes chunks when they are due, at the configured bandwidth, sliced if asked.
async fn delay_line(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
) {
    // When the bytes written so far may all have left at the configured bandwidth.
    let mut paced = Instant::now();
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        let faults = shared.faults();
        if faults.blackhole {
            continue;
        }
        let piece_len = if faults.slice { 1 } else { chunk.len().max(1) };
        for piece in chunk.chunks(piece_len) {
            if to.write_all(piece).await.is_err() {
                return;
            }
            if faults.slice {
                // A separate write per byte with TCP_NODELAY: one segment each.
                tokio::task::yield_now().await;
            }
            if let Some(rate) = faults.bandwidth {
                let cost = Duration::from_secs_f64(piece.len() as f64 / rate.max(1) as f64);
                paced = paced.max(Instant::now()) + cost;
                // Sleep in timer-sized steps, not per byte: the timer's resolution is 1 ms.
                if paced.saturating_duration_since(Instant::now()) >= Duration::from_millis(2) {
                    tokio::time::sleep_until(paced).await;
                }
            }
            shared
                .forwarded
                .fetch_add(piece.len() as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        back
    }

    #[tokio::test]
    async fn forwards_then_black_holes_without_closing_then_heals() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
        proxy.set(|f| f.blackhole = true);
        s.write_all(b"lost").await.unwrap();
        let mut buf = [0u8; 8];
        let silent = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        assert!(silent.is_err(), "a black hole neither answers nor closes");
        proxy.heal();
        assert_eq!(round_trip(&mut s, b"back").await, b"back");
        assert_eq!(proxy.open_connections(), 1);
    }

    #[tokio::test]
    async fn reset_all_sends_rst_and_close_after_bytes_sends_fin() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"x").await, b"x");
        proxy.reset_all();
        let mut buf = [0u8; 8];
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

        proxy.set(|f| f.close_after_bytes = Some(10));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"12345").await, b"12345"); // 10 bytes carried
        s.write_all(b"6").await.unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "FIN after the limit");
    }

    #[tokio::test]
    async fn latency_slicing_and_bandwidth_keep_every_byte_in_order() {
        let proxy = FaultProxy::start(echo_server().await).await;
        proxy.set(|f| {
            f.latency = Duration::from_millis(20);
            f.jitter = Duration::from_millis(20);
            f.slice = true;
            f.bandwidth = Some(20_000);
        });
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let msg: Vec<u8> = (0..2000u32).map(|n| n as u8).collect();
        let started = Instant::now();
        assert_eq!(round_trip(&mut s, &msg).await, msg);
        // 2000 bytes at 20,000 B/s take 100 ms in each direction (overlapping, as the echo
        // starts before the last byte arrives), plus at least 20 ms of latency.
        assert!(
            started.elapsed() >= Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
    }
}
