//! The seed platforms' application signals (`ServerSignals::seed_platforms`) against the
//! official Node server scripted to behave like them (`tests/node/server.js`): the app
//! heartbeat, each error code's action, a per-connection limit kept without one refusal (from
//! the announced quota, or from a configured budget), and an announced adaptive rate followed.
//!
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pulselink::{
    AppHeartbeat, AuthReason, AuthRequest, Budget, Client, ClientConfig, DisconnectReason, Notice,
    RateLimit, ServerSignals, State,
};
use pulselink_tests::{
    HEARTBEAT_MARGIN, NodeServer, ask, fast_reconnect, next_notice, wait_for_state,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// How closely the send rate follows an announced adaptive limit (the bound).
const RATE_TOLERANCE: f64 = 0.10;

fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

fn seed(server: &NodeServer, signals: ServerSignals) -> ClientConfig {
    ClientConfig::new(&server.url())
        .unwrap()
        .with_signals(signals)
        .with_reconnect(fast_reconnect())
}

/// Waits until `check` holds for the server's answer to `event` (the server's count of what
/// it received is the signal; the client has nothing to wait on).
async fn until_server(client: &Client, event: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let v = ask(client, event, Value::Null).await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{event}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_app_heartbeat_reconnects_within_interval_and_timeout() {
    let server = NodeServer::start().await;
    let interval = Duration::from_millis(300);
    let timeout = Duration::from_millis(200);
    let mut signals = ServerSignals::seed_platforms();
    signals.heartbeat = Some(AppHeartbeat {
        event: "ping".into(),
        reply: "pong".into(),
        interval,
        timeout,
    });
    let client = Client::new(seed(&server, signals)).unwrap();
    let mut notices = client.notices();
    let mut states = client.states();
    let mut pongs = client.socket("/").unwrap().events_named("pong");
    client.connect().await.unwrap();
    // Answered pings keep the link: three pongs (each the reply to a ping sent after an
    // interval of silence), and no disconnect.
    for _ in 0..3 {
        tokio::time::timeout(T, pongs.recv())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(ask(&client, "pings?", Value::Null).await.as_u64() >= Some(3));
    assert_eq!(client.metrics().await.unwrap().reconnects, 0);
    ask(&client, "mute-pong", Value::Null).await;
    let muted = Instant::now();
    let reason = next_notice(&mut notices, T, |n| match n {
        Notice::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    let took = muted.elapsed();
    assert_eq!(reason, DisconnectReason::AppPingTimeout);
    assert!(
        took <= interval + timeout + HEARTBEAT_MARGIN,
        "dead after {took:?}"
    );
    // A new connection answers pongs again.
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    client.close().await;
    figure(
        "app heartbeat: pong muted",
        &format!(
            "link dropped (AppPingTimeout) within interval + timeout + {} ms, then reconnected",
            HEARTBEAT_MARGIN.as_millis()
        ),
        format!(
            "{} ms (bound {} ms)",
            took.as_millis(),
            (interval + timeout + HEARTBEAT_MARGIN).as_millis()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_code_does_what_it_asks() {
    let server = NodeServer::start().await;
    let asked: Arc<Mutex<Vec<AuthReason>>> = Arc::default();
    let log = asked.clone();
    let config = seed(&server, ServerSignals::seed_platforms()).with_auth(move |r: AuthRequest| {
        log.lock().unwrap().push(r.reason);
        std::future::ready(Ok(Some(json!({"token": "t"}))))
    });
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();

    // AUTH_FAILED: fresh credentials, asked for as a refresh, and a new connection. (Sent
    // without waiting for an answer: the link ends as the error arrives.)
    client.emit("error-me", json!("AUTH_FAILED")).await.unwrap();
    let reason = next_notice(&mut notices, T, |n| match n {
        Notice::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::TokenExpired);
    next_notice(&mut notices, T, |n| {
        matches!(n, Notice::Connected { .. }).then_some(())
    })
    .await;
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, AuthReason::Refresh { .. })),
        "asked for fresh credentials: {:?}",
        asked.lock().unwrap()
    );

    // RATE_LIMITED (no reset time): the outbox pauses for the backoff's first step.
    let before = client.metrics().await.unwrap();
    ask(&client, "error-me", json!("RATE_LIMITED")).await;
    let started = Instant::now();
    client
        .emit_with_ack("quiz:answer_submit", json!("A"), T)
        .await
        .unwrap();
    let paused = started.elapsed();
    let initial = ServerSignals::seed_platforms().pause_backoff.initial;
    assert!(paused >= initial.mul_f64(0.9), "sent after {paused:?}");
    let after = client.metrics().await.unwrap();
    assert_eq!(after.rate_limit_pauses, before.rate_limit_pauses + 1);

    // CONNECTION_ERROR: reconnect.
    client
        .emit("error-me", json!("CONNECTION_ERROR"))
        .await
        .unwrap();
    let reason = next_notice(&mut notices, T, |n| match n {
        Notice::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(
        matches!(&reason, DisconnectReason::ServerError { code, .. } if code == "CONNECTION_ERROR"),
        "{reason:?}"
    );
    next_notice(&mut notices, T, |n| {
        matches!(n, Notice::Connected { .. }).then_some(())
    })
    .await;

    // Anything else is surfaced, and the link stays.
    let reconnects = client.metrics().await.unwrap().reconnects;
    ask(&client, "error-me", json!("VALIDATION_ERROR")).await;
    let code = next_notice(&mut notices, T, |n| match n {
        Notice::ServerError { code, .. } => (code == "VALIDATION_ERROR").then_some(code),
        Notice::Disconnected { reason, .. } => panic!("disconnected: {reason:?}"),
        _ => None,
    })
    .await;
    assert_eq!(code, "VALIDATION_ERROR");
    ask(&client, "echo", json!(1)).await;
    assert_eq!(client.metrics().await.unwrap().reconnects, reconnects);
    client.close().await;
    figure(
        "server error codes",
        "AUTH_FAILED refreshes credentials and reconnects; RATE_LIMITED pauses the outbox by \
         the backoff; CONNECTION_ERROR reconnects; others are surfaced only",
        "4 of 4 codes",
    );
}

/// Emits `n` `client:tick`s against a server allowing `limit` per `window` (announcing its
/// quota when `announce`) and returns what it accepted and how many it refused.
async fn against_the_limit(
    server: &NodeServer,
    signals: ServerSignals,
    n: u64,
    limit: u64,
    window: Duration,
    announce: bool,
) -> (Vec<u64>, u64, Duration) {
    let client = Client::new(seed(server, signals)).unwrap();
    client.connect().await.unwrap();
    let window_ms = window.as_millis() as u64;
    ask(
        &client,
        "quota-me",
        json!({"limit": limit, "window": window_ms, "announce": announce}),
    )
    .await;
    let started = Instant::now();
    for i in 0..n {
        client.emit("client:tick", json!({ "n": i })).await.unwrap();
    }
    client.outbox().drained().await.unwrap();
    let took = started.elapsed();
    let v = ask(&client, "limited?", Value::Null).await;
    client.close().await;
    let seen = v["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (seen, v["exceeded"].as_u64().unwrap(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limit_is_kept_without_one_refusal() {
    let server = NodeServer::start().await;
    // 100 per minute, scaled to the test: 20 per second.
    let (n, limit, window) = (70, 20, Duration::from_secs(1));
    let all: Vec<u64> = (0..n).collect();

    // Announced quota: held at the limit until each reset.
    let mut announced = ServerSignals::seed_platforms();
    announced.budgets.clear();
    let (seen, exceeded, took) =
        against_the_limit(&server, announced, n, limit, window, true).await;
    assert_eq!(exceeded, 0, "refused by the server");
    assert_eq!(seen, all, "everything, in order");
    assert!(took >= window * 3, "paced over the periods: {took:?}");

    // A configured budget, no announcements: the same, from the client's own count.
    let mut budgeted = ServerSignals::seed_platforms();
    budgeted.limit_events.clear();
    budgeted.budgets = vec![Budget::new(
        "client:*",
        RateLimit::new(limit as u32, window),
    )];
    let (seen, exceeded, _) = against_the_limit(&server, budgeted, n, limit, window, false).await;
    assert_eq!(exceeded, 0, "refused by the server");
    assert_eq!(seen, all, "everything, in order");

    // The control: neither, and the server refuses (the test can fail).
    let mut blind = ServerSignals::default();
    blind.limit_events.clear();
    let (_, exceeded, _) = against_the_limit(&server, blind, n, limit, window, false).await;
    assert!(exceeded > 0, "an unpaced client trips the limit");
    figure(
        "server limit (20/s, 100/minute scaled)",
        "70 events delivered in order with no RATE_LIMIT_EXCEEDED, from the announced quota and \
         from a configured budget (an unpaced client is refused: the control)",
        format!("0 refusals (control: {exceeded})"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_rate_follows_an_announced_adaptive_limit() {
    let server = NodeServer::start().await;
    let client = Client::new(seed(&server, ServerSignals::seed_platforms())).unwrap();
    client.connect().await.unwrap();
    let rate = 20.0;
    let n = 41;
    ask(&client, "adapt-me", json!(rate)).await;
    for i in 0..n {
        client.emit("paced", json!({ "n": i })).await.unwrap();
    }
    let times = until_server(&client, "paced?", |v| {
        v.as_array().is_some_and(|a| a.len() == n)
    })
    .await;
    let times: Vec<f64> = times
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let span = (times[n - 1] - times[0]) / 1000.0;
    let measured = (n - 1) as f64 / span;
    client.close().await;
    assert!(
        (measured - rate).abs() <= rate * RATE_TOLERANCE,
        "{measured:.1}/s against {rate}/s announced"
    );
    figure(
        "adaptive limit",
        &format!(
            "send rate within {:.0} % of the announced {rate}/s",
            RATE_TOLERANCE * 100.0
        ),
        format!("{measured:.1}/s"),
    );
}
