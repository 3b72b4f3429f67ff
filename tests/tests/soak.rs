//! Soak: many clients doing random things through the fault proxy while it injects random
//! faults, against the official Node Socket.IO server. Between rounds the faults stop, every
//! client reconnects and drains, and the process is measured: resident memory, open file
//! descriptors and live tokio tasks must not grow after the warm-up round, nothing may
//! panic, and every durable emit must reach the server once, in each client's order.
//!
//! CI runs a short soak; `scripts/reliability.sh --long` sets `PULSELINK_SOAK_SECS`.
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pulselink::{Client, ClientConfig, EmitOptions, ReconnectPolicy, State, Transports};
use pulselink_tests::{
    FaultProxy, NodeServer, ServerOptions, read_ledger, scratch, wait_for_state,
};
use serde_json::json;

const CLIENTS: u64 = 12;
/// Clients on long-polling (every fourth).
const POLLING: u64 = CLIENTS / 4;
/// Largest resident-memory growth allowed between warm-up and the end of the soak.
const MAX_RSS_GROWTH: f64 = 0.10;
const ROUND: Duration = Duration::from_secs(5);
const SETTLE: Duration = Duration::from_secs(30);

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

/// What the process holds at a quiet moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    tasks: usize,
}

fn sample() -> Sample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Sample {
        rss_kib,
        fds,
        tasks,
    }
}

/// One client and what it emitted durably.
struct Soaker {
    id: u64,
    client: Client,
    next: AtomicU64,
}

impl Soaker {
    /// Random operations until `until`: durable emits (most), acked round trips, volatile
    /// emits, subscription changes, network hints and app-initiated reconnects.
    async fn run(&self, until: Instant) {
        let mut network_down = false;
        while Instant::now() < until {
            match fastrand::u32(0..100) {
                0..50 => {
                    let n = self.id * 1_000_000 + self.next.fetch_add(1, Ordering::SeqCst);
                    self.client
                        .emit_with("tick", json!({ "n": n }), EmitOptions::default().confirm())
                        .await
                        .expect("a durable emit is accepted whatever the link does");
                }
                50..70 => {
                    // Resolves once, with the answer or an error, within its timeout.
                    let limit = Duration::from_millis(800);
                    let answer = tokio::time::timeout(
                        limit + Duration::from_secs(2),
                        self.client
                            .emit_with_ack("echo", json!({"c": self.id}), limit),
                    )
                    .await;
                    assert!(answer.is_ok(), "emit_with_ack outlived its timeout");
                }
                70..80 => {
                    self.client
                        .emit_volatile("metric:recorded", json!({"hr": 120}))
                        .unwrap();
                }
                80..88 => {
                    let room = json!({"roomId": format!("r{}", fastrand::u8(0..4))});
                    if fastrand::bool() {
                        self.client
                            .subscribe("room:subscribe", room, Some("room:unsubscribe"))
                            .await
                            .unwrap();
                    } else {
                        self.client
                            .unsubscribe("room:subscribe", room)
                            .await
                            .unwrap();
                    }
                }
                88..94 => {
                    network_down = !network_down;
                    self.client.set_network_available(!network_down).unwrap();
                }
                94..97 => {
                    self.client.disconnect().unwrap();
                    self.client.start().unwrap();
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(5..40))).await;
        }
        if network_down {
            self.client.set_network_available(true).unwrap();
        }
    }
}

