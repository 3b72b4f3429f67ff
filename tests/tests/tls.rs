//! TLS against the official Node Socket.IO server serving HTTPS/WSS with certificates made
//! for each run (a test CA, leaves, a self-signed one): what is trusted connects over every
//! transport, and every kind of bad certificate is refused with an error that says why,
//! while the client keeps retrying.
//!
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::time::Duration;

use pulselink::{Client, ClientConfig, Notice, State, TlsOptions, Transports, certificate_pin};
use pulselink_tests::{
    Leaf, NodeServer, TestCa, next_named, next_notice, temp_dir, wait_for_state,
};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

fn config(server: &NodeServer, tls: TlsOptions, transports: Transports) -> ClientConfig {
    let mut config = ClientConfig::new(&server.url())
        .unwrap()
        .with_transports(transports);
    config.tls = tls;
    config.connect_timeout = Duration::from_secs(5);
    config.reconnect.initial_delay = Duration::from_millis(50);
    config.reconnect.max_delay = Duration::from_millis(200);
    config
}

fn trusting(ca_pem: &str) -> TlsOptions {
    TlsOptions {
        ca_pem: vec![ca_pem.to_owned()],
        ..Default::default()
    }
}

/// Connects and proves the session works with an acknowledged round trip; returns the
/// transport the server says the session is on.
async fn round_trip(config: ClientConfig) -> String {
    let client = Client::new(config).unwrap();
    client.connect().await.unwrap();
    let reply = client
        .emit_with_ack("echo", json!({"over": "tls"}), T)
        .await
        .unwrap();
    assert_eq!(reply.values().unwrap()[0]["over"], "tls");
    let transport = client.emit_with_ack("transport?", (), T).await.unwrap();
    client.close().await;
    transport.values().unwrap()[0].as_str().unwrap().to_owned()
}

