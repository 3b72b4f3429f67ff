//! HTTP long-polling against the official Node Socket.IO server: polling only, polling with
//! the upgrade to WebSocket, WebSocket refused and polling as the fallback, and the outbox
//! across a server restart over polling.

use std::time::Duration;

use pulselink::{Args, Client, ClientConfig, EmitOptions, State, Transports};
use pulselink_tests::{
    FaultProxy, NodeServer, ServerOptions, fast_reconnect, next_named, read_ledger, scratch,
    wait_for_state,
};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn config(server: &NodeServer, transports: Transports) -> ClientConfig {
    ClientConfig::new(&server.url())
        .unwrap()
        .with_transports(transports)
        .with_reconnect(fast_reconnect())
}

/// The Engine.IO transport the server says this session uses now.
async fn server_transport(client: &Client) -> String {
    let reply = client.emit_with_ack("transport?", (), T).await.unwrap();
    reply.args_as::<(String,)>().unwrap().0
}

fn polling_only_server() -> ServerOptions {
    ServerOptions {
        // Several heartbeats within the test: pings arrive on GETs, pongs leave on POSTs.
        ping_interval: 200,
        ping_timeout: 400,
        transports: Some("polling"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_carries_events_acks_binary_and_heartbeats() {
    let server = NodeServer::start_with(polling_only_server()).await;
    let client = Client::new(config(&server, Transports::Polling)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    next_named(&mut events, "welcome", T).await;
    assert_eq!(server_transport(&client).await, "polling");

    let reply = client
        .emit_with_ack("quiz:answer_submit", json!("A"), T)
        .await
        .unwrap();
    assert_eq!(
        reply.args_as::<(serde_json::Value,)>().unwrap().0["answer"],
        "A"
    );

    // Binary travels base64-encoded in polling payloads and comes back intact.
    let blob: Vec<u8> = (0..=255).collect();
    let args = Args::with_attachments(
        json!([{"_placeholder": true, "num": 0}]),
        vec![blob.clone()],
    )
    .unwrap();
    client.emit("echo", args).await.unwrap();
    let echo = next_named(&mut events, "echo", T).await;
    assert_eq!(echo.attachments(), [blob]);

    // Well past ping interval + timeout: only answered pings keep the session alive.
    let mut states = client.states();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(*states.borrow_and_update(), State::Connected);
    assert!(!states.has_changed().unwrap(), "no reconnect happened");
    assert_eq!(client.metrics().await.unwrap().reconnects, 0);

    // Many emits at once leave in batched POSTs, in order.
    for n in 0..300 {
        client
            .emit("emit-to-me", json!({"event": "seq", "args": [n]}))
            .await
            .unwrap();
    }
    for n in 0..300 {
        let ev = next_named(&mut events, "seq", T).await;
        assert_eq!(ev.args_as::<(u32,)>().unwrap().0, n);
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_upgrades_to_websocket_without_losing_or_reordering_anything() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server, Transports::PollingThenUpgrade)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    // Traffic in flight while the upgrade happens.
    for n in 0..200 {
        client
            .emit("emit-to-me", json!({"event": "seq", "args": [n]}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut upgraded = false;
    while seen.len() < 200 || !upgraded {
        let ev = tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap();
        match ev.name() {
            "seq" => seen.push(ev.args_as::<(u32,)>().unwrap().0),
            "upgraded" => upgraded = true,
            _ => {}
        }
    }
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_eq!(server_transport(&client).await, "websocket");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_settings_fall_back_to_polling_where_websocket_is_refused() {
    let server = NodeServer::start_with(polling_only_server()).await;
    // Nothing configured but the URL: the default transport falls back by itself.
    let client = Client::new(ClientConfig::new(&server.url()).unwrap()).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let welcome = next_named(&mut events, "welcome", T).await;
    assert_eq!(welcome.args().unwrap()[0]["namespace"], "/");
    assert_eq!(server_transport(&client).await, "polling");
    client.close().await;

    // WebSocket only, against the same server: a clear failure that says what helps, not a
    // hang.
    let mut ws_only = config(&server, Transports::WebSocket);
    ws_only.reconnect.enabled = false;
    let client = Client::new(ws_only).unwrap();
    let err = client.connect().await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 400 on WebSocket upgrade")
            && err.contains("may not allow WebSocket")
            && err.contains("WebSocketThenFallback"),
        "{err}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_server_restart_over_polling() {
    let (_dir, ledger, store) = scratch("polling-outbox");
    let mut server = NodeServer::start_with(ServerOptions {
        ledger: Some(ledger.clone()),
        ..polling_only_server()
    })
    .await;
    let client = Client::new(config(&server, Transports::Polling).with_store(&store)).unwrap();
    let mut states = client.states();
    client.connect().await.unwrap();
    client
        .emit_with("tick", json!({"n": 0}), EmitOptions::default().confirm())
        .await
        .unwrap();
    client.outbox().drained().await.unwrap();

    server.kill().await;
    wait_for_state(&mut states, T, |s| matches!(s, State::Reconnecting { .. })).await;
    for n in 1..=5 {
        client
            .emit_with("tick", json!({"n": n}), EmitOptions::default().confirm())
            .await
            .unwrap();
    }
    server.restart().await;
    tokio::time::timeout(T, client.outbox().drained())
        .await
        .unwrap()
        .unwrap();
    let ticks: Vec<u64> = read_ledger(&ledger).iter().map(|l| l.n).collect();
    assert_eq!(ticks, [0, 1, 2, 3, 4, 5]);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_and_headers_go_with_every_request_of_the_session() {
    let server = NodeServer::start_with(ServerOptions {
        cookie: true,
        ..polling_only_server()
    })
    .await;
    let mut config = config(&server, Transports::Polling);
    config.headers = vec![("x-api-key".into(), "k1".into())];
    let client = Client::new(config).unwrap();
    client.connect().await.unwrap();
    for n in 0..5 {
        client
            .emit_with_ack("quiz:answer_submit", json!(n), T)
            .await
            .unwrap();
    }
    let reply = client.emit_with_ack("requests?", (), T).await.unwrap();
    let seen = reply.args_as::<(serde_json::Value,)>().unwrap().0;
    let requests = seen["sessionRequests"].as_u64().unwrap();
    assert!(requests >= 6, "{seen}");
    assert_eq!(
        seen["withCookie"], requests,
        "the sticky cookie on every request: {seen}"
    );
    assert_eq!(
        seen["withApiKey"], requests,
        "the configured header on every request: {seen}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_server_is_a_clear_failure_on_both_transports() {
    // The server speaks plain HTTP: the TLS handshake fails. (Before rustls had a crypto
    // provider this panicked in the engine task.)
    let server = NodeServer::start().await;
    let https = server.url().replace("http://", "https://");
    for transports in [Transports::WebSocket, Transports::Polling] {
        let config = ClientConfig {
            connect_wait: Duration::from_millis(300),
            ..ClientConfig::new(&https)
                .unwrap()
                .with_transports(transports)
        };
        let client = Client::new(config).unwrap();
        let mut notices = client.notices();
        assert!(client.connect().await.is_err());
        let error = pulselink_tests::next_notice(&mut notices, T, |n| match n {
            pulselink::Notice::ConnectFailed { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .await;
        // rustls: "received corrupt message of type InvalidContentType" (HTTP is not TLS).
        assert!(
            error.contains("InvalidContentType"),
            "{transports:?}: {error}"
        );
        client.close().await;
    }
}

/// A server taking both transports behind a proxy that swallows WebSocket upgrades (no answer,
/// no close), as some corporate proxies do.
async fn server_behind_a_websocket_black_hole() -> (NodeServer, FaultProxy) {
    let server = NodeServer::start_with(ServerOptions {
        ping_interval: 200,
        ping_timeout: 400,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await;
    proxy.set(|f| f.blackhole_websocket_upgrades = true);
    (server, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_websocket_falls_back_to_polling_within_the_connect_timeout() {
    let (_server, proxy) = server_behind_a_websocket_black_hole().await;
    let connect_timeout = Duration::from_secs(1);
    // The default transport: WebSocket, falling back to polling.
    let config = ClientConfig {
        connect_timeout,
        ..ClientConfig::new(&proxy.url()).unwrap()
    };
    let client = Client::new(config).unwrap();
    let started = std::time::Instant::now();
    client.connect().await.unwrap();
    let took = started.elapsed();
    println!("black-holed WebSocket: connected over polling after {took:?}");
    // The WebSocket attempt has half the connect timeout; polling connects within the rest.
    assert!(took >= connect_timeout / 2, "{took:?}");
    assert!(took < connect_timeout, "{took:?}");
    assert_eq!(server_transport(&client).await, "polling");
    let reply = client
        .emit_with_ack("quiz:answer_submit", json!("C"), T)
        .await
        .unwrap();
    assert_eq!(
        reply.args_as::<(serde_json::Value,)>().unwrap().0["answer"],
        "C"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_upgrade_leaves_polling_working() {
    let (_server, proxy) = server_behind_a_websocket_black_hole().await;
    let config = ClientConfig::new(&proxy.url())
        .unwrap()
        .with_transports(Transports::PollingThenUpgrade);
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    // The probe hangs in the black hole; meanwhile polling carries everything, in order,
    // across several heartbeats (200 ms interval).
    for n in 0..20u32 {
        client
            .emit("emit-to-me", json!({"event": "seq", "args": [n]}))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let ev = next_named(&mut events, "seq", T).await;
        seen.push(ev.args_as::<(u32,)>().unwrap().0);
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert_eq!(server_transport(&client).await, "polling");
    assert_eq!(client.state(), State::Connected);
    assert_eq!(
        proxy.swallowed_upgrades(),
        1,
        "the upgrade probe was attempted (and hung), once"
    );
    client.close().await;
}
