//! Reliability under network faults, against the official Node Socket.IO server with the
//! fault proxy (`pulselink_tests::FaultProxy`) in between. Each test asserts its criterion and
//! prints its figure as a `RELIABILITY|name|criterion|figure` line, which
//! `scripts/reliability.sh` collects into `tests/RELIABILITY.md`.
//!
//! Sizes and durations have CI defaults; the long runs set `PULSELINK_HALF_OPEN_CLIENTS` and
//! `PULSELINK_BAD_LINK_SECS`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use pulselink::{
    Client, ClientConfig, DedupConfig, DisconnectReason, EmitOptions, Error, ReconnectPolicy,
    State, Transports,
};
use pulselink_tests::{
    FaultProxy, HEARTBEAT_MARGIN, NodeServer, ServerOptions, fast_reconnect, next_disconnect,
    read_ledger, scratch, wait_for_state,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const T: Duration = Duration::from_secs(20);

/// Prints a figure for the report.
fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(url: &str) -> ClientConfig {
    ClientConfig::new(url)
        .unwrap()
        .with_reconnect(fast_reconnect())
}

fn addr(server: &NodeServer) -> SocketAddr {
    ([127, 0, 0, 1], server.port()).into()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A black hole (no FIN, no RST, nothing delivered) under live links: every client notices by
/// the heartbeat alone, within ping interval + ping timeout + `HEARTBEAT_MARGIN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_links_are_detected_within_interval_plus_timeout_plus_a_margin() {
    let (interval, timeout) = (300, 300);
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: interval,
        ping_timeout: timeout,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(addr(&server)).await;
    let n = env_or("PULSELINK_HALF_OPEN_CLIENTS", 100) as usize;
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = Client::new(config(&proxy.url())).unwrap();
        let notices = client.notices();
        client.connect().await.unwrap();
        clients.push((client, notices));
    }
    proxy.set(|f| f.blackhole = true);
    let started = Instant::now();
    let detected = join_all(clients.iter_mut().map(|(_, notices)| async {
        let reason = next_disconnect(notices, T).await;
        (reason, started.elapsed())
    }))
    .await;
    let limit = Duration::from_millis(interval + timeout) + HEARTBEAT_MARGIN;
    let mut times: Vec<Duration> = Vec::new();
    for (reason, took) in detected {
        assert_eq!(reason, DisconnectReason::PingTimeout);
        assert!(took <= limit, "detected after {took:?}, limit {limit:?}");
        times.push(took);
    }
    times.sort();
    figure(
        "half-open link detected (ping 300 + 300 ms)",
        &format!("{n} of {n} within {}", ms(limit)),
        format!(
            "{} of {n}; median {}, max {}",
            times.len(),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        ),
    );
    for (client, _) in clients {
        client.close().await;
    }
}

/// A slow, jittery link cut into 1-byte segments keeps working: no heartbeat timeout, every
/// acknowledgement arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sliced_jittery_link_has_no_false_heartbeat_timeouts() {
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: 300,
        ping_timeout: 400,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(addr(&server)).await;
    proxy.set(|f| {
        f.latency = Duration::from_millis(40);
        f.jitter = Duration::from_millis(60);
        f.slice = true;
        f.bandwidth = Some(32 * 1024);
    });
    let client = Client::new(config(&proxy.url())).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    let secs = env_or("PULSELINK_BAD_LINK_SECS", 5);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut rtts = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let sent = Instant::now();
        let reply = client
            .emit_with_ack("quiz:answer_submit", json!({"n": n}), T)
            .await
            .unwrap();
        assert_eq!(
            reply.args_as::<(serde_json::Value,)>().unwrap().0["answer"]["n"],
            n
        );
        rtts.push(sent.elapsed());
        n += 1;
    }
    let mut disconnects = 0;
    while let Ok(notice) = notices.try_recv() {
        if matches!(notice, pulselink::Notice::Disconnected { .. }) {
            disconnects += 1;
        }
    }
    assert_eq!(disconnects, 0, "no false timeout on a slow link");
    assert_eq!(client.state(), State::Connected);
    rtts.sort();
    figure(
        "slow link (40+0..60 ms each way, 1-byte segments, 32 KiB/s; ping 300 + 400 ms)",
        &format!("0 disconnects in {secs} s"),
        format!(
            "0 disconnects; {n} acks, RTT median {}, max {}",
            ms(rtts[rtts.len() / 2]),
            ms(rtts[rtts.len() - 1])
        ),
    );
    client.close().await;
}

