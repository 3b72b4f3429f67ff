//! The JSON-envelope protocol against a real envelope WebSocket server
//! (`tests/node/envelope-server.js`): auth accepted, refreshed and refused; requests
//! correlated by `requestId`; the client's heartbeat; the server's rate limit; subscriptions
//! replayed and the outbox flushed after a server restart; de-duplication by envelope id; and
//! invalid messages counted rather than fatal. Same engine, outbox and filter as Socket.IO.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pulselink::{
    AuthReason, AuthRequest, Client, ClientConfig, DisconnectReason, EnvelopeOptions, Error,
    Notice, Protocol, State,
};
use pulselink_tests::{
    HEARTBEAT_MARGIN, NodeServer, ServerOptions, fast_reconnect, next_named, next_notice, scratch,
    wait_for_state,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

async fn envelope_server(rate_limit: Option<(u32, u64)>) -> NodeServer {
    NodeServer::start_with(ServerOptions {
        envelope: true,
        rate_limit,
        ..Default::default()
    })
    .await
}

fn config(server: &NodeServer, ping: EnvelopeOptions) -> ClientConfig {
    ClientConfig::new(&server.ws_url())
        .unwrap()
        .with_protocol(Protocol::Envelope(ping))
        .with_static_auth(json!({"token": "good", "userId": "u1", "sessionId": "s1"}))
        .with_reconnect(fast_reconnect())
}

fn default_config(server: &NodeServer) -> ClientConfig {
    config(server, EnvelopeOptions::default())
}

/// The server's counters (answered to a `stats?` request).
async fn stats(client: &Client) -> Value {
    let reply = client.emit_with_ack("stats?", (), T).await.unwrap();
    reply.args_as::<(Value,)>().unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_requests_and_subscriptions_round_trip() {
    let server = envelope_server(None).await;
    let client = Client::new(default_config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();

    // A request resolves with the response carrying its requestId; `args` is `[data]`.
    let reply = client
        .emit_with_ack("echo", json!({"bpm": 142}), T)
        .await
        .unwrap();
    assert_eq!(reply.args_as::<(Value,)>().unwrap().0, json!({"bpm": 142}));
    // The server's own message of type `echo` arrives as an event named by its type, with
    // the envelope id as the event's id.
    let ev = next_named(&mut events, "echo", T).await;
    assert_eq!(ev.args_as::<(Value,)>().unwrap().0, json!({"bpm": 142}));
    assert!(ev.id().is_some_and(|id| id.starts_with("srv-")));

    // Subscriptions are messages; the server only publishes to subscribers.
    client
        .subscribe(
            "subscribe",
            json!({"eventTypes": ["scores:updated"]}),
            Some("unsubscribe"),
        )
        .await
        .unwrap();
    let reply = client
        .emit_with_ack(
            "publish",
            json!({"type": "scores:updated", "data": {"home": 2}}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.args_as::<(Value,)>().unwrap().0["delivered"], 1);
    let ev = next_named(&mut events, "scores:updated", T).await;
    assert_eq!(ev.args_as::<(Value,)>().unwrap().0, json!({"home": 2}));

    // A response with success:false is a clear error, not an answer.
    let err = client.emit_with_ack("reject-me", (), T).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { code, .. } if code == "INVALID_MESSAGE_FORMAT"),
        "{err:?}"
    );
    // Binary attachments have no envelope encoding: refused before anything is stored.
    let bin = pulselink::Args::with_attachments(
        json!([{"_placeholder": true, "num": 0}]),
        vec![vec![1, 2, 3]],
    )
    .unwrap();
    assert!(matches!(
        client.emit("echo", bin).await,
        Err(Error::InvalidArgs(_))
    ));
    assert!(matches!(
        client.socket("/rooms/r1"),
        Err(Error::InvalidConfig(_))
    ));
    let s = stats(&client).await;
    assert_eq!(s["authTokens"], json!(["good"]));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refreshed_once_then_the_refusal_is_final() {
    let server = envelope_server(None).await;

    // "stale" is refused (and the server closes); the provider's fresh token is accepted.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let provider = move |req: AuthRequest| {
        let log = log.clone();
        async move {
            let token = match req.reason {
                AuthReason::Connect => "stale",
                AuthReason::Refresh { .. } => "good",
            };
            log.lock().unwrap().push(req.reason);
            Ok(Some(json!({"token": token, "userId": "u1"})))
        }
    };
    let client = Client::new(default_config(&server).with_auth(provider)).unwrap();
    client.connect().await.unwrap();
    {
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert_eq!(asked[0], AuthReason::Connect);
        assert!(
            matches!(asked[1], AuthReason::Refresh { ref message } if message == "Invalid token")
        );
    }
    client.close().await;

    // Always "bad": asked twice (connect, refresh), then Unauthorized with no retry loop.
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    let provider = move |_: AuthRequest| {
        let c = c.clone();
        async move {
            *c.lock().unwrap() += 1;
            Ok(Some(json!({"token": "bad"})))
        }
    };
    let client = Client::new(default_config(&server).with_auth(provider)).unwrap();
    let err = client.connect().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { ref message, .. } if message == "Invalid token"),
        "{err:?}"
    );
    assert!(matches!(client.state(), State::Unauthorized { .. }));
    assert_eq!(*count.lock().unwrap(), 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pong_is_a_dead_link_within_interval_plus_timeout() {
    let server = envelope_server(None).await;
    let ping = EnvelopeOptions {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
    };
    let client = Client::new(config(&server, ping)).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    // Several heartbeats pass while the server answers them: no false timeout.
    let reply = client.emit_with_ack("echo", json!(1), T).await.unwrap();
    assert_eq!(reply.args_as::<(i32,)>().unwrap().0, 1);

    client.emit_with_ack("mute-pongs", (), T).await.unwrap();
    let muted = Instant::now();
    next_notice(&mut notices, T, |n| match n {
        Notice::Disconnected {
            reason: DisconnectReason::PingTimeout,
        } => Some(()),
        Notice::Disconnected { reason } => panic!("disconnected for {reason:?}"),
        _ => None,
    })
    .await;
    let detected = muted.elapsed();
    let limit = ping.ping_interval + ping.ping_timeout + HEARTBEAT_MARGIN;
    println!("envelope heartbeat: dead link detected after {detected:?} (limit {limit:?})");
    assert!(detected <= limit, "{detected:?}");
    // The fresh connection answers pings again.
    next_notice(&mut notices, T, |n| {
        matches!(n, Notice::Connected { .. }).then_some(())
    })
    .await;
    assert_eq!(client.metrics().await.unwrap().reconnects, 1);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_pauses_sending_until_reset_and_loses_nothing() {
    const WINDOW_MS: u64 = 400;
    let server = envelope_server(Some((5, WINDOW_MS))).await;
    let client = Client::new(default_config(&server)).unwrap();
    client.connect().await.unwrap();
    let started = Instant::now();
    let acks = (1..=15).map(|n| client.emit_with_ack("tick", json!({"n": n}), T));
    for r in futures_util::future::join_all(acks).await {
        r.unwrap();
    }
    let took = started.elapsed();
    let s = stats(&client).await;
    // Every tick accepted exactly once, in order, though most were first refused.
    assert_eq!(s["ticks"], json!((1..=15).collect::<Vec<_>>()));
    assert_eq!(s["duplicateTicks"], 0);
    let refused = s["refusedTicks"].as_u64().unwrap();
    let m = client.metrics().await.unwrap();
    println!(
        "envelope rate limit: 15 ticks at 5 per {WINDOW_MS} ms took {took:?}, {refused} refused, \
         {} pauses",
        m.rate_limit_pauses
    );
    assert!(m.rate_limit_pauses >= 1);
    // Three windows are needed; a client that ignored resetTime would retry at once and be
    // refused over and over.
    assert!(
        took >= Duration::from_millis(2 * WINDOW_MS - 50),
        "{took:?}"
    );
    assert!(refused > 0 && refused <= 15, "{refused} refused");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_replays_subscriptions_before_the_outbox() {
    let mut server = envelope_server(None).await;
    let (_dir, _ledger, store) = scratch("envelope-restart");
    let client = Client::new(default_config(&server).with_store(&store)).unwrap();
    let mut events = client.events();
    let mut states = client.states();
    client.connect().await.unwrap();
    client
        .subscribe(
            "subscribe",
            json!({"eventTypes": ["winner:selected"]}),
            None,
        )
        .await
        .unwrap();

    server.kill().await;
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    // Emitted while the server is down: stored, sent after the subscription on reconnect.
    for n in 1..=3 {
        client.emit("tick", json!({"n": n})).await.unwrap();
    }
    server.restart().await;
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;

    // The restarted server knows the subscription only if the client replayed it.
    let reply = client
        .emit_with_ack(
            "publish",
            json!({"type": "winner:selected", "data": {"roomId": "r1"}}),
            T,
        )
        .await
        .unwrap();
    assert_eq!(reply.args_as::<(Value,)>().unwrap().0["delivered"], 1);
    next_named(&mut events, "winner:selected", T).await;
    let s = stats(&client).await;
    assert_eq!(s["ticks"], json!([1, 2, 3]));
    let arrivals: Vec<&str> = s["arrivals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| *t != "ping")
        .collect();
    assert_eq!(
        arrivals[..4],
        ["subscribe", "tick", "tick", "tick"],
        "{arrivals:?}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_envelope_ids_are_dropped_also_after_a_restart() {
    let server = envelope_server(None).await;
    let (_dir, _ledger, store) = scratch("envelope-dedup");
    let repeat = json!({"type": "metric:recorded", "id": "m-1", "data": {"bpm": 120}});
    let marker = json!({"type": "marker", "data": null});
    {
        let client = Client::new(default_config(&server).with_store(&store)).unwrap();
        let mut events = client.events();
        client.connect().await.unwrap();
        for _ in 0..2 {
            client
                .emit_with_ack("emit-to-me", repeat.clone(), T)
                .await
                .unwrap();
        }
        client
            .emit_with_ack("emit-to-me", marker.clone(), T)
            .await
            .unwrap();
        let first = events.recv().await.unwrap();
        assert_eq!((first.name(), first.id()), ("metric:recorded", Some("m-1")));
        // The repeat was dropped: the next event is the marker.
        assert_eq!(events.recv().await.unwrap().name(), "marker");
        assert_eq!(client.metrics().await.unwrap().duplicates_dropped, 1);
        client.close().await;
    }
    // A new process with the same store remembers the id.
    let client = Client::new(default_config(&server).with_store(&store)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    client.emit_with_ack("emit-to-me", repeat, T).await.unwrap();
    client.emit_with_ack("emit-to-me", marker, T).await.unwrap();
    assert_eq!(events.recv().await.unwrap().name(), "marker");
    assert_eq!(client.metrics().await.unwrap().duplicates_dropped, 1);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_counted_and_reported_not_fatal() {
    let server = envelope_server(None).await;
    let client = Client::new(default_config(&server)).unwrap();
    let mut events = client.events();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    let bad = [
        "not json",
        r#"{"type":"metric:recorded","timestamp":"2026-01-01T00:00:00Z"}"#,
        r#"{"id":"x1","type":"metric:recorded","timestamp":"yesterday"}"#,
        r#"{"id":"x2","type":42,"timestamp":"2026-01-01T00:00:00Z"}"#,
    ];
    for raw in bad {
        client
            .emit_with_ack("emit-to-me", json!({"raw": raw}), T)
            .await
            .unwrap();
    }
    client
        .emit_with_ack(
            "emit-to-me",
            json!({"type": "metric:recorded", "data": 1}),
            T,
        )
        .await
        .unwrap();
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.name(), "metric:recorded");
    assert_eq!(ev.args_as::<(i32,)>().unwrap().0, 1);
    let mut reported = Vec::new();
    while reported.len() < bad.len() {
        reported.push(
            next_notice(&mut notices, T, |n| match n {
                Notice::InvalidMessage { error } => Some(error),
                _ => None,
            })
            .await,
        );
    }
    assert!(reported[1].contains("id is missing"), "{reported:?}");
    assert!(reported[2].contains("ISO-8601"), "{reported:?}");
    let m = client.metrics().await.unwrap();
    assert_eq!(m.invalid_dropped, 4);
    assert_eq!((m.connects, m.state), (1, State::Connected));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_backs_off_and_reconnects() {
    let server = envelope_server(None).await;
    let client = Client::new(default_config(&server)).unwrap();
    let mut events = client.events();
    let mut notices = client.notices();
    let mut states = client.states();
    client.connect().await.unwrap();
    client
        .emit(
            "fail",
            json!({"code": "SERVICE_UNAVAILABLE", "message": "maintenance"}),
        )
        .await
        .unwrap();
    // The app sees the error as an event, and the client treats it as a lost link.
    let ev = next_named(&mut events, "error", T).await;
    assert_eq!(
        ev.args_as::<(Value,)>().unwrap().0["code"],
        "SERVICE_UNAVAILABLE"
    );
    let reason = next_notice(&mut notices, T, |n| match n {
        Notice::Disconnected { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(
        reason,
        DisconnectReason::ServerError {
            code: "SERVICE_UNAVAILABLE".into(),
            message: "maintenance".into()
        }
    );
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    wait_for_state(&mut states, T, |s| *s == State::Connected).await;
    assert_eq!(client.metrics().await.unwrap().reconnects, 1);
    client.close().await;
}

/// The benchmark's hooks on the envelope server, which its rows rely on: `blast N` writes N
/// pre-encoded events straight onto the socket, each a well-formed frame with an id of its
/// own (none is refused as invalid or dropped as a repeat), and `count?` answers how many
/// benchmark events the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_hooks_deliver_distinct_events_and_count_sends() {
    const N: usize = 5_000;
    const EVENT: &str = "metric:recorded";
    let server = envelope_server(None).await;
    let client = Client::new(default_config(&server)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    client.emit_with_ack("blast", json!(N), T).await.unwrap();
    let mut ids = std::collections::HashSet::new();
    while ids.len() < N {
        let ev = tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.name(), EVENT);
        assert_eq!(ev.first_arg::<Value>().unwrap()["metric"], "heart_rate");
        assert!(
            ids.insert(ev.id().unwrap().to_owned()),
            "a repeated id: {:?}",
            ev.id()
        );
    }
    let m = client.metrics().await.unwrap();
    assert_eq!((m.duplicates_dropped, m.invalid_dropped), (0, 0));
    for i in 0..3 {
        client.emit(EVENT, json!({"n": i})).await.unwrap();
    }
    let count = client.emit_with_ack("count?", (), T).await.unwrap();
    assert_eq!(count.values().unwrap()[0], 3);
    client.close().await;
}
