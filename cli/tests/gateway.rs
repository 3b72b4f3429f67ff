//! `pulselink gateway` end to end: a scripted telemetry source through the gateway to the
//! official Node socket.io server, with the server restarted and the gateway SIGKILLed.

use std::{collections::BTreeSet, path::Path, process::Stdio, time::Duration};

use pulselink_tests::{NodeServer, ledger_with, read_ledger, scratch};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

const T: Duration = Duration::from_secs(30);

struct Gateway {
    child: Child,
    status: Lines<BufReader<ChildStdout>>,
}

impl Gateway {
    fn start(url: &str, store: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pulselink"))
            .args(["gateway", url, "--store"])
            .arg(store)
            .args(["--json-status", "--status-interval", "20", "--grace", "20"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let status = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, status }
    }

    /// Writes `lines` to its stdin in the background; the writer keeps stdin open unless
    /// `close` (EOF makes the gateway drain and exit).
    fn feed(&mut self, lines: Vec<String>, close: bool) -> tokio::task::JoinHandle<()> {
        let mut stdin = self.child.stdin.take().unwrap();
        tokio::spawn(async move {
            for l in lines {
                if stdin.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                    return; // killed
                }
            }
            let _ = stdin.flush().await;
            if !close {
                std::future::pending::<()>().await;
            }
        })
    }

    /// Reads status lines until `accepted` reaches `n`; returns the last status.
    async fn until_accepted(&mut self, n: u64) -> Value {
        tokio::time::timeout(T, async {
            loop {
                let line = self
                    .status
                    .next_line()
                    .await
                    .unwrap()
                    .expect("gateway exited");
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["accepted"].as_u64().unwrap() >= n {
                    return v;
                }
            }
        })
        .await
        .expect("gateway accepted the readings")
    }