/// Emits the server received but never acknowledged when the link was reset are sent again,
/// in their original order and with their original idempotency keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_emits_are_resent_in_order_with_their_keys_after_a_reset() {
    let (_dir, ledger, store) = scratch("reliability-resend");
    let server = NodeServer::start_with(ServerOptions {
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(addr(&server)).await;
    let client = Client::new(config(&proxy.url()).with_store(&store)).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    let count = 30;
    for n in 0..count {
        // The test server records a "holdAckOnce" tick and does not acknowledge it.
        client
            .emit_with(
                "tick",
                json!({"n": n, "holdAckOnce": true}),
                EmitOptions::default().confirm(),
            )
            .await
            .unwrap();
    }
    let keys: Vec<String> = client
        .outbox()
        .list(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys.len(), count as usize);
    // The ledger file is the only sign the server has them all.
    tokio::time::timeout(T, async {
        while read_ledger(&ledger).len() < count as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server records every tick");

    let pending_ack = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .emit_with_ack("quiz:answer_submit", json!("late"), T)
                .await
        }
    });
    proxy.reset_all();
    next_disconnect(&mut notices, T).await;
    client.outbox().drained().await.unwrap();
    let reply = pending_ack.await.unwrap();
    assert!(
        matches!(reply, Ok(_) | Err(Error::Disconnected)),
        "{reply:?}"
    );

    let lines = read_ledger(&ledger);
    let (first, again): (Vec<_>, Vec<_>) = lines.iter().partition(|l| !l.dup);
    let order = |ls: &[&pulselink_tests::LedgerLine]| ls.iter().map(|l| l.n).collect::<Vec<_>>();
    let key_list =
        |ls: &[&pulselink_tests::LedgerLine]| ls.iter().map(|l| l.key.clone()).collect::<Vec<_>>();
    assert_eq!(order(&first), (0..count).collect::<Vec<_>>());
    assert_eq!(order(&again), (0..count).collect::<Vec<_>>());
    assert_eq!(key_list(&first), keys);
    assert_eq!(key_list(&again), keys);
    figure(
        "unacked emits at a connection reset",
        "resent in order with their original keys",
        format!("{count} of {count} resent in order, same keys; emit_with_ack resolved once"),
    );
    client.close().await;
}

/// A loopback server that misbehaves in one way, for the connect-failure tests.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    AcceptThenClose,
    NeverAnswer,
    Http500,
}

async fn misbehaving_server(how: Misbehaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            match how {
                Misbehaviour::AcceptThenClose => drop(s),
                Misbehaviour::NeverAnswer => held.push(s),
                Misbehaviour::Http500 => {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\
                                  connection: close\r\n\r\noops!",
                            )
                            .await;
                    });
                }
            }
        }
    });
    addr
}

/// Connection attempts that fail in every way reach `Reconnecting` within the connect
/// timeout and keep being retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_lead_to_reconnecting_within_the_timeout_and_keep_retrying() {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cases = [
        ("connection refused", refused, Transports::WebSocket),
        (
            "accept then close",
            misbehaving_server(Misbehaviour::AcceptThenClose).await,
            Transports::WebSocket,
        ),
        (
            "no handshake reply",
            misbehaving_server(Misbehaviour::NeverAnswer).await,
            Transports::WebSocket,
        ),
        (
            "HTTP 500 on polling",
            misbehaving_server(Misbehaviour::Http500).await,
            Transports::Polling,
        ),
    ];
    let connect_timeout = Duration::from_millis(500);
    // The timer fires at the timeout; the margin covers scheduling on a loaded 2-CPU runner.
    let bound = connect_timeout + Duration::from_millis(100);
    for (name, addr, transports) in cases {
        let config = ClientConfig {
            connect_timeout,
            ..config(&format!("http://{addr}")).with_transports(transports)
        };
        let client = Client::new(config).unwrap();
        let mut states = client.states();
        let started = Instant::now();
        client.start().unwrap();
        wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
        let first = started.elapsed();
        assert!(first <= bound, "{name}: {first:?}");
        wait_for_state(
            &mut states,
            T,
            |s| matches!(s, State::Reconnecting { attempt, .. } if *attempt >= 3),
        )
        .await;
        figure(
            &format!("connect failure: {name}"),
            &format!(
                "Reconnecting within {} (connect timeout {} + margin) and retrying",
                ms(bound),
                ms(connect_timeout)
            ),
            format!(
                "Reconnecting after {}; attempt 3 after {}",
                ms(first),
                ms(started.elapsed())
            ),
        );
        client.close().await;
    }
}