/// Starts a client that must be refused: returns the first connect error after checking the
/// client never connects and keeps retrying.
async fn refused(config: ClientConfig) -> String {
    let client = Client::new(config).unwrap();
    let mut notices = client.notices();
    let mut states = client.states();
    client.start().unwrap();
    let error = next_notice(&mut notices, T, |n| match n {
        Notice::ConnectFailed { error, .. } => Some(error.to_string()),
        Notice::Connected { .. } => panic!("connected to a server it must not trust"),
        _ => None,
    })
    .await;
    wait_for_state(
        &mut states,
        T,
        |s| matches!(s, State::Reconnecting { attempt, .. } if *attempt >= 3),
    )
    .await;
    assert!(
        client.state() != State::Connected,
        "connected to a server it must not trust"
    );
    client.close().await;
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_ca_is_trusted_over_websocket_polling_and_the_upgrade() {
    let dir = temp_dir("tls-custom-ca");
    let ca = TestCa::new("Pulselink test CA");
    let server = ca
        .issue(&["127.0.0.1", "localhost"], false)
        .serve(&dir)
        .await;
    assert!(server.url().starts_with("https://"));
    let tls = trusting(&ca.pem());
    let mut seen = Vec::new();
    for (transports, expected) in [
        (Transports::WebSocket, "websocket"),
        (Transports::Polling, "polling"),
        (Transports::WebSocketThenFallback, "websocket"),
    ] {
        let transport = round_trip(config(&server, tls.clone(), transports)).await;
        assert_eq!(transport, expected, "{transports:?}");
        seen.push(format!("{transports:?}"));
    }

    // Polling first, then the upgrade probe over wss:// with the same trust.
    let client = Client::new(config(&server, tls.clone(), Transports::PollingThenUpgrade)).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let upgraded = next_named(&mut events, "upgraded", T).await;
    assert_eq!(upgraded.args().unwrap(), vec![json!("websocket")]);
    client.close().await;
    seen.push("PollingThenUpgrade".into());

    figure(
        "TLS: custom CA trusted",
        "connects with an acked round trip over wss, https polling and the upgrade",
        seen.join(", "),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_with_the_reason_and_retried() {
    let ca = TestCa::new("Pulselink test CA");
    let other_ca = TestCa::new("Someone else's CA");
    let cases: [(&str, Leaf, TlsOptions, &str); 4] = [
        (
            "unknown issuer (default trust: webpki roots)",
            ca.issue(&["127.0.0.1"], false),
            TlsOptions::default(),
            "UnknownIssuer",
        ),
        (
            "issued by a CA the app does not trust",
            other_ca.issue(&["127.0.0.1"], false),
            trusting(&ca.pem()),
            "UnknownIssuer",
        ),
        (
            "wrong host name",
            ca.issue(&["elsewhere.example"], false),
            trusting(&ca.pem()),
            "not valid for name",
        ),
        (
            "expired",
            ca.issue(&["127.0.0.1"], true),
            trusting(&ca.pem()),
            "certificate expired",
        ),
    ];
    let mut seen = Vec::new();
    for (i, (name, leaf, tls, reason)) in cases.into_iter().enumerate() {
        let server = leaf.serve(&temp_dir(&format!("tls-bad-{i}"))).await;
        for transports in [Transports::WebSocket, Transports::Polling] {
            let error = refused(config(&server, tls.clone(), transports)).await;
            assert!(
                error.contains(reason),
                "{name} over {transports:?}: {error}"
            );
        }
        seen.push(format!("{name}: {reason}"));
    }
    figure(
        "TLS: bad certificates refused",
        "never connects, names the reason, keeps retrying (WebSocket and polling)",
        seen.join("; "),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_is_accepted_and_any_other_key_refused() {
    let dir = temp_dir("tls-pinning");
    let ca = TestCa::new("Pulselink test CA");
    let leaf = ca.issue(&["127.0.0.1"], false);
    let server = leaf.serve(&dir).await;
    let pin = certificate_pin(&leaf.der).unwrap();
    let backup = certificate_pin(&ca.issue(&["127.0.0.1"], false).der).unwrap();

    // The right key among the pins (with a backup pin, as apps should ship): accepted.
    let pinned = TlsOptions {
        pins: vec![backup.clone(), pin],
        ..trusting(&ca.pem())
    };
    for transports in [Transports::WebSocket, Transports::Polling] {
        round_trip(config(&server, pinned.clone(), transports)).await;
    }

    // A certificate from the trusted CA, but not with a pinned key: refused.
    let wrong = TlsOptions {
        pins: vec![backup],
        ..trusting(&ca.pem())
    };
    for transports in [Transports::WebSocket, Transports::Polling] {
        let error = refused(config(&server, wrong.clone(), transports)).await;
        assert!(error.contains("pin mismatch"), "{transports:?}: {error}");
    }
    figure(
        "TLS: certificate pinning",
        "pinned key accepted; a valid certificate with another key refused",
        "accepted and refused over WebSocket and polling",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_development_server_is_trusted_only_when_given() {
    let dir = temp_dir("tls-self-signed");
    let leaf = Leaf::self_signed(&["127.0.0.1"]);
    let server = leaf.serve(&dir).await;
    let error = refused(config(
        &server,
        TlsOptions::default(),
        Transports::WebSocket,
    ))
    .await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // Its own certificate as the only trust anchor: hostname and validity are still checked.
    let only_it = TlsOptions {
        ca_pem: vec![leaf.cert_pem.clone()],
        builtin_roots: false,
        pins: Vec::new(),
    };
    assert_eq!(
        round_trip(config(&server, only_it, Transports::WebSocket)).await,
        "websocket"
    );
}

#[test]
fn invalid_tls_options_are_refused_by_name() {
    let with = |tls: TlsOptions| {
        let mut config = ClientConfig::new("wss://example.com").unwrap();
        config.tls = tls;
        config.validate().unwrap_err().to_string()
    };
    let e = with(TlsOptions {
        ca_pem: vec!["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into()],
        ..Default::default()
    });
    assert!(e.contains("ca_pem[0]"), "{e}");
    let e = with(TlsOptions {
        pins: vec!["sha1/abc".into()],
        ..Default::default()
    });
    assert!(e.contains("pins[0]"), "{e}");
}
