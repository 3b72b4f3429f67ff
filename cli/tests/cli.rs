//! The `pulselink` binary against the official Node socket.io server.

use std::process::Stdio;

use pulselink_tests::{NodeServer, ServerOptions, TestCa};
use serde_json::{Value, json};
use tokio::process::Command;

fn pulselink() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pulselink"));
    c.stdin(Stdio::null()).kill_on_drop(true);
    // The CLI reads proxy variables as curl does; the tests set the ones they test.
    for var in PROXY_VARS {
        c.env_remove(var).env_remove(var.to_lowercase());
    }
    c
}

const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_json_lines_and_stops_after_count() {
    let server = NodeServer::start().await;
    let out = pulselink()
        .args([
            "listen",
            &server.url(),
            "--token",
            "cli",
            "--namespace",
            "/",
            "--namespace",
            "/rooms/r9",
        ])
        .args(["--count", "2"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let mut namespaces: Vec<&str> = lines
        .iter()
        .map(|l| l["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, vec!["/", "/rooms/r9"]);
    for l in &lines {
        assert_eq!(l["event"], "welcome");
        assert_eq!(l["args"][0]["auth"], json!({"token": "cli"}));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state: connected"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_prints_the_answer() {
    let server = NodeServer::start().await;
    let out = pulselink()
        .args([
            "emit",
            &server.url(),
            "quiz:answer_submit",
            r#"{"q":1,"a":"B"}"#,
            "--ack",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The outbox's idempotency key travelled in the payload, and came back in the echo.
    let key = reply[0]["answer"]
        .as_object_mut()
        .unwrap()
        .remove("idempotencyKey");
    assert!(key.is_some_and(|k| k.is_string()));
    assert_eq!(
        reply,
        json!([{"ok": true, "answer": {"q": 1, "a": "B"}, "namespace": "/"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_reports_refused_auth_and_bad_input_clearly() {
    let server = NodeServer::start().await;
    let out = pulselink()
        .args(["emit", &server.url(), "x", "{}", "--token", "bad"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Authentication failed"));

    let out = pulselink()
        .args(["emit", &server.url(), "x", "{not json"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON argument"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_by_itself_and_shows_the_reconnect() {
    let out = pulselink().arg("demo").output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("client state: reconnecting"), "{text}");
    assert!(text.contains("reconnected"), "{text}");
    assert!(text.contains("sent while offline"), "{text}");
    assert!(text.contains("demo finished"), "{text}");
    // Without PULSELINK_LOG nothing but the demo's own lines: no library's debug chatter.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("DEBUG") && !stderr.contains("TRACE"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_polling_talks_to_a_server_without_websocket() {
    let server = NodeServer::start_with(ServerOptions {
        transports: Some("polling"),
        ..Default::default()
    })
    .await;
    // Asked for, and by default (WebSocket, falling back to polling).
    for transport in [&["--transport", "polling"][..], &[]] {
        let out = pulselink()
            .args([
                "emit",
                &server.url(),
                "transport?",
                "[]",
                "--args-array",
                "--ack",
            ])
            .args(transport)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{transport:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply, json!(["polling"]), "{transport:?}");
    }

    let bad = pulselink()
        .args([
            "emit",
            &server.url(),
            "x",
            "1",
            "--transport",
            "carrier-pigeon",
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown transport"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_protocol_listen_subscribe_and_emit() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let server = NodeServer::start_with(ServerOptions {
        envelope: true,
        ..Default::default()
    })
    .await;
    let url = server.ws_url();
    let mut listener = pulselink()
        .args(["listen", &url, "--protocol", "envelope", "--token", "t1"])
        .args([
            "--subscribe",
            r#"subscribe={"eventTypes":["scores:updated"]}"#,
        ])
        .args(["--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(listener.stderr.take().unwrap()).lines();
    while let Some(line) = stderr.next_line().await.unwrap() {
        if line == "state: connected" {
            break;
        }
    }
    let publish = |n: u32| {
        let url = url.clone();
        async move {
            let out = pulselink()
                .args([
                    "emit",
                    &url,
                    "publish",
                    "--protocol",
                    "envelope",
                    "--token",
                    "t2",
                ])
                .arg(json!({"type": "scores:updated", "data": {"home": n}}).to_string())
                .arg("--ack")
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
            reply[0]["delivered"].as_u64().unwrap()
        }
    };
    // Connected is announced before the server has answered the subscription: publish until
    // the server reports the listener as a recipient, the first time it can.
    let mut attempts = 0;
    while publish(1).await == 0 {
        attempts += 1;
        assert!(attempts < 100, "the listener never subscribed");
    }
    assert_eq!(publish(2).await, 1);
    let out = listener.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"namespace": "/", "event": "scores:updated", "args": [{"home": 1}]}),
            json!({"namespace": "/", "event": "scores:updated", "args": [{"home": 2}]}),
        ]
    );

    let out = pulselink()
        .args([
            "emit",
            &url,
            "x",
            "{}",
            "--protocol",
            "envelope",
            "--token",
            "bad",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Invalid token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options_trust_a_private_ca_and_pin_the_key() {
    let dir = pulselink_tests::temp_dir("cli-tls");
    let ca = TestCa::new("CLI test CA");
    let leaf = ca.issue(&["127.0.0.1"], false);
    let server = leaf.serve(&dir).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_file = ca_file.to_str().unwrap();

    // `pulselink pin` prints what the client checks.
    let out = pulselink()
        .args(["pin", dir.join("cert.pem").to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let pin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(Some(pin.clone()), pulselink::certificate_pin(&leaf.der));

    let emit = |extra: Vec<String>| {
        let mut c = pulselink();
        c.args(["emit", &server.url(), "echo", "{}", "--ack"])
            .args(["--connect-timeout", "3"])
            .args(extra);
        c
    };
    // Trusted CA and the right pin: the ack comes back over wss://.
    let out = emit(vec![
        "--ca-file".into(),
        ca_file.into(),
        "--pin".into(),
        pin,
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Without the CA the certificate is refused, and the error says why.
    let out = emit(vec![]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    // The CA but a pin for another key: refused.
    let other = pulselink::certificate_pin(&ca.issue(&["127.0.0.1"], false).der).unwrap();
    let out = emit(vec![
        "--ca-file".into(),
        ca_file.into(),
        "--pin".into(),
        other,
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pin mismatch"), "{stderr}");

    // A malformed pin is a configuration error, before any connection.
    let out = emit(vec!["--pin".into(), "md5/xyz".into()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pins[0]"), "{stderr}");
}

/// `PULSELINK_LOG` reaches below INFO for the targets it names, and nothing it names lifts the
/// WebSocket library, or any module of it, above INFO (its TRACE dumps whole frames, tokens
/// included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulselink_log_shows_debug_for_what_it_names_and_keeps_frame_dumps_out() {
    let server = NodeServer::start().await;
    let run = |filter: &'static str| {
        let mut c = pulselink();
        c.args(["emit", &server.url(), "echo", r#"{"n":1}"#, "--ack"])
            .env("PULSELINK_LOG", filter);
        async move {
            let out = c.output().await.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            stderr
        }
    };
    let debug = run("pulselink=debug").await;
    assert!(
        debug.contains("DEBUG") && debug.contains("handshake"),
        "{debug}"
    );
    assert!(!debug.contains("TRACE"), "{debug}");
    let everything = run("trace,tungstenite::protocol=trace,tokio_tungstenite=trace").await;
    assert!(everything.contains("DEBUG"), "{everything}");
    assert!(
        !everything
            .lines()
            .any(|l| l.contains("tungstenite") && (l.contains("TRACE") || l.contains("DEBUG"))),
        "{everything}"
    );
    // A filter that does not parse is said, and the command still runs.
    let bad = run("pulselink=loud").await;
    assert!(bad.contains("is not a log filter"), "{bad}");
}

/// `pulselink emit URL echo {"via":"proxy"} --ack` with `env` and `args`: (success, stderr).
async fn emit_via(url: &str, env: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let mut c = pulselink();
    c.args([
        "emit",
        url,
        "echo",
        r#"{"via":"proxy"}"#,
        "--ack",
        "--connect-timeout",
        "3",
    ])
    .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_seed_runs_and_surfaces_errors_and_bad_presets_are_refused() {
    let server = NodeServer::start().await;
    // The seed preset is taken and runs: a coded error is surfaced on stderr and the emit still
    // completes (what each code does is tested in tests/tests/signals.rs).
    let out = pulselink()
        .args([
            "emit",
            &server.url(),
            "error-me",
            r#""RATE_LIMITED""#,
            "--ack",
        ])
        .args(["--signals", "seed"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("server error RATE_LIMITED"), "{stderr}");
    let bad = pulselink()
        .args(["emit", &server.url(), "x", "1", "--signals", "lottery"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown signals"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_come_from_the_environment_or_the_flag() {
    use pulselink_tests::proxies::{Kind, ProxyServer, refusing_port};
    let server = NodeServer::start().await;
    let url = server.url();
    let proxy = ProxyServer::start(Kind::Http, true).await;
    let (_held, dead_port) = refusing_port();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let port = server.port();

    // HTTP_PROXY (the server is http://), read by default as curl does.
    let before = proxy.carried(port);
    let (ok, err) = emit_via(&url, &[("HTTP_PROXY", proxy.url_with_credentials())], &[]).await;
    assert!(ok, "{err}");
    assert!(proxy.carried(port) > before, "HTTP_PROXY was not used");
    // ALL_PROXY, lowercase, for SOCKS.
    let socks = ProxyServer::start(Kind::Socks5, false).await;
    let before = socks.carried(port);
    let (ok, err) = emit_via(&url, &[("all_proxy", socks.url())], &[]).await;
    assert!(ok, "{err}");
    assert!(socks.carried(port) > before, "all_proxy was not used");
    // NO_PROXY bypasses a proxy that is down; `--proxy none` ignores the environment.
    let (ok, err) = emit_via(
        &url,
        &[
            ("HTTP_PROXY", dead.clone()),
            ("NO_PROXY", "localhost,127.0.0.1".into()),
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, err) = emit_via(&url, &[("HTTP_PROXY", dead.clone())], &["--proxy", "none"]).await;
    assert!(ok, "{err}");
    // --proxy wins over the environment, and --noproxy applies to it.
    let before = proxy.carried(port);
    let (ok, err) = emit_via(
        &url,
        &[("HTTP_PROXY", dead.clone())],
        &["--proxy", &proxy.url_with_credentials()],
    )
    .await;
    assert!(ok, "{err}");
    assert!(proxy.carried(port) > before, "--proxy was not used");
    let (ok, err) = emit_via(&url, &[], &["--proxy", &dead, "--noproxy", "127.0.0.1"]).await;
    assert!(ok, "{err}");

    // Refusals say which proxy and why, never the password.
    let (ok, err) = emit_via(&url, &[("HTTP_PROXY", dead.clone())], &[]).await;
    assert!(
        !ok && err.contains(&dead) && err.contains("unreachable"),
        "{err}"
    );
    let wrong = proxy.url_with("ann", "Wr0ng-cli-pa55");
    let (ok, err) = emit_via(&url, &[], &["--proxy", &wrong, "--transport", "websocket"]).await;
    assert!(
        !ok && err.contains("refused the credentials") && !err.contains("Wr0ng-cli-pa55"),
        "{err}"
    );
    let (ok, err) = emit_via(&url, &[("HTTP_PROXY", "gopher://u:S3CRET@x".into())], &[]).await;
    assert!(
        !ok && err.contains("HTTP_PROXY") && !err.contains("S3CRET"),
        "{err}"
    );
}
