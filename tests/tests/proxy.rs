//! Through real proxies: tinyproxy (HTTP `CONNECT` and plain forwarding) and Dante (SOCKS5),
//! started on loopback. Every transport connects through each, with and without credentials
//! and over TLS, each proven by the proxy's own log of what it carried; wrong or missing
//! credentials and a proxy that is down are typed errors naming the proxy and never its
//! password; a restarted proxy is reconnected through; `NO_PROXY` entries go direct.
//!
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::time::Duration;

use pulselink::{
    Client, ClientConfig, Error, NoProxy, Proxy, ProxyConfig, ProxyFailure, State, TlsOptions,
    Transports, certificate_pin,
};
use pulselink_tests::{
    NodeServer, TestCa, fast_reconnect,
    proxies::{Kind, ProxyServer, refusing_port},
    temp_dir, wait_for_state,
};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

const TRANSPORTS: [(Transports, &str); 4] = [
    (Transports::WebSocket, "websocket"),
    (Transports::Polling, "polling"),
    (Transports::PollingThenUpgrade, "websocket"),
    (Transports::WebSocketThenFallback, "websocket"),
];

fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

fn config(url: &str, proxy: &str, transports: Transports) -> ClientConfig {
    let mut config = ClientConfig::new(url)
        .unwrap()
        .with_transports(transports)
        .with_reconnect(fast_reconnect())
        .with_proxy(ProxyConfig::via(proxy).unwrap());
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Connects, proves the session with an acknowledged round trip and returns the transport
/// the server says it ended on (after an upgrade, once the upgrade is done).
async fn round_trip(config: ClientConfig, upgrade: bool) -> String {
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    if upgrade {
        pulselink_tests::next_named(&mut events, "upgraded", T).await;
    }
    let reply = client
        .emit_with_ack("echo", json!({"via": "proxy"}), T)
        .await
        .unwrap();
    assert_eq!(reply.values().unwrap()[0]["via"], "proxy");
    let transport = client.emit_with_ack("transport?", (), T).await.unwrap();
    client.close().await;
    transport.values().unwrap()[0].as_str().unwrap().to_owned()
}

/// Every transport through `proxy` (as `url`) to `server`, each carried by the proxy.
async fn every_transport(server: &NodeServer, proxy: &ProxyServer, url: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for (transports, expected) in TRANSPORTS {
        let before = proxy.carried(server.port());
        let upgrade = transports == Transports::PollingThenUpgrade;
        let got = round_trip(config(&server.url(), url, transports), upgrade).await;
        assert_eq!(got, expected, "{transports:?}");
        let carried = proxy.carried(server.port()) - before;
        assert!(carried > 0, "{transports:?} did not go through {url}");
        seen.push(format!("{transports:?}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_goes_through_an_http_proxy_with_and_without_credentials() {
    let server = NodeServer::start().await;
    let open = ProxyServer::start(Kind::Http, false).await;
    every_transport(&server, &open, &open.url()).await;
    let guarded = ProxyServer::start(Kind::Http, true).await;
    let seen = every_transport(&server, &guarded, &guarded.url_with_credentials()).await;
    figure(
        "proxy: HTTP (tinyproxy)",
        "an acked round trip on every transport, each carried by the proxy (its log), with and \
         without Basic credentials",
        seen.join(", "),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_goes_through_a_socks5_proxy_with_and_without_credentials() {
    let server = NodeServer::start().await;
    let open = ProxyServer::start(Kind::Socks5, false).await;
    every_transport(&server, &open, &open.url()).await;
    // socks5:// resolves the server's name here, socks5h:// lets the proxy do it.
    let local_dns = open.url().replace("socks5h://", "socks5://");
    let localhost = server.url().replace("127.0.0.1", "localhost");
    let before = open.carried(server.port());
    round_trip(config(&localhost, &local_dns, Transports::WebSocket), false).await;
    assert!(
        open.carried(server.port()) > before,
        "socks5:// with a name"
    );
    let guarded = ProxyServer::start(Kind::Socks5, true).await;
    let seen = every_transport(&server, &guarded, &guarded.url_with_credentials()).await;
    figure(
        "proxy: SOCKS5 (Dante)",
        "an acked round trip on every transport, each carried by the proxy (its log), with and \
         without user/password",
        seen.join(", "),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_runs_end_to_end_through_both_proxies_and_pins_apply_to_the_server() {
    let dir = temp_dir("proxy-tls");
    let ca = TestCa::new("Pulselink proxy test CA");
    let leaf = ca.issue(&["127.0.0.1", "localhost"], false);
    let server = leaf.serve(&dir).await;
    let tls = TlsOptions {
        ca_pem: vec![ca.pem()],
        pins: vec![certificate_pin(&leaf.der).unwrap()],
        ..Default::default()
    };
    let http = ProxyServer::start(Kind::Http, true).await;
    let socks = ProxyServer::start(Kind::Socks5, true).await;
    let mut seen = Vec::new();
    for proxy in [&http, &socks] {
        for (transports, expected) in TRANSPORTS {
            let before = proxy.carried(server.port());
            let mut c = config(&server.url(), &proxy.url_with_credentials(), transports);
            c.tls = tls.clone();
            let upgrade = transports == Transports::PollingThenUpgrade;
            assert_eq!(round_trip(c, upgrade).await, expected, "{transports:?}");
            assert!(proxy.carried(server.port()) > before, "{transports:?}");
            seen.push(format!("{:?}/{transports:?}", proxy_kind(proxy)));
        }
    }
    // By name: the server's certificate is checked for `localhost` at the end of each tunnel
    // (the proxy resolves it for socks5h://).
    for proxy in [&http, &socks] {
        let by_name = server.url().replace("127.0.0.1", "localhost");
        let mut c = config(
            &by_name,
            &proxy.url_with_credentials(),
            Transports::WebSocket,
        );
        c.tls = tls.clone();
        assert_eq!(round_trip(c, false).await, "websocket");
    }
    // A pin the server's key does not match is refused through the tunnel too: the pin is
    // checked against the server's certificate, not the proxy's.
    let mut c = config(
        &server.url(),
        &http.url_with_credentials(),
        Transports::WebSocket,
    );
    c.tls = TlsOptions {
        ca_pem: vec![ca.pem()],
        pins: vec![certificate_pin(&ca.issue(&["127.0.0.1"], false).der).unwrap()],
        ..Default::default()
    };
    c.reconnect.enabled = false;
    let err = Client::new(c).unwrap().connect().await.unwrap_err();
    assert!(err.to_string().contains("pin"), "{err}");
    figure(
        "proxy: TLS end to end",
        "wss and https polling through CONNECT and SOCKS5 tunnels, the server's certificate \
         verified and pinned (a wrong pin refused through the tunnel)",
        seen.len(),
    );
}

fn proxy_kind(p: &ProxyServer) -> &'static str {
    if p.url().starts_with("http") {
        "HTTP"
    } else {
        "SOCKS5"
    }
}

/// The typed error `connect()` returns with retries off, and the one it returns with retries
/// on (after `connect_wait`, naming the last attempt's failure).
async fn refusal(url: &str, proxy: &str, transports: Transports) -> (Error, Error) {
    let mut c = config(url, proxy, transports);
    c.reconnect.enabled = false;
    let once = Client::new(c).unwrap().connect().await.unwrap_err();
    let mut c = config(url, proxy, transports);
    c.connect_wait = Duration::from_millis(1500);
    let client = Client::new(c).unwrap();
    let retrying = client.connect().await.unwrap_err();
    assert!(
        matches!(
            client.state(),
            State::Reconnecting { .. } | State::Connecting
        ),
        "a refusing proxy counts as a failed attempt and retries go on: {:?}",
        client.state()
    );
    client.close().await;
    (once, retrying)
}

fn failure_of(e: &Error) -> (&str, &ProxyFailure) {
    match e {
        Error::Proxy { proxy, failure } => (proxy, failure),
        Error::ConnectTimeout {
            last_failure: Some(f),
            ..
        } => failure_of(f),
        other => panic!("not a proxy error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_errors_that_name_the_proxy_and_never_its_password() {
    let server = NodeServer::start().await;
    let http = ProxyServer::start(Kind::Http, true).await;
    let socks = ProxyServer::start(Kind::Socks5, true).await;
    let (_held, down_port) = refusing_port();
    let down = format!("http://127.0.0.1:{down_port}");
    let wrong = "Wr0ng-Pa55word";
    let cases = [
        (http.url_with("ann", wrong), Transports::WebSocket, "wrong"),
        // Polling over http:// is forwarded, not tunnelled: the refusal comes on the request,
        // and tinyproxy refuses wrong credentials there with a 401, which a server may send
        // too: the error names the proxy as one possible source (below).
        (
            http.url_with("ann", wrong),
            Transports::WebSocketThenFallback,
            "wrong",
        ),
        (http.url(), Transports::WebSocket, "missing"),
        (http.url(), Transports::Polling, "missing"),
        (
            socks.url_with("pl-proxy-test", wrong),
            Transports::WebSocket,
            "wrong",
        ),
        (socks.url(), Transports::WebSocket, "missing"),
        (down.clone(), Transports::WebSocket, "down"),
        (down.clone(), Transports::WebSocketThenFallback, "down"),
    ];
    for (proxy, transports, why) in &cases {
        let (once, retrying) = refusal(&server.url(), proxy, *transports).await;
        for e in [&once, &retrying] {
            let (named, failure) = failure_of(e);
            let expected_name = Proxy::parse(proxy).unwrap().to_string();
            assert_eq!(named, expected_name, "{e}");
            match *why {
                "wrong" => assert_eq!(failure, &ProxyFailure::CredentialsRejected, "{e}"),
                "missing" => assert_eq!(failure, &ProxyFailure::CredentialsRequired, "{e}"),
                _ => assert!(matches!(failure, ProxyFailure::Unreachable(_)), "{e}"),
            }
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(wrong), "{shown}");
            assert!(shown.contains(&expected_name), "{shown}");
        }
    }
    let mut c = config(
        &server.url(),
        &http.url_with("ann", wrong),
        Transports::Polling,
    );
    c.reconnect.enabled = false;
    let err = Client::new(c).unwrap().connect().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("401") && shown.contains(&http.url()) && !shown.contains(wrong),
        "{shown}"
    );
    figure(
        "proxy: refusals typed",
        "wrong and missing credentials (tinyproxy's answers to CONNECT, its 407 to forwarded \
         polling without credentials, SOCKS5 authentication) and a proxy that is down: \
         Error::Proxy naming the proxy without its password, with retries off and (as \
         connect()'s last failure) with retries on; a wrong password on forwarded polling (a \
         401, which a server sends too) names the proxy as a possible source",
        format!("{} of {} cases", cases.len(), cases.len()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_is_reconnected_through() {
    let server = NodeServer::start().await;
    for kind in [Kind::Http, Kind::Socks5] {
        let mut proxy = ProxyServer::start(kind, true).await;
        let client = Client::new(config(
            &server.url(),
            &proxy.url_with_credentials(),
            Transports::WebSocket,
        ))
        .unwrap();
        let mut states = client.states();
        client.connect().await.unwrap();
        proxy.kill().await;
        wait_for_state(&mut states, T, |s| *s != State::Connected).await;
        let before = proxy.carried(server.port());
        proxy.restart().await;
        wait_for_state(&mut states, T, |s| *s == State::Connected).await;
        client
            .emit_with_ack("echo", json!({"after": "restart"}), T)
            .await
            .unwrap();
        assert!(proxy.carried(server.port()) > before, "{kind:?}");
        assert_eq!(client.metrics().await.unwrap().reconnects, 1, "{kind:?}");
        client.close().await;
    }
    figure(
        "proxy: restarted",
        "the link through a killed proxy drops and comes back through it once it is restarted \
         (HTTP and SOCKS5)",
        "2 of 2",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_entries_go_direct() {
    let server = NodeServer::start().await;
    let (_held, down_port) = refusing_port();
    let down = Proxy::parse(&format!("http://127.0.0.1:{down_port}")).unwrap();
    let with = |no_proxy: &str| {
        let mut c = ClientConfig::new(&server.url())
            .unwrap()
            .with_proxy(ProxyConfig::Via {
                proxy: down.clone(),
                no_proxy: NoProxy::parse(no_proxy),
            });
        c.reconnect.enabled = false;
        c
    };
    for bypass in ["127.0.0.1", "127.0.0.0/8", "*"] {
        let client = Client::new(with(bypass)).unwrap();
        client.connect().await.unwrap();
        client.close().await;
    }
    // The control: the same proxy without the entry is used, and it is down.
    let err = Client::new(with("example.com"))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Proxy { .. }), "{err:?}");
}
