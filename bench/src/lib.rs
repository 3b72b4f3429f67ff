//! Shared pieces of the benchmark clients: the sample event, reporting and percentiles.
//!
//! Two binaries use it: `pulselink-bench` (Pulselink and a raw tokio-tungstenite reader) and
//! `peer-bench` (rust_socketio). They are separate so each process's peak RSS contains only
//! the client it measures.

use serde_json::{Value, json};

/// The event every benchmark sends and receives.
pub const EVENT: &str = "metric:recorded";

/// The payload of one benchmark event (the packet is 116 bytes).
pub fn sample() -> Value {
    json!({"sessionId": "s_42", "metric": "heart_rate", "value": 142, "unit": "bpm", "ts": 1732000000, "src": "hr"})
}

/// Peak resident set size of this process in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Prints one JSON result line.
pub fn report(mode: &str, client: &str, fields: Value) {
    let mut v = json!({"mode": mode, "client": client, "peak_rss_kib": peak_rss_kib()});
    if let (Value::Object(a), Value::Object(b)) = (&mut v, fields) {
        a.extend(b);
    }
    println!("{v}");
}

/// p50/p99 of latencies in µs.
pub fn percentiles(mut us: Vec<f64>) -> Value {
    us.sort_by(f64::total_cmp);
    let p = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize];
    json!({"p50_us": p(0.5), "p99_us": p(0.99), "samples": us.len()})
}

/// `(mode, client, url, n)` from the command line.
pub fn parse_args() -> (String, String, String, u64) {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, client, url, n] = &args[..] else {
        eprintln!("usage: <binary> <mode> <client> <url> <n> (modes: see each binary's doc)");
        std::process::exit(2);
    };
    (mode.clone(), client.clone(), url.clone(), n.parse().expect("n is a number"))
}

/// A single-threaded runtime by default: the fairest comparison with single-threaded Node,
/// and what a phone gives a background connection. `BENCH_RUNTIME=multi` gives tokio's
/// default multi-threaded runtime instead: what an app on `#[tokio::main]` (and every
/// binding) runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    match std::env::var("BENCH_RUNTIME").as_deref() {
        Ok("multi") => tokio::runtime::Builder::new_multi_thread(),
        Ok("single") | Err(_) => tokio::runtime::Builder::new_current_thread(),
        Ok(other) => panic!("BENCH_RUNTIME={other}: expected single or multi"),
    }
    .enable_all()
    .build()
    .expect("runtime")
}
