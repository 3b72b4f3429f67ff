//! The Socket.IO engine against the official Node `socket.io` server.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use pulselink::{
    Args, AuthReason, AuthRequest, Client, ClientConfig, DisconnectReason, Error, Notice,
    ReconnectPolicy, State,
};
use pulselink_tests::{NodeServer, ServerOptions, next_disconnect, next_named, wait_for_state};
use serde_json::{Value, json};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(10);

fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..ReconnectPolicy::default()
    }
}

fn config(server: &NodeServer) -> ClientConfig {
    ClientConfig::new(&server.url())
        .unwrap()
        .with_static_auth(json!({"token": "t1"}))
        .with_reconnect(fast_policy())
}

/// An auth provider returning the given tokens in turn (the last one repeats), recording
/// every request.
fn scripted_auth(
    tokens: &'static [&'static str],
) -> (
    impl pulselink::AuthProvider,
    Arc<std::sync::Mutex<Vec<AuthRequest>>>,
) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let seen = log.clone();
    let provider = move |req: AuthRequest| {
        seen.lock().unwrap().push(req);
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        let token = tokens[n.min(tokens.len() - 1)];
        async move { Ok(Some(json!({ "token": token }))) }
    };
    (provider, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_auth_and_receives_events() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    assert_eq!(client.state(), State::Connected);

    let welcome = next_named(&mut events, "welcome", T).await;
    assert_eq!(welcome.namespace(), "/");
    let body: Value = welcome.first_arg().unwrap();
    assert_eq!(body["auth"], json!({"token": "t1"}));
    client.close().await;
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_acks_flow_both_ways() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();

    client
        .emit("echo", Args::list([json!({"bpm": 72}), json!("x")]))
        .await
        .unwrap();
    let echo = next_named(&mut events, "echo", T).await;
    let mut args = echo.args().unwrap();
    // The outbox's idempotency key rides in the first object argument.
    let key = args[0]["idempotencyKey"].take();
    assert!(key.as_str().is_some_and(|k| k.contains('-')), "{key}");
    args[0].as_object_mut().unwrap().remove("idempotencyKey");
    assert_eq!(args, vec![json!({"bpm": 72}), json!("x")]);

    // Client asks, server acknowledges.
    let reply = client
        .emit_with_ack("quiz:answer_submit", json!("B"), T)
        .await
        .unwrap();
    assert_eq!(
        reply.values().unwrap(),
        vec![json!({"ok": true, "answer": "B", "namespace": "/"})]
    );

    // Server asks, client acknowledges.
    client.emit("ask", json!("ready?")).await.unwrap();
    let question = next_named(&mut events, "server:question", T).await;
    assert!(question.wants_ack());
    assert_eq!(question.args().unwrap(), vec![json!("ready?")]);
    question.ack(Args::list([json!("yes"), json!(42)])).unwrap();
    let got = next_named(&mut events, "server:got_ack", T).await;
    assert_eq!(got.args().unwrap(), vec![json!("yes"), json!(42)]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_timeout_resolves_once_with_an_error() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    client.connect().await.unwrap();
    // The server handles this event but never calls an ack for it.
    let r = client
        .emit_with_ack("metric:recorded", json!({}), Duration::from_millis(200))
        .await;
    assert_eq!(
        r.unwrap_err(),
        Error::AckTimeout(Duration::from_millis(200))
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_attachments_round_trip_at_any_depth() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();

    let args = Args::with_attachments(
        json!([
            {"frame": pulselink::codec::socketio::placeholder(0), "meta": {"n": 1}},
            [pulselink::codec::socketio::placeholder(1)],
            "text"
        ]),
        vec![vec![1, 2, 3], vec![0xff; 3000]],
    )
    .unwrap()
    .binary(vec![9, 9]);
    let reply = client.emit_with_ack("echo", args, T).await.unwrap();
    assert_eq!(reply.attachments.len(), 3);

    let echo = next_named(&mut events, "echo", T).await;
    assert_eq!(
        echo.attachments(),
        &[vec![1, 2, 3], vec![0xff; 3000], vec![9, 9]]
    );
    let a = echo.args().unwrap();
    assert_eq!(a[0]["meta"], json!({"n": 1}));
    assert_eq!(a[0]["frame"]["_placeholder"], json!(true));
    assert_eq!(a[2], json!("text"));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexes_namespaces_each_with_its_own_connect() {
    let server = NodeServer::start().await;
    let (auth, log) = scripted_auth(&["t1"]);
    let cfg = ClientConfig::new(&server.url())
        .unwrap()
        .with_auth(auth)
        .with_namespaces(["/", "/rooms/r1"]);
    let client = Client::new(cfg).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let r2 = client.socket("/rooms/r2").unwrap();

    let mut welcomed = Vec::new();
    while welcomed.len() < 3 {
        welcomed.push(
            next_named(&mut events, "welcome", T)
                .await
                .namespace()
                .to_owned(),
        );
    }
    welcomed.sort();
    assert_eq!(welcomed, vec!["/", "/rooms/r1", "/rooms/r2"]);
    let mut asked: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.namespace.clone())
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec!["/", "/rooms/r1", "/rooms/r2"],
        "one auth request per namespace"
    );

    r2.emit("echo", json!("in r2")).await.unwrap();
    let echo = next_named(&mut events, "echo", T).await;
    assert_eq!(
        (echo.namespace(), echo.first_arg::<String>().unwrap()),
        ("/rooms/r2", "in r2".into())
    );
    let reply = r2
        .emit_with_ack("quiz:answer_submit", json!(1), T)
        .await
        .unwrap();
    assert_eq!(reply.values().unwrap()[0]["namespace"], json!("/rooms/r2"));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_auth_is_refreshed_once_then_unauthorized() {
    let server = NodeServer::start().await;
    let (auth, log) = scripted_auth(&["bad"]);
    let client = Client::new(config(&server).with_auth(auth)).unwrap();
    let mut notices = client.notices();

    let err = client.connect().await.unwrap_err();
    assert_eq!(
        err,
        Error::Unauthorized {
            namespace: "/".into(),
            message: "Authentication failed".into()
        }
    );
    assert_eq!(
        client.state(),
        State::Unauthorized {
            message: "Authentication failed".into()
        }
    );
    let reasons: Vec<AuthReason> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.reason.clone())
        .collect();
    assert_eq!(
        reasons,
        vec![
            AuthReason::Connect,
            AuthReason::Refresh {
                message: "Authentication failed".into()
            }
        ]
    );
    let mut refusals = Vec::new();
    while let Ok(n) = notices.try_recv() {
        if let Notice::ConnectError { will_retry, .. } = n {
            refusals.push(will_retry);
        }
    }
    assert_eq!(refusals, vec![true, false]);
    // Stopped retrying: no further auth requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log.lock().unwrap().len(), 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_auth_succeeds_with_a_fresh_token() {
    let server = NodeServer::start().await;
    let (auth, log) = scripted_auth(&["stale", "fresh"]);
    let client = Client::new(config(&server).with_auth(auth)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let welcome = next_named(&mut events, "welcome", T).await;
    assert_eq!(
        welcome.first_arg::<Value>().unwrap()["auth"]["token"],
        json!("fresh")
    );
    assert_eq!(log.lock().unwrap().len(), 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expired_refreshes_credentials_and_reconnects() {
    let server = NodeServer::start().await;
    let (auth, log) = scripted_auth(&["first", "second"]);
    let client = Client::new(config(&server).with_auth(auth)).unwrap();
    let mut events = client.events();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    next_named(&mut events, "welcome", T).await;

    client.emit("expire-me", ()).await.unwrap();
    next_named(&mut events, "token:expired", T).await;
    let welcome = next_named(&mut events, "welcome", T).await;
    assert_eq!(
        welcome.first_arg::<Value>().unwrap()["auth"]["token"],
        json!("second")
    );
    assert_eq!(log.lock().unwrap().len(), 2);
    let reason = next_disconnect(&mut notices, T).await;
    assert_eq!(reason, DisconnectReason::TokenExpired);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disconnect_is_final_until_connect() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut states = client.states();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    client.emit("kick-me", ()).await.unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Idle).await;
    let reason = next_disconnect(&mut notices, T).await;
    assert_eq!(reason, DisconnectReason::ServerDisconnect);
    // The app decides to come back.
    client.connect().await.unwrap();
    assert_eq!(client.state(), State::Connected);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_restart_and_flushes_buffered_emits() {
    let mut server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut states = client.states();
    let mut events = client.events();
    client.connect().await.unwrap();

    server.kill().await;
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    // Emits made while down wait in the buffer, in order.
    for i in 0..5 {
        client.emit("echo", json!(i)).await.unwrap();
    }
    server.restart().await;
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    for i in 0..5 {
        let ev = next_named(&mut events, "echo", T).await;
        assert_eq!(ev.first_arg::<i32>().unwrap(), i);
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_connect_failures_are_retried() {
    let mut server = NodeServer::start().await;
    server.kill().await; // keep its port, nothing listening
    let client = Client::new(config(&server)).unwrap();
    let mut states = client.states();
    let mut notices = client.notices();
    client.start().unwrap();
    wait_for_state(
        &mut states,
        T,
        |s| matches!(s, State::Reconnecting { attempt, .. } if *attempt >= 2),
    )
    .await;
    assert!(matches!(
        notices.recv().await.unwrap(),
        Notice::ConnectFailed { .. }
    ));
    server.restart().await;
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_attempts() {
    let mut server = NodeServer::start().await;
    server.kill().await;
    let cfg = config(&server).with_reconnect(fast_policy().with_max_attempts(2));
    let client = Client::new(cfg).unwrap();
    let mut notices = client.notices();
    assert_eq!(
        client.connect().await.unwrap_err(),
        Error::GaveUp { attempts: 2 }
    );
    assert_eq!(client.state(), State::Idle);
    let mut attempts = Vec::new();
    loop {
        match notices.recv().await.unwrap() {
            Notice::ReconnectAttempt { attempt } => attempts.push(attempt),
            Notice::ReconnectFailed { attempts: n } => {
                assert_eq!(n, 2);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(attempts, vec![1, 2]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_a_silent_server_by_heartbeat() {
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: 300,
        ping_timeout: 300,
        ..Default::default()
    })
    .await;
    let client = Client::new(config(&server)).unwrap();
    let mut notices = client.notices();
    let mut states = client.states();
    client.connect().await.unwrap();

    server.pause();
    let started = tokio::time::Instant::now();
    let reason = next_disconnect(&mut notices, T).await;
    assert_eq!(reason, DisconnectReason::PingTimeout);
    // Detected within ping interval + ping timeout (plus the time since the last ping).
    assert!(
        started.elapsed() <= Duration::from_millis(600 + 400),
        "{:?}",
        started.elapsed()
    );
    server.resume();
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_reconnect_stops_everything() {
    let mut server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut states = client.states();
    client.connect().await.unwrap();
    server.kill().await;
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;

    tokio::time::timeout(Duration::from_secs(1), client.close())
        .await
        .expect("close is prompt");
    assert_eq!(client.state(), State::Closed);
    assert_eq!(
        client.emit("echo", json!(1)).await.unwrap_err(),
        Error::Closed
    );
    // Nothing reconnects after close, even when the server is back.
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_hint_pauses_and_resumes_at_once() {
    let server = NodeServer::start().await;
    let cfg = config(&server).with_reconnect(ReconnectPolicy::patient());
    let client = Client::new(cfg).unwrap();
    let mut states = client.states();
    client.connect().await.unwrap();

    client.set_network_available(false).unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Offline).await;
    client.set_network_available(true).unwrap();
    // The patient policy would wait ≥ 0.5 s; the hint skips the backoff.
    let started = tokio::time::Instant::now();
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_outbox_is_bounded_and_volatile_emits_are_dropped() {
    let mut server = NodeServer::start().await;
    server.kill().await;
    let mut cfg = config(&server);
    cfg.outbox.max_entries = 3;
    let client = Client::new(cfg).unwrap();
    client.start().unwrap();
    for i in 0..3 {
        client.emit("echo", json!(i)).await.unwrap();
    }
    assert!(matches!(
        client.emit("echo", json!(3)).await.unwrap_err(),
        Error::OutboxFull { entries: 3, .. }
    ));
    assert!(!client.emit_volatile("echo", json!("v")).unwrap());

    let mut events = client.events();
    server.restart().await;
    for i in 0..3 {
        assert_eq!(
            next_named(&mut events, "echo", T)
                .await
                .first_arg::<i32>()
                .unwrap(),
            i
        );
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_outgoing_catch_all() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let _named = client.on("echo", move |ev| {
        let _ = tx.send(format!("in:{}", ev.args_json()));
    });
    let _out = client.on_any_outgoing(move |ev| {
        let _ = tx2.send(format!("out:{}", ev.name()));
    });
    client.connect().await.unwrap();
    client.emit("echo", json!(7)).await.unwrap();
    let mut seen = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    seen.sort();
    assert_eq!(seen, vec!["in:[7]".to_string(), "out:echo".to_string()]);

    // A cancelled listener is not called again: once another listener has seen the next
    // echo, the cancelled one must have skipped it.
    let mut all = client.events();
    _named.cancel();
    client.emit("echo", json!(8)).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), "out:echo");
    next_named(&mut all, "echo", T).await;
    tokio::task::yield_now().await;
    assert!(rx.try_recv().is_err());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_every_buffer_arrives_complete_and_in_order() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server);
    // A small listener buffer forces the backpressure path (engine stops reading the socket).
    cfg.listener_buffer = 64;
    let client = Client::new(cfg).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    const N: usize = 20_000;
    client.emit_with_ack("blast", json!(N), T).await.unwrap();
    let mut seen = 0;
    let mut batch = Vec::new();
    while seen < N {
        let got = tokio::time::timeout(T, events.recv_many(&mut batch, 256)).await;
        assert!(got.is_ok(), "stalled after {seen} of {N} events");
        for ev in batch.drain(..).filter(|e| e.name() == "metric:recorded") {
            assert_eq!(ev.first_arg::<Value>().unwrap()["value"], json!(142));
            seen += 1;
        }
    }
    assert_eq!(seen, N);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_inbound_message_is_refused_and_the_client_recovers() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server);
    cfg.max_inbound_bytes = 64 * 1024;
    let client = Client::new(cfg).unwrap();
    let mut events = client.events();
    let mut notices = client.notices();
    let mut states = client.states();
    client.connect().await.unwrap();

    let big = "x".repeat(256 * 1024);
    client
        .emit("emit-to-me", json!({"event": "huge", "args": [big]}))
        .await
        .unwrap();
    let reason = next_disconnect(&mut notices, T).await;
    assert!(
        matches!(reason, DisconnectReason::ParseError(ref m) if m.contains("65536")),
        "{reason:?}"
    );
    // It reconnects by itself and works normally.
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    client.emit("echo", json!("after")).await.unwrap();
    let ev = next_named(&mut events, "echo", T).await;
    assert_eq!(ev.first_arg::<String>().unwrap(), "after");
    client.close().await;
}

/// JSON nested a thousand deep (well inside the size limit) is hostile to recursive parsers:
/// it must neither overflow the stack nor cost the connection. It is dropped and counted.
/// With dedup configured the engine reads the first argument, so the frame must be refused
/// before that path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_without_harm() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server);
    cfg.dedup = Some(pulselink::DedupConfig {
        pointer: Some("/id".into()),
        ..Default::default()
    });
    let client = Client::new(cfg).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    // 1,000 deep: far past serde_json's limit of 128, within what the Node server survives.
    client.emit("nest-me", json!(1000)).await.unwrap();
    let mut deep = None;
    loop {
        let ev = tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap();
        match ev.name() {
            "deep" => deep = Some(ev),
            "after-deep" => break,
            _ => {}
        }
    }
    // The codec refuses JSON nested deeper than `codec::json::MAX_DEPTH` (what serde_json,
    // and so `Event::args`, can parse), so the event is dropped and counted: neither the app
    // nor a binding's recursive parser ever sees it.
    let metrics = client.metrics().await.unwrap();
    assert!(deep.is_none(), "delivered: {deep:?}");
    assert_eq!(metrics.invalid_dropped, 1, "{metrics:?}");
    assert_eq!(metrics.connects, 1, "the connection survived");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_over_the_servers_max_payload_fails_alone() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    // The server's maxPayload is 1,000,000 bytes: a larger packet would get the whole session
    // closed, so it is refused before it is written.
    let big = "y".repeat(1_100_000);
    let err = client
        .emit_with_ack("echo", json!(big), T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgs(ref m) if m.contains("1000000")),
        "{err:?}"
    );
    client.emit("echo", json!("small")).await.unwrap();
    assert_eq!(
        next_named(&mut events, "echo", T)
            .await
            .first_arg::<String>()
            .unwrap(),
        "small"
    );
    assert_eq!(client.state(), State::Connected);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_connect_is_left_within_the_timeout() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server).with_static_auth(json!({"token": "hang"}));
    cfg.connect_timeout = Duration::from_millis(300);
    let client = Client::new(cfg).unwrap();
    let mut notices = client.notices();
    let mut states = client.states();
    client.start().unwrap();
    let reason = next_disconnect(&mut notices, T).await;
    assert!(
        matches!(reason, DisconnectReason::TransportError(ref m) if m.contains("CONNECT")),
        "{reason:?}"
    );
    // It keeps retrying rather than giving up.
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_no_task_behind() {
    let mut server = NodeServer::start().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let client = Client::new(config(&server)).unwrap();
    let listener = client.on_any(|_| {});
    let mut states = client.states();
    client.connect().await.unwrap();
    assert!(
        metrics.num_alive_tasks() >= before + 2,
        "engine and listener tasks run"
    );

    server.kill().await;
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    client.close().await;
    drop(listener);
    // The engine has returned when close() returns; the aborted listener task is reaped by
    // the runtime right after.
    let settled = tokio::time::timeout(T, async {
        while metrics.num_alive_tasks() > before {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} tasks still alive",
        metrics.num_alive_tasks() - before
    );
}

/// Microseconds between the frames of `trickle`: a stream slower than the reader (even a
/// debug build's) whose gaps are far shorter than a wake-up is worth.
const TRICKLE_GAP_US: u64 = 50;

/// Frames `trickle` sends per test stream: a second of stream.
const TRICKLED: u64 = 20_000;

/// Starts `trickle` (`TRICKLED` frames the server writes one at a time, `TRICKLE_GAP_US`
/// apart) and a task that reads them as an app reading a firehose does; the task ends with
/// the stream, and `seen` counts what it read so far.
async fn trickle(client: &Client) -> (tokio::task::JoinHandle<()>, watch::Receiver<u64>) {
    let mut events = client.events();
    let (count, seen) = watch::channel(0);
    client
        .emit_with_ack(
            "trickle",
            Args::list([json!(TRICKLED), json!(TRICKLE_GAP_US)]),
            T,
        )
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(512);
        let mut n = 0;
        while n < TRICKLED {
            let got = tokio::time::timeout(T, events.recv_many(&mut batch, 512))
                .await
                .expect("the trickled events arrive");
            assert!(got > 0, "the stream ended after {n} events");
            n += batch
                .drain(..)
                .filter(|e| e.name() == "metric:recorded")
                .count() as u64;
            count.send_replace(n);
        }
    });
    (reader, seen)
}

/// Read pacing (`ClientConfig::read_hold`) against a stream the server pushes: it is held —
/// its frames gather between reads, which come far less often than with pacing off — except
/// while the client awaits an answer, which no hold delays; answers to the client's own
/// requests are never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_is_read_in_batches_and_answers_at_once() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server)).unwrap();
    client.connect().await.unwrap();

    // Request and answer, 300 times in a row: each answer is read at once.
    for i in 0..300 {
        client
            .emit_with_ack("quiz:answer_submit", json!(i), T)
            .await
            .unwrap();
    }
    let asked = client.metrics().await.unwrap();
    assert!(asked.inbound_reads >= 300, "{asked:?}");
    assert_eq!(asked.held_reads, 0, "an answer waited for a hold");

    // A stream flows; an acknowledgement awaited in its middle (the server answers after
    // 100 ms) holds nothing back meanwhile.
    let (reader, mut seen) = trickle(&client).await;
    seen.wait_for(|&n| n >= TRICKLED / 10).await.unwrap();
    let before = client.metrics().await.unwrap();
    let reply = client
        .emit_with_ack("ack-later", json!(100), T)
        .await
        .unwrap();
    assert_eq!(reply.values().unwrap(), vec![json!("later")]);
    let after = client.metrics().await.unwrap();
    // At most one: a hold that ended between the snapshot and the emit's write.
    assert!(
        after.held_reads - before.held_reads <= 1,
        "reads held while an ack was awaited: {before:?} {after:?}"
    );
    reader.await.unwrap();
    let held = client.metrics().await.unwrap();
    assert!(held.held_reads > 0, "the stream was never held: {held:?}");
    client.close().await;

    // The same stream with pacing off: nothing held, and read far more often.
    let mut unheld = config(&server);
    unheld.read_hold = Duration::ZERO;
    let client = Client::new(unheld).unwrap();
    client.connect().await.unwrap();
    let start = client.metrics().await.unwrap();
    let (reader, _) = trickle(&client).await;
    reader.await.unwrap();
    let plain = client.metrics().await.unwrap();
    assert_eq!(plain.held_reads, 0, "{plain:?}");
    let held_reads = held.inbound_reads - asked.inbound_reads;
    let plain_reads = plain.inbound_reads - start.inbound_reads;
    assert!(
        2 * held_reads < plain_reads,
        "held: {held_reads} reads, not held: {plain_reads}"
    );
    client.close().await;
}
