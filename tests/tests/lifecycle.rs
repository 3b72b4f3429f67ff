//! A phone's life against the official Node Socket.IO server: the app going to the background
//! and back, a long outage that suspends the client, a move to another network interface
//! under a live link, and the battery-aware `Low` lane. Short settings throughout; every
//! bound is a constant the report line prints.

use std::time::{Duration, Instant};

use pulselink::{
    BackgroundPolicy, Client, ClientConfig, EmitOptions, Interface, LowLane, LowLaneHold,
    NetworkPath, Notice, Priority, ReconnectPolicy, State, Transports,
};
use pulselink_tests::{
    FaultProxy, HEARTBEAT_MARGIN, NodeServer, ServerOptions, fast_reconnect, next_disconnect,
    next_named, next_notice, read_ledger, scratch, wait_for_state,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// How soon after `enter_foreground()` the client must be connected again.
const FOREGROUND_CONNECT: Duration = Duration::from_millis(100);

/// How long the test stays in the background, watching for connection attempts.
const BACKGROUND_QUIET: Duration = Duration::from_secs(5);

/// How soon after a network-up hint a suspended client must be connected (the server is
/// reachable again).
const HINT_CONNECT: Duration = Duration::from_millis(100);

/// How soon after `network_changed` to a new interface a stranded link must be replaced.
const INTERFACE_SWITCH: Duration = Duration::from_millis(300);

fn report(name: &str, criterion: &str, figure: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{figure}");
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn engine_connections(client: &Client) -> u64 {
    let reply = client
        .emit_with_ack("engine-connections?", (), T)
        .await
        .unwrap();
    reply.args_as::<(u64,)>().unwrap().0
}

async fn server_log(client: &Client) -> Vec<String> {
    let reply = client.emit_with_ack("log?", (), T).await.unwrap();
    reply.args_as::<(Vec<String>,)>().unwrap().0
}

/// The ticks the server accepted, in order (room subscriptions, also in the ledger, left out).
fn delivered(ledger: &std::path::Path) -> Vec<u64> {
    read_ledger(ledger)
        .into_iter()
        .filter(|l| !l.dup && !l.key.starts_with("room:"))
        .map(|l| l.n)
        .collect()
}

/// 200 emits pending when the app goes to the background are all delivered before the link
/// closes; no attempt reaches the server while in the background, and 100 emits made
/// meanwhile are stored; the foreground connects at once, recovers the session (with what a
/// room missed) and delivers the 100 once, in order, after the subscription was replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_flushes_then_stays_quiet_and_the_foreground_resumes_in_order() {
    let (_dir, ledger, store) = scratch("background");
    let server = NodeServer::start_with(ServerOptions {
        recovery_ms: Some(60_000),
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let config = ClientConfig::new(&server.url())
        .unwrap()
        .with_store(&store)
        .with_reconnect(fast_reconnect());
    let client = Client::new(config).unwrap();
    let mut states = client.states();
    let mut events = client.events();
    client.connect().await.unwrap();
    client
        .subscribe("room:subscribe", json!({"roomId": "r1"}), None)
        .await
        .unwrap();

    // 200 emits pending: queued while offline, the network back just as the app leaves.
    client.set_network_available(false).unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Offline).await;
    let confirm = || EmitOptions::default().confirm();
    for n in 0..200 {
        client
            .emit_with("tick", json!({"n": n}), confirm())
            .await
            .unwrap();
    }
    client.set_network_available(true).unwrap();
    let mut notices = client.notices();
    let flush = client
        .enter_background(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        (flush.sent, flush.remaining),
        (200, 0),
        "all delivered: {flush:?}"
    );
    assert_eq!(delivered(&ledger), (0..200).collect::<Vec<_>>());
    wait_for_state(&mut states, T, |s| *s == State::Background).await;
    let reason = next_disconnect(&mut notices, T).await;
    assert_eq!(reason, pulselink::DisconnectReason::Background);

    // In the background: emits are stored, nothing is attempted, a room event is missed.
    let other = Client::new(ClientConfig::new(&server.url()).unwrap()).unwrap();
    other.connect().await.unwrap();
    let attempts_before = engine_connections(&other).await;
    for n in 200..300 {
        client
            .emit_with("tick", json!({"n": n}), confirm())
            .await
            .unwrap();
    }
    other
        .emit_with_ack(
            "broadcast",
            json!({"event": "missed", "args": [{"while": "background"}]}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(client.outbox().stats().await.unwrap().pending, 100);
    tokio::time::sleep(BACKGROUND_QUIET).await;
    assert_eq!(client.state(), State::Background);
    assert_eq!(
        engine_connections(&other).await,
        attempts_before,
        "no connection attempt reached the server in the background"
    );

    let mut notices = client.notices();
    let started = Instant::now();
    client.enter_foreground().unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    let took = started.elapsed();
    assert!(took <= FOREGROUND_CONNECT, "connected after {took:?}");
    let recovered = next_notice(&mut notices, T, |n| match n {
        Notice::Connected { recovered, .. } => Some(recovered),
        _ => None,
    })
    .await;
    assert!(recovered, "the server kept the session");
    let missed = next_named(&mut events, "missed", T).await;
    assert_eq!(missed.first_arg::<Value>().unwrap()["while"], "background");
    tokio::time::timeout(T, client.outbox().drained())
        .await
        .expect("drained")
        .unwrap();
    assert_eq!(
        delivered(&ledger),
        (0..300).collect::<Vec<_>>(),
        "once, in order"
    );
    let log = server_log(&client).await;
    assert_eq!(log[0], "room:subscribe", "replayed first: {log:?}");
    assert_eq!(
        log.iter().filter(|e| *e == "tick").count(),
        100,
        "the 100 on this connection, after it: {log:?}"
    );
    assert_eq!(engine_connections(&other).await, attempts_before + 1);
    let times = client.metrics().await.unwrap().state_times;
    assert!(times.background >= BACKGROUND_QUIET, "{times:?}");
    report(
        "app in the background (Disconnect policy), then the foreground",
        &format!(
            "200 pending delivered before the link closes; 0 attempts in {} s of background; \
             connected ≤ {} after enter_foreground, session recovered, 100 stored emits once \
             in order after the subscription",
            BACKGROUND_QUIET.as_secs(),
            ms(FOREGROUND_CONNECT)
        ),
        format!(
            "flush: {} sent, {} left in {}; 0 attempts; connected after {}, recovered",
            flush.sent,
            flush.remaining,
            ms(flush.took),
            ms(took)
        ),
    );
    client.close().await;
    other.close().await;
}

/// `KeepAlive` keeps the link and the heartbeat in the background: events still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_keeps_the_link_in_the_background() {
    let server = NodeServer::start().await;
    let config = ClientConfig {
        background: BackgroundPolicy::KeepAlive,
        ..ClientConfig::new(&server.url()).unwrap()
    };
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let flush = client.enter_background(T).await.unwrap();
    assert_eq!(flush.remaining, 0);
    client
        .emit("emit-to-me", json!({"event": "still", "args": [1]}))
        .await
        .unwrap();
    next_named(&mut events, "still", T).await;
    assert_eq!(client.state(), State::Connected);
    client.close().await;
}

/// Disconnected longer than `suspend_after`, the client is `Suspended` and attempts are spaced
/// by `suspended_retry` (measured where they arrive); a network-up hint connects at once when
/// the server is reachable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_suspends_and_spaces_attempts_until_a_network_hint() {
    const SUSPEND_AFTER: Duration = Duration::from_millis(1_000);
    const SUSPENDED_RETRY: Duration = Duration::from_millis(400);
    // An attempt against a closed port takes a millisecond; scheduling adds a few more.
    const SPACING_SLACK: Duration = Duration::from_millis(60);
    let mut server = NodeServer::start().await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        factor: 2.0,
        jitter: 0.0,
        suspend_after: Some(SUSPEND_AFTER),
        suspended_retry: SUSPENDED_RETRY,
        ..ReconnectPolicy::default()
    };
    // WebSocket only: one connection per attempt, so the proxy's accept times are attempts
    // (a fallback to polling would open a second one per attempt).
    let config = ClientConfig::new(&proxy.url())
        .unwrap()
        .with_transports(Transports::WebSocket)
        .with_reconnect(policy);
    let client = Client::new(config).unwrap();
    let mut states = client.states();
    let notices = client.notices();
    client.connect().await.unwrap();

    server.kill().await;
    let lost = Instant::now();
    wait_for_state(&mut states, T, |s| matches!(s, State::Suspended { .. })).await;
    let suspended_after = lost.elapsed();
    assert!(suspended_after >= SUSPEND_AFTER, "{suspended_after:?}");
    let suspended_at = proxy.accepted();
    // Only attempts from now on.
    let mut notices = notices.resubscribe();
    // Three attempts while suspended, each over (so the proxy has seen it) when it is
    // reported failed.
    for _ in 0..3 {
        next_notice(&mut notices, T, |n| match n {
            Notice::ConnectFailed { .. } => Some(()),
            _ => None,
        })
        .await;
    }
    let times = proxy.accept_times();
    let before: Vec<Duration> = times[1..suspended_at]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    let during: Vec<Duration> = times[suspended_at - 1..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert!(
        before.iter().all(|g| *g < SUSPENDED_RETRY),
        "backoff before: {before:?}"
    );
    assert!(during.len() >= 3, "{during:?}");
    for gap in &during {
        assert!(
            *gap >= SUSPENDED_RETRY && *gap <= SUSPENDED_RETRY + SPACING_SLACK,
            "spacing while suspended: {during:?}"
        );
    }

    server.restart().await;
    let started = Instant::now();
    client.set_network_available(true).unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    let took = started.elapsed();
    assert!(took <= HINT_CONNECT, "connected after {took:?}");
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.state_times.suspended > Duration::ZERO,
        "{metrics:?}"
    );
    assert_eq!(metrics.outbox.failed, 0, "suspension fails nothing");
    report(
        "long outage: suspended, then a network-up hint",
        &format!(
            "Suspended once down ≥ {}; attempts every {} (+{} slack); connected ≤ {} after the hint",
            ms(SUSPEND_AFTER),
            ms(SUSPENDED_RETRY),
            ms(SPACING_SLACK),
            ms(HINT_CONNECT)
        ),
        format!(
            "Suspended after {}; spacing {}; connected {} after the hint",
            ms(suspended_after),
            during.iter().map(|g| ms(*g)).collect::<Vec<_>>().join(", "),
            ms(took)
        ),
    );
    client.close().await;
}

/// The device moves from Wi-Fi to cellular: the old socket is stranded (no FIN, no RST, as
/// when its interface is gone). With `network_changed` the link is replaced at once; without
/// it, only the heartbeat finds it dead, a ping interval and timeout later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_change_replaces_a_stranded_link_at_once() {
    let (interval, timeout) = (1_000, 1_000);
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: interval,
        ping_timeout: timeout,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    let config = ClientConfig::new(&proxy.url())
        .unwrap()
        .with_reconnect(fast_reconnect());
    let client = Client::new(config).unwrap();
    let mut states = client.states();
    let mut notices = client.notices();
    client
        .network_changed(NetworkPath::available(Interface::Wifi))
        .unwrap();
    client.connect().await.unwrap();

    // With the hint.
    proxy.strand_open_connections();
    let started = Instant::now();
    client
        .network_changed(NetworkPath::available(Interface::Cellular))
        .unwrap();
    let reason = next_disconnect(&mut notices, T).await;
    assert_eq!(reason, pulselink::DisconnectReason::NetworkChanged);
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    let with_hint = started.elapsed();
    assert!(
        with_hint <= INTERFACE_SWITCH,
        "replaced after {with_hint:?}"
    );
    // The new link works.
    client
        .emit_with_ack("quiz:answer_submit", json!("A"), T)
        .await
        .unwrap();

    // Without it: the heartbeat's verdict.
    proxy.strand_open_connections();
    let started = Instant::now();
    let reason = next_disconnect(&mut notices, T).await;
    let without = started.elapsed();
    assert_eq!(reason, pulselink::DisconnectReason::PingTimeout);
    let limit = Duration::from_millis(interval + timeout) + HEARTBEAT_MARGIN;
    assert!(without <= limit, "{without:?}");
    report(
        "interface change under a live link (old socket stranded, no FIN/RST)",
        &format!(
            "replaced ≤ {} after network_changed; without it, the heartbeat (ping {interval} + \
             {timeout} ms)",
            ms(INTERFACE_SWITCH)
        ),
        format!(
            "replaced after {} with the hint; {} without",
            ms(with_hint),
            ms(without)
        ),
    );
    client.close().await;
}

