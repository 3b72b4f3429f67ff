//! Credentials never leak: tokens, auth payloads, secret URL query values and header values
//! appear in no log line (captured at TRACE), no `Debug` or `Display` of the configuration,
//! errors, notices, states or metrics — across connects, refusals, refreshes and both
//! protocols.

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use pulselink::{
    AuthRequest, Client, ClientConfig, EnvelopeOptions, Protocol, ProxyConfig, ReconnectPolicy,
    Transports,
};
use pulselink_tests::{NodeServer, ServerOptions, proxies::ProxyServer};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// The secrets the test plants (`SECRET-…-0` to `SECRET-…-12`).
const PLANTED: usize = 13;

/// Asserts the handshake's credentials reached the server over `transport`.
async fn reached(client: &Client, transport: &str, query: &str, header: &str, token: &str) {
    let seen = client
        .emit_with_ack("handshake?", (), T)
        .await
        .unwrap()
        .args_as::<(Value,)>()
        .unwrap()
        .0;
    assert_eq!(seen["transport"], transport, "{seen}");
    assert_eq!(seen["query"]["apiKey"], query, "{seen}");
    assert_eq!(seen["authorization"], format!("Bearer {header}"), "{seen}");
    assert_eq!(seen["auth"]["token"], token, "{seen}");
}

/// Every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An auth provider answering with `answers` in turn (the last one repeated).
fn provider(
    answers: Vec<Value>,
) -> impl Fn(AuthRequest) -> std::future::Ready<Result<Option<Value>, String>> + Send + Sync {
    let calls = AtomicU32::new(0);
    move |_| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        std::future::ready(Ok(Some(answers[n.min(answers.len() - 1)].clone())))
    }
}