/// How long `close()` may take while a connect attempt hangs.
const CLOSE_BOUND: Duration = Duration::from_millis(100);

/// `close()` while reconnecting through a black hole returns at once and leaves no task and
/// no socket behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_reconnecting_is_prompt_and_leaves_nothing() {
    let server = NodeServer::start().await;
    let proxy = FaultProxy::start(addr(&server)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let client = Client::new(config(&proxy.url())).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    let accepted = proxy.accepted();
    proxy.set(|f| f.blackhole = true);
    proxy.reset_all();
    next_disconnect(&mut notices, T).await;
    // Close while a reconnect attempt hangs in the black hole (the proxy counts it; nothing
    // else tells).
    tokio::time::timeout(T, async {
        while proxy.accepted() == accepted {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("a reconnect attempt");

    let started = Instant::now();
    client.close().await;
    let took = started.elapsed();
    assert!(took <= CLOSE_BOUND, "close took {took:?}");
    assert_eq!(client.state(), State::Closed);
    // The outage ends: a socket the client closed now shows its FIN, one it leaked would not.
    proxy.heal();
    let settled = tokio::time::timeout(T, async {
        while proxy.open_connections() > 0 || metrics.num_alive_tasks() > tasks_before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} sockets, {} tasks left",
        proxy.open_connections(),
        metrics.num_alive_tasks() as i64 - tasks_before as i64
    );
    figure(
        "close() while reconnecting",
        &format!("returns within {}, no task or socket left", ms(CLOSE_BOUND)),
        format!("returned in {took:.1?}; 0 tasks, 0 sockets left"),
    );
}

/// One client per store file: a second process opening a file that a client holds is refused
/// at open with an error that says so and changes nothing in the file; once the first client
/// closes, the second opens it and every emit of both is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_on_one_store_file_is_refused_and_nothing_is_lost() {
    let (_dir, ledger, store) = scratch("reliability-two-writers");
    let server = NodeServer::start_with(ServerOptions {
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let count = 200u64;
    // The first client, in this process, holds `count` entries in the file (never started).
    let first = Client::new(ClientConfig::new(&server.url()).unwrap().with_store(&store)).unwrap();
    for n in 0..count {
        first.emit("tick", json!({ "n": n })).await.unwrap();
    }
    let run = |from: u64| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pl-emitter"))
            .args([
                &server.url(),
                store.to_str().unwrap(),
                &from.to_string(),
                &count.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output()
    };
    let started = Instant::now();
    let refused = run(10_000).await.unwrap();
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "the second client opened the file"
    );
    assert!(stderr.contains("open in another client"), "{stderr}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("ok "));
    let stats = first.outbox().stats().await.unwrap();
    assert_eq!(stats.pending, count, "the refused client changed nothing");
    first.close().await;

    let out = run(10_000).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "no error surfaced: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        count as usize
    );
    assert!(stdout.contains("drained"), "{stdout}");
    let mut delivered: Vec<u64> = read_ledger(&ledger)
        .iter()
        .filter(|l| !l.dup)
        .map(|l| l.n)
        .collect();
    delivered.sort();
    let expected: Vec<u64> = (0..count).chain(10_000..10_000 + count).collect();
    assert_eq!(delivered, expected);
    let db = rusqlite::Connection::open(&store).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    figure(
        "a second client on one store file",
        "refused at open with a clear error; nothing lost, integrity ok",
        format!(
            "refused after {}; then {} of {} delivered, integrity {integrity}",
            ms(waited),
            delivered.len(),
            expected.len(),
        ),
    );
}

/// Largest Kolmogorov–Smirnov distance allowed between the crowd's first retry delays and
/// the policy's jitter distribution: the critical value at α = 10⁻⁶ for 10,000 samples
/// (2.69 / √n), so a correct policy fails one run in a million (at α = 0.001 a CI run
/// failed with 0.0196). A crowd that all waited the same delay would be at distance 1; one
/// bunched into the window's half, 0.5.
const KS_LIMIT: f64 = 0.0269;

/// 10,000 clients dropped at once (the default policy, each with its own `Backoff`): no retry
/// waits longer than the cap, and the first retries follow the policy's jitter — uniform over
/// `initial × (1 − jitter) … initial` — by a Kolmogorov–Smirnov test, so the crowd spreads
/// over that whole window instead of bunching.
#[test]
fn a_crowd_of_clients_spreads_its_first_retries() {
    let policy = ReconnectPolicy::default();
    let clients = 10_000;
    let mut firsts = Vec::with_capacity(clients);
    let mut longest = Duration::ZERO;
    for _ in 0..clients {
        let mut backoff = pulselink::backoff::Backoff::new(policy.clone());
        let (_, first) = backoff.next_delay().unwrap();
        firsts.push(first.as_secs_f64());
        for _ in 1..20 {
            longest = longest.max(backoff.next_delay().unwrap().1);
        }
    }
    assert!(longest <= policy.max_delay, "{longest:?}");
    firsts.sort_by(f64::total_cmp);
    let hi = policy.initial_delay.as_secs_f64();
    let lo = hi * (1.0 - policy.jitter);
    let cdf = |x: f64| ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    let n = firsts.len() as f64;
    let distance = firsts
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max);
    assert!(distance <= KS_LIMIT, "KS distance {distance:.4}");
    figure(
        "10,000 clients dropped at once (default policy)",
        &format!(
            "no delay above the cap; first retries uniform over {}–{} (KS distance ≤ {KS_LIMIT})",
            ms(Duration::from_secs_f64(lo)),
            ms(Duration::from_secs_f64(hi))
        ),
        format!(
            "longest delay {} (cap {}); KS distance {distance:.4}",
            ms(longest),
            ms(policy.max_delay),
        ),
    );
}

/// How soon the network-up hint must get the client connected again.
const NETWORK_UP_BOUND: Duration = Duration::from_millis(50);

/// The app's network-up hint skips the backoff: connected again within 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_up_hint_reconnects_within_50_ms() {
    let server = NodeServer::start().await;
    // A patient policy: without the hint the next attempt would be ≥ 0.5 s away.
    let client = Client::new(
        ClientConfig::new(&server.url())
            .unwrap()
            .with_reconnect(ReconnectPolicy::patient()),
    )
    .unwrap();
    let mut states = client.states();
    client.connect().await.unwrap();
    let mut times = Vec::new();
    for _ in 0..10 {
        client.set_network_available(false).unwrap();
        wait_for_state(&mut states, T, |s| *s == State::Offline).await;
        let started = Instant::now();
        client.set_network_available(true).unwrap();
        wait_for_state(&mut states, T, |s| *s == State::Connected).await;
        times.push(started.elapsed());
    }
    times.sort();
    let worst = times[times.len() - 1];
    assert!(worst <= NETWORK_UP_BOUND, "{times:?}");
    figure(
        "network-up hint",
        &format!("connected within {}", ms(NETWORK_UP_BOUND)),
        format!(
            "median {:.1?}, max {worst:.1?} (10 runs)",
            times[times.len() / 2]
        ),
    );
    client.close().await;
}

/// How soon after a resume from SIGSTOP the dead link must be noticed, in milliseconds.
const RESUME_DETECT_MS: u128 = 250;

/// The client process itself frozen (SIGSTOP, as a phone OS suspends a backgrounded app)
/// for longer than the server's ping timeout, then resumed: the dead link is noticed at once,
/// reconnects go one at a time, and what the app emitted meanwhile is delivered in order.
/// Two cases: the server dropped the client meanwhile (its FIN is waiting), and the server
/// frozen too (no FIN: only the client's heartbeat can tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_client_process_detects_the_dead_link_at_once_and_flushes_in_order() {
    for server_frozen_too in [false, true] {
        let (_dir, ledger, store) = scratch("suspended-client");
        let server = NodeServer::start_with(ServerOptions {
            ping_interval: 300,
            ping_timeout: 200,
            ledger: Some(ledger.clone()),
            ..Default::default()
        })
        .await;
        let mut child = Scripted::spawn(&server.url(), &store).await;
        child.send("emit 0 20").await;
        child.expect("ok 20").await;

        child.signal("-STOP");
        if server_frozen_too {
            server.pause();
        }
        // The suspension is the scenario: three times what the server tolerates.
        let suspended = Duration::from_millis(1500);
        tokio::time::sleep(suspended).await;
        // Queued while frozen: the app's first act on resume is to emit.
        child.send("emit 20 40").await;
        let resumed_at = unix_ms();
        child.signal("-CONT");

        let dead_at = child.notice("disconnected").await;
        if server_frozen_too {
            server.resume();
        }
        child.send("drain").await;
        let notices = child.expect("drained").await;
        child.send("quit").await;
        child.finish().await;

        let detected = dead_at.saturating_sub(resumed_at);
        assert!(
            detected <= RESUME_DETECT_MS,
            "dead link noticed {detected} ms after resume"
        );
        // One attempt at a time: each `attempt` is settled (failed or connected) before the
        // next starts, and exactly one connect ends it.
        let mut in_flight = false;
        let (mut attempts, mut connects) = (0, 0);
        for kind in &notices {
            if kind.starts_with("attempt") {
                assert!(!in_flight, "two attempts in flight: {notices:?}");
                in_flight = true;
                attempts += 1;
            } else if kind == "failed" || kind == "connected" {
                in_flight = false;
                connects += usize::from(kind == "connected");
            }
        }
        assert_eq!(connects, 1, "{notices:?}");
        let delivered: Vec<u64> = read_ledger(&ledger)
            .into_iter()
            .filter(|l| !l.dup)
            .map(|l| l.n)
            .collect();
        assert_eq!(delivered, (0..40).collect::<Vec<_>>());
        figure(
            &format!(
                "client process suspended 1.5 s ({})",
                if server_frozen_too {
                    "server frozen too: no FIN"
                } else {
                    "server dropped it"
                }
            ),
            &format!(
                "dead link noticed ≤ {RESUME_DETECT_MS} ms after resume; one attempt in flight; \
                 outbox flushed in order"
            ),
            format!(
                "noticed after {detected} ms; {attempts} attempt(s), 1 reconnect; 40/40 in order"
            ),
        );
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// A `pl-scripted` child client.
struct Scripted {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Scripted {
    async fn spawn(url: &str, store: &std::path::Path) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pl-scripted"))
            .args([url, store.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut me = Self {
            child,
            stdin,
            lines,
        };
        me.expect("connected").await;
        me
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    async fn next_line(&mut self) -> String {
        tokio::time::timeout(T, self.lines.next_line())
            .await
            .expect("the child answers")
            .unwrap()
            .expect("the child is running")
    }

    /// Reads until `line`; returns the notice kinds seen on the way.
    async fn expect(&mut self, line: &str) -> Vec<String> {
        let mut kinds = Vec::new();
        loop {
            let l = self.next_line().await;
            if l == line {
                return kinds;
            }
            if let Some(rest) = l.strip_prefix("notice ") {
                kinds.push(rest.split_once(' ').unwrap().1.to_owned());
            }
        }
    }

    /// Reads until a notice starting with `kind`; returns its wall-clock time.
    async fn notice(&mut self, kind: &str) -> u128 {
        loop {
            let l = self.next_line().await;
            if let Some(rest) = l.strip_prefix("notice ") {
                let (at, k) = rest.split_once(' ').unwrap();
                if k.starts_with(kind) {
                    return at.parse().unwrap();
                }
            }
        }
    }

    async fn finish(mut self) {
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
    }
}

/// Server→client WebSocket frames duplicated and neighbours swapped by the proxy: the app
/// sees each event once (inbound dedup), every `emit_with_ack` resolves once with its own
/// answer, and the connection survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_frames_reach_the_app_once() {
    const N: u64 = 200;
    let server = NodeServer::start().await;
    let proxy = FaultProxy::start(addr(&server)).await;
    let mut config = config(&proxy.url());
    config.dedup = Some(DedupConfig {
        per_event: [("echo".to_owned(), "/i".to_owned())].into(),
        ..DedupConfig::default()
    });
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    proxy.set(|f| {
        f.duplicate_frames = true;
        f.reorder_frames = true;
    });
    // All at once, so answers arrive together and get swapped. The server echoes each as an
    // event, then acknowledges it: both frames are duplicated.
    let answers = join_all((0..N).map(|i| client.emit_with_ack("echo", json!({"i": i}), T))).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().values().unwrap()[0]["i"], i, "answer {i}");
    }
    // Everything the server sent so far has passed the proxy; the marker passes untouched.
    proxy.heal();
    client
        .emit("emit-to-me", json!({"event": "done", "args": []}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(T, events.recv())
            .await
            .expect("the marker arrives")
            .expect("stream open");
        match ev.name() {
            "done" => break,
            "echo" => seen.push(ev.args().unwrap()[0]["i"].as_u64().unwrap()),
            _ => {}
        }
    }
    let inversions = seen.windows(2).filter(|w| w[0] > w[1]).count();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>(), "each echo exactly once");
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.duplicates_dropped >= N, "{metrics:?}");
    assert!(
        inversions > 0,
        "the proxy reordered nothing; the test proves nothing"
    );
    assert_eq!(metrics.connects, 1, "the connection survived");
    client.close().await;
    figure(
        "duplicated and reordered WebSocket frames",
        "each event reaches the app once; each ack resolves once, with its answer",
        format!(
            "{N} of {N} events once ({} duplicates dropped, {inversions} neighbours out of order); {N} acks correct; 1 connection",
            metrics.duplicates_dropped
        ),
    );
}
