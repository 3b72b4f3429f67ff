//! A loopback TCP proxy a test programs while traffic flows, to put real faults between
//! Pulselink and a real server: black holes (an outage on the path), latency with jitter,
//! bandwidth limits, 1-byte segments, abrupt resets, a close after N bytes, and WebSocket
//! upgrades swallowed (a proxy that lets plain HTTP through but not WebSocket), and the
//! connections open at one moment stranded for good while new ones pass (a phone that moved
//! to another interface: its old sockets are bound to one that is gone).
//!
//! Every fault keeps TCP's promise: the bytes of a connection arrive in order or not at all,
//! never with a hole in the middle.
//!
//! Each accepted connection gets an upstream connection and two pumps (one per direction).
//! A pump reads what arrives and hands it to a delay line, which writes it out no earlier than
//! its due time and never out of order; the faults are read afresh for every chunk, so a
//! change applies to connections already open.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
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
    /// An outage on the path: nothing arrives either way, not even a FIN or RST (a half-open
    /// link). Bytes wait as TCP's retransmissions would, and arrive in order if it heals
    /// while the connection is still open.
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
    /// Send every server→client WebSocket data frame twice, as a misbehaving intermediary or
    /// a retrying server would.
    pub duplicate_frames: bool,
    /// Reverse each run of server→client WebSocket data frames that arrive together.
    pub reorder_frames: bool,
}

struct Shared {
    /// A watch, so a delay line held by a black hole resumes the moment it heals.
    faults: watch::Sender<Faults>,
    /// Bumped by [`FaultProxy::reset_all`]; every live connection resets when it changes.
    resets: watch::Sender<u64>,
    open: AtomicUsize,
    accepted: AtomicUsize,
    forwarded: AtomicU64,
    /// WebSocket upgrade requests swallowed by the `blackhole_websocket_upgrades` fault.
    swallowed_upgrades: AtomicUsize,
    /// When each connection was accepted.
    accept_times: Mutex<Vec<Instant>>,
    /// Connections numbered below this are stranded: nothing they carry arrives, ever.
    stranded_below: watch::Sender<usize>,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    /// Returns once no black hole is in the way of connection number `conn`; never for a
    /// stranded one.
    async fn path_open(&self, conn: usize) {
        let stranded = |this: &Self| conn < *this.stranded_below.borrow();
        let mut faults = self.faults.subscribe();
        let _ = faults.wait_for(|f| !f.blackhole).await;
        if stranded(self) {
            // The interface it was bound to is gone: nothing more, not even a FIN.
            std::future::pending::<()>().await;
        }
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
            faults: watch::channel(Faults::default()).0,
            resets: watch::channel(0).0,
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
            swallowed_upgrades: AtomicUsize::new(0),
            accept_times: Mutex::new(Vec::new()),
            stranded_below: watch::channel(0).0,
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let conn = shared.accepted.fetch_add(1, Ordering::SeqCst);
                    shared.accept_times.lock().unwrap().push(Instant::now());
                    tokio::spawn(serve(client, upstream, shared.clone(), conn));
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

    /// How many WebSocket upgrade requests the `blackhole_websocket_upgrades` fault swallowed.
    pub fn swallowed_upgrades(&self) -> usize {
        self.shared.swallowed_upgrades.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the faults; open connections see the change on their next chunk.
    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        self.shared.faults.send_modify(change);
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

    /// When each connection was accepted, in order.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.shared.accept_times.lock().unwrap().clone()
    }

    /// Strands every connection accepted so far: from now on nothing they carry arrives,
    /// not even a FIN or RST, while connections accepted later pass normally.
    pub fn strand_open_connections(&self) {
        let accepted = self.accepted();
        self.shared.stranded_below.send_replace(accepted);
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
async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>, conn: usize) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return; // upstream down: the client sees the connection close
    };
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut resets = shared.resets.subscribe();
    resets.borrow_and_update();
    let carried = AtomicU64::new(0);
    let websocket = AtomicBool::new(false);
    let reset = {
        // Borrowed halves: the sockets outlive the pumps, so a reset can set SO_LINGER before
        // they close.
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump(cr, sw, &shared, &carried, &websocket, true, conn);
        let down = pump(sr, cw, &shared, &carried, &websocket, false, conn);
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
    websocket: &AtomicBool,
    client_to_server: bool,
    conn: usize,
) {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = true;
        let mut swallowed = false;
        let mut last_due = Instant::now();
        let mut frames = Framer::default();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let faults = shared.faults();
            if first && client_to_server {
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let upgrade = head.contains("upgrade: websocket");
                websocket.store(upgrade, Ordering::SeqCst);
                swallowed = upgrade && faults.blackhole_websocket_upgrades;
                if swallowed {
                    shared.swallowed_upgrades.fetch_add(1, Ordering::SeqCst);
                }
            }
            first = false;
            if swallowed {
                continue;
            }
            // Server→client WebSocket bytes go out as whole frames, so frames can be
            // duplicated or reordered without breaking the framing.
            let chunk = if !client_to_server && websocket.load(Ordering::SeqCst) {
                frames.rewrite(&buf[..n], &faults)
            } else {
                buf[..n].to_vec()
            };
            if chunk.is_empty() {
                continue;
            }
            let n = chunk.len();
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
            if tx.send((due, chunk)).is_err() {
                break;
            }
        }
    };
    tokio::join!(read, delay_line(rx, to, shared, conn));
}

