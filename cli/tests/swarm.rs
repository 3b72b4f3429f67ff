//! `pulselink swarm` against real servers on loopback: the three-node cluster behind nginx
//! (`pulselink_tests::cluster`), and the single Node server refusing half a fleet.

use std::process::Stdio;

use pulselink_tests::{
    NodeServer,
    cluster::{Balance, Cluster},
};
use serde_json::Value;
use tokio::process::Command;

/// Devices in the cluster run (the benchmark runs 1,000; this keeps the suite quick).
const DEVICES: u64 = 200;
/// Seconds they emit, one acknowledged tick per second each.
const SECONDS: u64 = 3;
/// Threads the swarm process may hold besides its runtime's workers (one per CPU), whatever
/// its fleet: main, the blocking pool's few, the hub's store thread.
const THREADS_BESIDES_WORKERS: u64 = 8;

fn swarm(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pulselink"));
    c.arg("swarm")
        .arg(url)
        .args(["--proxy", "none"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

fn report(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "the report is not JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_against_the_cluster_stays_connected_and_every_acknowledged_emit_is_answered() {
    let cluster = Cluster::start().await;
    let out = swarm(&cluster.url(Balance::RoundRobin))
        .args(["--clients", &DEVICES.to_string(), "--ramp", "1"])
        .args(["--duration", &SECONDS.to_string()])
        .args(["--token-template", "dev-{i}"])
        .args(["--subscribe", r#"room:subscribe={"roomId":"r1"}"#])
        .args(["--emit", r#"tick={"device":"{i}"}"#, "--rate", "1", "--ack"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let r = report(&out.stdout);
    assert_eq!(r["ok"], true);
    assert_eq!(r["clients"], DEVICES);
    assert_eq!(r["connected_at_end"], DEVICES);
    assert_eq!(r["ever_connected"], DEVICES);
    assert_eq!(r["ack_failed"], 0);
    assert_eq!(r["errors"], serde_json::json!({}));
    // About one per device per second; at least the seconds every device was surely up.
    let acked = r["acked"].as_u64().unwrap();
    assert!(
        acked >= DEVICES * (SECONDS - 1),
        "{acked} acknowledged emits"
    );
    assert_eq!(r["ack_latency"]["count"], acked);
    assert!(r["ack_latency"]["p99_ms"].as_f64().is_some());
    assert_eq!(r["connect_time"]["count"], DEVICES);
    // Every device hears the server's "welcome" on connecting: counted by the hub.
    let events_in = r["events_in"].as_u64().unwrap();
    assert!(events_in >= DEVICES, "{events_in} events received");
    let threads = r["process"]["threads"].as_u64().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(
        threads <= cpus + THREADS_BESIDES_WORKERS,
        "{threads} threads for {DEVICES} devices"
    );
    assert!(
        stderr.contains(&format!("connected {DEVICES}/{DEVICES}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_devices_are_reported_by_kind_and_never_stop_the_others() {
    let server = NodeServer::start().await;
    let out = swarm(&server.url())
        .args(["--clients", "10", "--ramp", "0", "--duration", "1"])
        // The server refuses "parity-<odd>": half the fleet.
        .args(["--token-template", "parity-{i}"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out.stdout);
    assert_eq!(r["ok"], false);
    assert_eq!(r["connected_at_end"], 5);
    let refused = &r["errors"]["refused"];
    let mut clients: Vec<u64> = refused["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no refusals reported: {r}"))
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    clients.sort_unstable();
    assert_eq!(clients, [1, 3, 5, 7, 9]);
    assert!(
        refused["example"]
            .as_str()
            .unwrap()
            .contains("Authentication failed"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_before_anything_connects() {
    for (args, says) in [
        (&["--clients", "0"][..], "--clients must be between 1"),
        (&["--emit", "tick={oops", "--rate", "1"], "--emit: "),
        (&["--duration", "0"], "--duration must be more than 0"),
    ] {
        // Port 9 (discard) on loopback: nothing listens, and nothing may be tried.
        let out = swarm("http://127.0.0.1:9")
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