/// Random faults until `until`, a new one every 100–600 ms; healthy a sixth of the time.
/// Returns how many faults were injected (healthy slots are not counted).
async fn inject_faults(proxy: &FaultProxy, until: Instant) -> usize {
    let mut injected = 0;
    while Instant::now() < until {
        proxy.heal();
        match fastrand::u32(0..6) {
            0 => proxy.set(|f| f.blackhole = true),
            1 => proxy.set(|f| {
                f.latency = Duration::from_millis(fastrand::u64(10..150));
                f.jitter = Duration::from_millis(fastrand::u64(0..100));
            }),
            2 => proxy.set(|f| f.slice = true),
            3 => proxy.reset_all(),
            4 => proxy.set(|f| f.bandwidth = Some(fastrand::u64(4_000..64_000))),
            _ => {
                // A healthy slot: nothing injected.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(100..600))).await;
                continue;
            }
        }
        injected += 1;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..600))).await;
    }
    proxy.heal();
    injected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_random_operations_and_faults() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let secs: u64 = std::env::var("PULSELINK_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rounds = (secs / ROUND.as_secs()).max(3);
    let (dir, ledger, _) = scratch("soak");
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: 1000,
        ping_timeout: 1000,
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let upstream: SocketAddr = ([127, 0, 0, 1], server.port()).into();
    let proxy = FaultProxy::start(upstream).await;
    let baseline = sample();

    let mut soakers = Vec::new();
    for id in 0..CLIENTS {
        let mut config = ClientConfig::new(&proxy.url())
            .unwrap()
            .with_store(dir.join(format!("outbox-{id}.db")))
            .with_reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                ..ReconnectPolicy::default()
            });
        config.connect_timeout = Duration::from_secs(2);
        // A quarter of the clients on long-polling, the rest on WebSocket alone (not the
        // default fallback, which would put some of them on polling when a fault hits the
        // upgrade, and blur the count of proxied links below): both transports soak.
        config.transports = if id % 4 == 3 {
            Transports::Polling
        } else {
            Transports::WebSocket
        };
        let client = Client::new(config).unwrap();
        client.start().unwrap();
        soakers.push(Arc::new(Soaker {
            id,
            client,
            next: AtomicU64::new(0),
        }));
    }

    let mut samples = Vec::new();
    let mut faults = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        let until = Instant::now() + ROUND;
        let drivers: Vec<_> = soakers
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move { s.run(until).await })
            })
            .collect();
        faults += inject_faults(&proxy, until).await;
        for d in drivers {
            d.await.expect("a driver panicked");
        }
        // Quiet point: every client connected and drained, one proxied link each.
        for s in &soakers {
            let mut states = s.client.states();
            wait_for_state(&mut states, SETTLE, |st| *st == State::Connected).await;
            tokio::time::timeout(SETTLE, s.client.outbox().drained())
                .await
                .expect("drained after the faults stopped")
                .unwrap();
        }
        // One proxied link per WebSocket client; a polling client has its GET lane and,
        // unless the server's keep-alive timeout closed it, its POST lane.
        tokio::time::timeout(SETTLE, async {
            while !(CLIENTS..=CLIENTS + POLLING).contains(&(proxy.open_connections() as u64)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("stale proxied connections closed");
        samples.push(sample());
    }
    let soaked = started.elapsed();

    // Warm-up: the first fifth of the rounds (allocator arenas, SQLite page caches and TLS of
    // new threads fill up, then stay).
    let warm = samples[samples.len() / 5];
    let last = *samples.last().unwrap();
    let growth = last.rss_kib as f64 / warm.rss_kib as f64 - 1.0;
    let after_warm_up = &samples[samples.len() / 5..];
    let peak_fds = after_warm_up.iter().map(|s| s.fds).max().unwrap();
    let peak_tasks = after_warm_up.iter().map(|s| s.tasks).max().unwrap();
    println!("soak samples (after each round): {samples:?}");
    assert!(
        growth < MAX_RSS_GROWTH,
        "RSS grew {:.1} %: {samples:?}",
        growth * 100.0
    );
    assert_eq!(peak_fds, warm.fds, "file descriptors grew: {samples:?}");
    assert_eq!(peak_tasks, warm.tasks, "tasks grew: {samples:?}");

    // Every durable emit reached the server once, in each client's order.
    let mut per_client: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in read_ledger(&ledger) {
        if !line.dup && !line.key.starts_with("room:") {
            per_client
                .entry(line.n / 1_000_000)
                .or_default()
                .push(line.n % 1_000_000);
        }
    }
    let mut emitted = 0;
    for s in &soakers {
        let sent = s.next.load(Ordering::SeqCst);
        emitted += sent;
        let got = per_client.remove(&s.id).unwrap_or_default();
        assert_eq!(got, (0..sent).collect::<Vec<_>>(), "client {}", s.id);
    }

    for s in &soakers {
        s.client.close().await;
    }
    drop(soakers);
    drop(proxy);
    let closed = tokio::time::timeout(SETTLE, async {
        loop {
            let now = sample();
            if now.tasks <= baseline.tasks && now.fds <= baseline.fds {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("closing every client releases its tasks and descriptors");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");

    figure(
        &format!(
            "soak: {CLIENTS} clients, {} s, {faults} random faults",
            soaked.as_secs()
        ),
        &format!(
            "no panic; RSS growth after warm-up < {:.0} %; fds and tasks flat; every durable \
             emit once, in order",
            MAX_RSS_GROWTH * 100.0
        ),
        format!(
            "0 panics; RSS {} → {} KiB ({:+.1} %); fds {} → {}; tasks {} → {}; {emitted} durable emits delivered in order; after close: {} fds, {} tasks (baseline {}, {})",
            warm.rss_kib,
            last.rss_kib,
            growth * 100.0,
            warm.fds,
            last.fds,
            warm.tasks,
            last.tasks,
            closed.fds,
            closed.tasks,
            baseline.fds,
            baseline.tasks
        ),
    );
}