/// Cuts a server→client WebSocket stream into the HTTP response head and whole frames.
#[derive(Default)]
struct Framer {
    head_done: bool,
    pending: Vec<u8>,
}

impl Framer {
    /// What to forward for `bytes`: the complete units they finish, with data frames
    /// duplicated or neighbours swapped as `faults` say; an incomplete frame waits.
    fn rewrite(&mut self, bytes: &[u8], faults: &Faults) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        if !self.head_done {
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            out.extend(self.pending.drain(..end + 4));
            self.head_done = true;
        }
        let mut units: Vec<Vec<u8>> = Vec::new();
        while let Some(len) = frame_len(&self.pending) {
            units.push(self.pending.drain(..len).collect());
        }
        // Data frames only (text, binary, unfragmented): control frames keep their meaning.
        let is_data = |f: &[u8]| f[0] == 0x81 || f[0] == 0x82;
        if faults.reorder_frames {
            // Each run of data frames that arrived together goes out last first.
            let mut start = 0;
            while start < units.len() {
                let run = units[start..].iter().take_while(|u| is_data(u)).count();
                units[start..start + run].reverse();
                start += run.max(1);
            }
        }
        for unit in units {
            if faults.duplicate_frames && is_data(&unit) {
                out.extend_from_slice(&unit);
            }
            out.extend(unit);
        }
        out
    }
}

/// The length of the WebSocket frame at the start of `b`, once all of it is there.
fn frame_len(b: &[u8]) -> Option<usize> {
    let second = *b.get(1)?;
    let (header, payload) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            usize::try_from(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)).ok()?,
        ),
        n => (2, n as usize),
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let total = header + mask + payload;
    (b.len() >= total).then_some(total)
}

/// Writes chunks when they are due, at the configured bandwidth, sliced if asked.
async fn delay_line(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
    conn: usize,
) {
    // When the bytes written so far may all have left at the configured bandwidth.
    let mut paced = Instant::now();
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        shared.path_open(conn).await;
        let faults = shared.faults();
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
    // The FIN waits out a black hole too.
    shared.path_open(conn).await;
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
    async fn forwards_then_black_holes_without_closing_then_heals_in_order() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
        proxy.set(|f| f.blackhole = true);
        s.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 8];
        let silent = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        assert!(silent.is_err(), "a black hole neither answers nor closes");
        proxy.heal();
        // What was sent into the outage arrives first, as TCP retransmission would deliver it.
        s.write_all(b"back").await.unwrap();
        let mut both = [0u8; 8];
        s.read_exact(&mut both).await.unwrap();
        assert_eq!(&both, b"heldback");
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

    #[test]
    fn frames_are_cut_whole_then_duplicated_or_swapped() {
        let text = |t: &str| [&[0x81, t.len() as u8][..], t.as_bytes()].concat();
        let ping = vec![0x89, 0x00];
        let long = [&[0x82, 126, 0x01, 0x00][..], &[7u8; 256]].concat();
        let head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        let stream = [
            head.clone(),
            text("a"),
            text("b"),
            ping.clone(),
            long.clone(),
        ]
        .concat();

        // Split anywhere, passed through unchanged without faults.
        let mut f = Framer::default();
        let (x, y) = stream.split_at(40);
        let out = [
            f.rewrite(x, &Faults::default()),
            f.rewrite(y, &Faults::default()),
        ]
        .concat();
        assert_eq!(out, stream);

        let dup = Faults {
            duplicate_frames: true,
            ..Faults::default()
        };
        let out = Framer::default().rewrite(&stream, &dup);
        let expected = [
            head.clone(),
            text("a"),
            text("a"),
            text("b"),
            text("b"),
            ping.clone(),
            long.clone(),
            long.clone(),
        ];
        assert_eq!(out, expected.concat());

        let swap = Faults {
            reorder_frames: true,
            ..Faults::default()
        };
        let out = Framer::default().rewrite(&stream, &swap);
        assert_eq!(out, [head, text("b"), text("a"), ping, long].concat());
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