    /// Waits for the exit; returns the final status line and stderr.
    async fn finish(mut self) -> (Value, String) {
        let mut last = None;
        while let Some(line) = self.status.next_line().await.unwrap() {
            last = Some(serde_json::from_str(&line).unwrap());
        }
        let out = tokio::time::timeout(T, self.child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (last.expect("a final status"), stderr)
    }
}

fn ticks(range: std::ops::Range<u64>) -> Vec<String> {
    range
        .map(|n| format!(r#"{{"event":"tick","data":{{"n":{n}}}}}"#))
        .collect()
}

/// The tick numbers the server accepted, each once (panics on a second copy).
fn delivered_once(ledger: &Path) -> Vec<u64> {
    let firsts: Vec<u64> = read_ledger(ledger)
        .into_iter()
        .filter(|l| !l.dup)
        .map(|l| l.n)
        .collect();
    let unique: BTreeSet<u64> = firsts.iter().copied().collect();
    assert_eq!(unique.len(), firsts.len(), "a reading arrived twice");
    firsts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_reading_arrives_once_across_server_restart_and_gateway_kill() {
    let (dir, ledger, store) = scratch("gateway-kill");
    let mut server = NodeServer::start_with_ledger(&ledger).await;

    let mut gw = Gateway::start(&server.url(), &store, &[]);
    let _writer = gw.feed(ticks(0..3_000), false);
    gw.until_accepted(500).await;
    // The server goes down mid-stream: what the gateway accepts now can only wait in its
    // store, so the kill below lands on queued readings.
    server.kill().await;
    let before_kill = gw.until_accepted(1_500).await;
    let promised = before_kill["accepted"].as_u64().unwrap();
    assert!(
        before_kill["queued"].as_u64().unwrap() > 0,
        "readings were queued at the kill: {before_kill}"
    );
    gw.child.start_kill().unwrap();
    let _ = gw.child.wait().await;
    server.restart().await;

    // The next start sends what the killed one left, then its own readings, then drains.
    let mut gw = Gateway::start(&server.url(), &store, &[]);
    gw.feed(ticks(10_000..10_500), true);
    let (last, _) = gw.finish().await;
    assert_eq!(last["queued"], 0, "{last}");

    let delivered = delivered_once(&ledger);
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "order kept");
    let got: BTreeSet<u64> = delivered.into_iter().collect();
    for n in (0..promised).chain(10_000..10_500) {
        assert!(got.contains(&n), "accepted reading {n} was lost");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_bad_lines_are_applied_and_reported_with_line_numbers() {
    let (dir, ledger, store) = scratch("gateway-rules");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        r#"
        max_line_bytes = 200
        [[rule]]
        match = "hr"
        event = "tick"
        min_interval_ms = 60000

        [[subscription]]
        event = "room:subscribe"
        data = { roomId = "gym-3" }
        "#,
    )
    .unwrap();
    let mut gw = Gateway::start(
        &server.url(),
        &store,
        &["--config", config.to_str().unwrap()],
    );
    let long = format!(r#"{{"event":"hr","data":"{}"}}"#, "x".repeat(300));
    let too_long = format!(
        "stdin line 5: line of {} bytes is over the limit",
        long.len()
    );
    let lines = vec![
        r#"{"event":"hr","data":{"n":1}}"#.to_string(),
        "not json".into(),
        r#"{"event":"hr","data":{"n":2}}"#.into(),
        r#"{"event":"power","data":{"w":200}}"#.into(),
        long,
    ];
    gw.feed(lines, true);
    let (last, stderr) = gw.finish().await;
    assert!(
        stderr.contains("stdin line 2: not a JSON event line"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdin line 4: no rule for event \"power\""),
        "{stderr}"
    );
    assert!(stderr.contains(&too_long), "{stderr}");
    assert_eq!(
        (&last["accepted"], &last["throttled"], &last["refused"]),
        (&1.into(), &1.into(), &3.into()),
        "{last}"
    );
    let ledger = read_ledger(&ledger);
    assert_eq!(ledger[0].key, "room:gym-3", "the subscription went first");
    let ticks: Vec<u64> = ledger[1..].iter().map(|l| l.n).collect();
    assert_eq!(ticks, [1], "mapped hr → tick, the second throttled");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_while_input_is_still_open() {
    let (dir, ledger, store) = scratch("gateway-term");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let mut gw = Gateway::start(&server.url(), &store, &[]);
    let _writer = gw.feed(ticks(0..200), false);
    gw.until_accepted(200).await;
    terminate(&gw.child);
    let (last, _) = gw.finish().await;
    assert_eq!(last["queued"], 0, "{last}");
    assert_eq!(delivered_once(&ledger), (0..200).collect::<Vec<_>>());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_followed_file_inputs_are_forwarded() {
    let (dir, ledger, store) = scratch("gateway-inputs");
    let server = NodeServer::start_with_ledger(&ledger).await;

    // UDP: datagrams of one or several lines.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_arg = port.to_string();
    let mut gw = Gateway::start(&server.url(), &store, &["--udp", &port_arg]);
    gw.until_accepted(0).await; // listening once it reports
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let lines = ticks(0..6);
    sender
        .send_to(lines[..3].join("\n").as_bytes(), ("127.0.0.1", port))
        .await
        .unwrap();
    for l in &lines[3..] {
        sender
            .send_to(l.as_bytes(), ("127.0.0.1", port))
            .await
            .unwrap();
    }
    gw.until_accepted(6).await;
    terminate(&gw.child);
    gw.finish().await;

    // A followed file: lines appended after the gateway opened it.
    let followed = dir.join("telemetry.log");
    std::fs::write(&followed, format!("{}\n", ticks(999..1000)[0])).unwrap();
    let mut gw = Gateway::start(
        &server.url(),
        &dir.join("follow.db"),
        &["--follow", followed.to_str().unwrap()],
    );
    gw.until_accepted(0).await; // the file is open and read to its end
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&followed)
        .unwrap();
    for l in ticks(100..104) {
        std::io::Write::write_all(&mut f, format!("{l}\n").as_bytes()).unwrap();
    }
    gw.until_accepted(4).await;
    terminate(&gw.child);
    gw.finish().await;

    let delivered = delivered_once(&ledger);
    assert_eq!(
        delivered,
        [0, 1, 2, 3, 4, 5, 100, 101, 102, 103],
        "line 999 was there before"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn terminate(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The ticks an envelope server accepted (once per envelope id) and the repeats it dropped,
/// asked with its `stats?` request.
async fn envelope_ticks(url: &str) -> (Vec<u64>, u64) {
    let config = pulselink::ClientConfig::new(url)
        .unwrap()
        .with_protocol(pulselink::Protocol::Envelope(
            pulselink::EnvelopeOptions::default(),
        ))
        .with_static_auth(serde_json::json!({"token": "t"}));
    let client = pulselink::Client::new(config).unwrap();
    client.connect().await.unwrap();
    let stats: Value = client
        .emit_with_ack("stats?", serde_json::json!(null), T)
        .await
        .unwrap()
        .args_as::<(Value,)>()
        .unwrap()
        .0;
    client.close().await;
    let ticks = stats["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    (ticks, stats["duplicateTicks"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_feeds_a_json_envelope_server_each_reading_answered() {
    let (dir, _, store) = scratch("gateway-envelope");
    let server = NodeServer::start_with(pulselink_tests::ServerOptions {
        envelope: true,
        ..Default::default()
    })
    .await;
    let mut gw = Gateway::start(
        &server.ws_url(),
        &store,
        &["--protocol", "envelope", "--token", "t"],
    );
    gw.feed(ticks(0..300), true);
    let (last, stderr) = gw.finish().await;
    assert_eq!(
        (&last["accepted"], &last["delivered"], &last["queued"]),
        (&300.into(), &300.into(), &0.into()),
        "{last} {stderr}"
    );
    let (got, dups) = envelope_ticks(&server.ws_url()).await;
    assert_eq!(
        got,
        (0..300).collect::<Vec<_>>(),
        "every reading once, in order"
    );
    assert_eq!(dups, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_rules_keep_only_the_newest_reading_per_device_while_offline() {
    let (dir, ledger, store) = scratch("gateway-coalesce");
    let mut server = NodeServer::start_with_ledger(&ledger).await;
    let url = server.url();
    server.kill().await;
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        r#"
        [[rule]]
        match = "hr"
        event = "tick"
        coalesce = true
        "#,
    )
    .unwrap();
    let mut gw = Gateway::start(&url, &store, &["--config", config.to_str().unwrap()]);
    // Two straps, 100 readings each, interleaved, while the server is down.
    let lines: Vec<String> = (0..200)
        .map(|i| {
            let strap = if i % 2 == 0 { "a" } else { "b" };
            format!(r#"{{"event":"hr","data":{{"n":{i}}},"key":"{strap}"}}"#)
        })
        .collect();
    let _writer = gw.feed(lines, false);
    let offline = gw.until_accepted(200).await;
    assert_eq!(offline["queued"], 2, "one per strap: {offline}");
    server.restart().await;
    // The ledger is written by the server as it reads; wait for it rather than assume. (And
    // before SIGTERM: the official server drops events whose dispatch comes after the client's
    // goodbye arrived in the same read, and these are sent without acknowledgement.)
    let got: Vec<u64> = ledger_with(&ledger, 2).await.iter().map(|l| l.n).collect();
    assert_eq!(got, [198, 199], "only the newest of each strap went out");
    terminate(&gw.child);
    let (last, _) = gw.finish().await;
    assert_eq!(last["queued"], 0, "{last}");
    assert_eq!(read_ledger(&ledger).len(), 2, "nothing more went out");
    std::fs::remove_dir_all(dir).unwrap();
}