fn fast(config: ClientConfig) -> ClientConfig {
    config.with_reconnect(ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..ReconnectPolicy::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_debug_output_errors_or_metrics() {
    let logs = Captured::default();
    let writer = logs.clone();
    // TRACE for everything, as an app debugging a connection would set it, except the
    // WebSocket library's frame dumps (see `TRACE_SAFE_FILTER`).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "trace,{}",
            pulselink::TRACE_SAFE_FILTER
        )))
        .with_writer(move || writer.clone())
        .init();
    // Everything the app could print about the client, besides the logs.
    let mut shown = String::new();

    // Socket.IO: a refused first token (with a secret beside it), then an accepted one; a
    // secret in the URL's query and in a header.
    let server = NodeServer::start().await;
    let mut config =
        fast(ClientConfig::new(&format!("{}/?apiKey=SECRET-URL-0", server.url())).unwrap());
    config
        .headers
        .push(("authorization".into(), "Bearer SECRET-HEADER-1".into()));
    let config = config.with_auth(provider(vec![
        json!({"token": "bad", "pin": "SECRET-AUTH-2"}),
        json!({"token": "SECRET-TOKEN-3"}),
    ]));
    shown += &format!("{config:?}\n");
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    client
        .emit_with_ack("quiz:answer_submit", json!("A"), T)
        .await
        .unwrap();
    reached(
        &client,
        "websocket",
        "SECRET-URL-0",
        "SECRET-HEADER-1",
        "SECRET-TOKEN-3",
    )
    .await;
    shown += &format!(
        "{:?}\n{:?}\n",
        client.state(),
        client.metrics().await.unwrap()
    );
    client.close().await;
    while let Ok(n) = notices.try_recv() {
        shown += &format!("{n:?}\n");
    }

    // Long-polling, where the URL's secret and the header go with every request.
    let mut config = fast(
        ClientConfig::new(&format!("{}/?apiKey=SECRET-URL-8", server.url()))
            .unwrap()
            .with_transports(Transports::Polling),
    );
    config
        .headers
        .push(("authorization".into(), "Bearer SECRET-HEADER-9".into()));
    let config = config.with_static_auth(json!({"token": "SECRET-TOKEN-10"}));
    shown += &format!("{config:?}\n");
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    for n in 0..20 {
        client
            .emit_with_ack("echo", json!({ "n": n }), T)
            .await
            .unwrap();
    }
    reached(
        &client,
        "polling",
        "SECRET-URL-8",
        "SECRET-HEADER-9",
        "SECRET-TOKEN-10",
    )
    .await;
    shown += &format!("{:?}\n", client.metrics().await.unwrap());
    client.close().await;
    while let Ok(n) = notices.try_recv() {
        shown += &format!("{n:?}\n");
    }

    // Refused for good: the error and every notice on the way.
    let config = fast(ClientConfig::new(&server.url()).unwrap()).with_auth(provider(vec![
        json!({"token": "bad", "pin": "SECRET-AUTH-4"}),
    ]));
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    let err = client.connect().await.unwrap_err();
    shown += &format!("{err}\n{err:?}\n{:?}\n", client.state());
    client.close().await;
    while let Ok(n) = notices.try_recv() {
        shown += &format!("{n:?}\n");
    }

    // The envelope protocol: a refused token, then a good one, both beside a secret session id.
    let envelope = NodeServer::start_with(ServerOptions {
        envelope: true,
        ..Default::default()
    })
    .await;
    let config = fast(ClientConfig::new(&envelope.ws_url()).unwrap())
        .with_protocol(Protocol::Envelope(EnvelopeOptions::default()))
        .with_auth(provider(vec![
            json!({"token": "stale", "sessionId": "SECRET-SESSION-5"}),
            json!({"token": "SECRET-TOKEN-6", "sessionId": "SECRET-SESSION-7"}),
        ]));
    shown += &format!("{config:?}\n");
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();
    client
        .emit_with_ack("echo", json!({"n": 1}), T)
        .await
        .unwrap();
    let stats = client
        .emit_with_ack("stats?", json!(null), T)
        .await
        .unwrap()
        .args_as::<(Value,)>()
        .unwrap()
        .0;
    assert!(
        stats["authTokens"]
            .as_array()
            .unwrap()
            .contains(&json!("SECRET-TOKEN-6")),
        "the envelope token reached the server: {stats}"
    );
    shown += &format!("{:?}\n", client.metrics().await.unwrap());
    client.close().await;
    while let Ok(n) = notices.try_recv() {
        shown += &format!("{n:?}\n");
    }

    // A proxy's password: accepted (a CONNECT tunnel for WebSocket, a header on every
    // forwarded polling request), and a wrong one refused.
    let proxy = ProxyServer::http_with("ann", "SECRET-PROXY-11").await;
    for transports in [Transports::WebSocket, Transports::Polling] {
        let before = proxy.carried(server.port());
        let config = fast(ClientConfig::new(&server.url()).unwrap())
            .with_transports(transports)
            .with_proxy(ProxyConfig::via(&proxy.url_with_credentials()).unwrap());
        shown += &format!("{config:?}\n");
        let client = Client::new(config).unwrap();
        let mut notices = client.notices();
        client.connect().await.unwrap();
        client
            .emit_with_ack("echo", json!({"via": "proxy"}), T)
            .await
            .unwrap();
        assert!(
            proxy.carried(server.port()) > before,
            "the password reached the proxy ({transports:?})"
        );
        shown += &format!("{:?}\n", client.metrics().await.unwrap());
        client.close().await;
        while let Ok(n) = notices.try_recv() {
            shown += &format!("{n:?}\n");
        }
    }
    let mut config = fast(ClientConfig::new(&server.url()).unwrap())
        .with_proxy(ProxyConfig::via(&proxy.url_with("ann", "SECRET-PROXY-12")).unwrap());
    config.connect_wait = Duration::from_millis(500);
    shown += &format!("{config:?}\n");
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    let err = client.connect().await.unwrap_err();
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    shown += &format!("{err}\n{err:?}\n{:?}\n", client.state());
    client.close().await;
    while let Ok(n) = notices.try_recv() {
        shown += &format!("{n:?}\n");
    }

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // On the wire a proxy password travels base64-encoded (`Proxy-Authorization: Basic`):
    // a dumped header would show it only in that form.
    for password in ["SECRET-PROXY-11", "SECRET-PROXY-12"] {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ann:{password}"));
        assert!(
            !logs.contains(&encoded) && !shown.contains(&encoded),
            "{password} base64-encoded in the output"
        );
    }
    // The capture works: the refusals and state changes were logged.
    assert!(logs.contains("namespace refused"), "{logs}");
    assert!(logs.contains("state"), "{logs}");
    for (what, text) in [("logs", &logs), ("Debug/Display output", &shown)] {
        let leaks: Vec<&str> = text.lines().filter(|l| l.contains("SECRET")).collect();
        assert!(
            leaks.is_empty(),
            "secrets in the {what}:\n{}",
            leaks.join("\n")
        );
    }
    println!(
        "RELIABILITY|credentials in logs (TRACE) and Debug/Display output|none of {PLANTED} \
         planted secrets (tokens, auth fields, URL queries, headers, proxy passwords; WebSocket, \
         long-polling, envelopes), each shown to have reached the server|0 of {PLANTED} in {} log lines and \
         {} output lines",
        logs.lines().count(),
        shown.lines().count()
    );
}