/// The `Low` lane: with only `Low` emits the radio is not woken before `max_delay`, then one
/// wake-up carries them all; a `Normal` emit or an inbound event takes waiting `Low` entries
/// along in the same burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_entries_wait_for_the_radio_and_ride_along_with_other_traffic() {
    const MAX_DELAY: Duration = Duration::from_millis(1_500);
    // Well inside `MAX_DELAY`: the entries went with the traffic, not with their deadline.
    const ALONG: Duration = Duration::from_millis(500);
    let (_dir, ledger, _) = scratch("low-lane");
    // No heartbeat during the test: the only traffic is what the test makes.
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: 60_000,
        ping_timeout: 20_000,
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let mut config = ClientConfig::new(&server.url()).unwrap();
    config.outbox.low_lane = LowLane {
        hold: LowLaneHold::Always,
        max_delay: MAX_DELAY,
    };
    let client = Client::new(config).unwrap();
    let other = Client::new(ClientConfig::new(&server.url()).unwrap()).unwrap();
    client.connect().await.unwrap();
    other.connect().await.unwrap();
    let low = |n: u64| {
        let opts = EmitOptions {
            priority: Priority::Low,
            ..EmitOptions::default()
        }
        .confirm();
        let client = client.clone();
        async move {
            client
                .emit_with("tick", json!({"n": n}), opts)
                .await
                .unwrap()
        }
    };
    // The radio model's tail after the connect: silence, as a phone in a pocket.
    let quiet = || tokio::time::sleep(pulselink::metrics::RADIO_TAIL + Duration::from_millis(100));

    // Only Low emits: nothing before max_delay, then one wake-up for all.
    quiet().await;
    let wakeups = client.metrics().await.unwrap().radio_wakeups;
    let started = Instant::now();
    for n in 0..5 {
        low(n).await;
    }
    tokio::time::timeout(T, client.outbox().drained())
        .await
        .unwrap()
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= MAX_DELAY, "sent after {waited:?}");
    let after = client.metrics().await.unwrap().radio_wakeups;
    assert_eq!(after, wakeups + 1, "one wake-up for the five");

    // A Normal emit takes the waiting Low ones along.
    quiet().await;
    for n in 5..8 {
        low(n).await;
    }
    let started = Instant::now();
    client
        .emit_with("tick", json!({"n": 8}), EmitOptions::default().confirm())
        .await
        .unwrap();
    tokio::time::timeout(T, client.outbox().drained())
        .await
        .unwrap()
        .unwrap();
    let with_normal = started.elapsed();
    assert!(with_normal < ALONG, "{with_normal:?}");
    assert_eq!(
        delivered(&ledger)[5..],
        [8, 5, 6, 7],
        "the Normal one first"
    );

    // So does an inbound event (the server broadcasts; the radio is awake to receive it).
    quiet().await;
    for n in 9..12 {
        low(n).await;
    }
    let started = Instant::now();
    other
        .emit_with_ack("broadcast", json!({"event": "news", "args": [1]}), T)
        .await
        .unwrap();
    tokio::time::timeout(T, client.outbox().drained())
        .await
        .unwrap()
        .unwrap();
    let with_inbound = started.elapsed();
    assert!(with_inbound < ALONG, "{with_inbound:?}");
    assert_eq!(delivered(&ledger).len(), 12);
    report(
        "battery-aware Low lane",
        &format!(
            "only Low: no wake-up before max_delay {}, then one for all; with a Normal emit or \
             an inbound event: sent along within {}",
            ms(MAX_DELAY),
            ms(ALONG)
        ),
        format!(
            "Low alone sent after {} (1 wake-up); with a Normal emit after {}; with an inbound \
             event after {}",
            ms(waited),
            ms(with_normal),
            ms(with_inbound)
        ),
    );
    client.close().await;
    other.close().await;
}

/// The lifecycle calls on a closed client change nothing and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_calls_on_a_closed_client_say_closed() {
    let server = NodeServer::start().await;
    let client = Client::new(ClientConfig::new(&server.url()).unwrap()).unwrap();
    client.close().await;
    assert_eq!(client.enter_foreground(), Err(pulselink::Error::Closed));
    assert_eq!(
        client.enter_background(T).await,
        Err(pulselink::Error::Closed)
    );
    assert_eq!(
        client.network_changed(NetworkPath::unavailable()),
        Err(pulselink::Error::Closed)
    );
    assert_eq!(client.state(), State::Closed);
}
