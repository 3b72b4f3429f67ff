//! Benchmark clients, one measurement per process so peak RSS belongs to one client.
//!
//! `pulselink-bench <mode> <client> <url> <n>` prints one JSON line with the result.
//! Modes: `in` (server→client events/s through the client's normal event API), `out`
//! (client→server events/s, confirmed by the server's count), `ack` (sequential ack round
//! trips, p50/p99 in µs), `reconnect` (prints `connected <epoch ms>` on every connect until
//! stdin closes). Clients: `pulselink`, `pulselink-serde` (also deserializes every event into
//! a struct, as an app would), `rust_socketio`, `raw` (tokio-tungstenite, no JSON: a ceiling).

use std::{
    io::BufRead,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};

const EVENT: &str = "metric:recorded";

fn sample() -> Value {
    json!({"sessionId": "s_42", "metric": "heart_rate", "value": 142, "unit": "bpm", "ts": 1732000000, "src": "hr"})
}

/// Peak resident set size of this process in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn report(mode: &str, client: &str, fields: Value) {
    let mut v = json!({"mode": mode, "client": client, "peak_rss_kib": peak_rss_kib()});
    if let (Value::Object(a), Value::Object(b)) = (&mut v, fields) {
        a.extend(b);
    }
    println!("{v}");
}

fn percentiles(mut us: Vec<f64>) -> Value {
    us.sort_by(f64::total_cmp);
    let p = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize];
    json!({"p50_us": p(0.5), "p99_us": p(0.99), "samples": us.len()})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, client, url, n] = &args[..] else {
        eprintln!("usage: pulselink-bench <in|out|ack|reconnect> <client> <url> <n>");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("n is a number");
    // One thread: the fairest comparison with single-threaded Node, and what a phone gives
    // a background connection.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        match (mode.as_str(), client.as_str()) {
            ("in", "pulselink") => pulselink_in(url, n, false).await,
            ("in", "pulselink-serde") => pulselink_in(url, n, true).await,
            ("in", "rust_socketio") => rsio_in(url, n).await,
            ("in", "raw") => raw_in(url, n).await,
            ("out", "pulselink") => pulselink_out(url, n).await,
            ("out", "rust_socketio") => rsio_out(url, n).await,
            ("ack", "pulselink") => pulselink_ack(url, n).await,
            ("ack", "rust_socketio") => rsio_ack(url, n).await,
            ("reconnect", "pulselink") => pulselink_reconnect(url).await,
            other => panic!("unknown mode/client {other:?}"),
        }
    });
}

async fn pulselink_client(url: &str) -> pulselink::Client {
    let config = pulselink::ClientConfig::new(url).unwrap();
    pulselink::Client::new(config).unwrap()
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Metric {
    #[serde(rename = "sessionId")]
    session_id: String,
    metric: String,
    value: f64,
    unit: String,
    ts: u64,
    src: String,
}

async fn pulselink_in(url: &str, n: u64, typed: bool) {
    let client = pulselink_client(url).await;
    let mut events = client.events();
    client.connect().await.unwrap();
    let started = Instant::now();
    client.emit_with_ack("blast", json!(n), Duration::from_secs(10)).await.unwrap();
    let mut seen = 0u64;
    let mut checksum = 0f64;
    let mut batch = Vec::with_capacity(512);
    while seen < n {
        if events.recv_many(&mut batch, 512).await == 0 {
            panic!("stream ended after {seen} events");
        }
        for ev in batch.drain(..) {
            if ev.name() == EVENT {
                seen += 1;
                if typed {
                    let m: Metric = ev.first_arg().unwrap();
                    checksum += m.value;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let client_name = if typed { "pulselink-serde" } else { "pulselink" };
    report("in", client_name, json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs, "checksum": checksum}));
    client.close().await;
}

async fn pulselink_out(url: &str, n: u64) {
    let client = pulselink_client(url).await;
    client.connect().await.unwrap();
    let value = sample();
    let started = Instant::now();
    for _ in 0..n {
        client.emit(EVENT, value.clone()).await.unwrap();
    }
    loop {
        let reply = client.emit_with_ack("count?", (), Duration::from_secs(30)).await.unwrap();
        if reply.values().unwrap()[0].as_u64() == Some(n) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    report("out", "pulselink", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
    client.close().await;
}

async fn pulselink_ack(url: &str, n: u64) {
    let client = pulselink_client(url).await;
    client.connect().await.unwrap();
    let mut us = Vec::with_capacity(n as usize);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        client.emit_with_ack("quiz:answer_submit", json!(i), Duration::from_secs(5)).await.unwrap();
        if i >= n / 10 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    report("ack", "pulselink", percentiles(us));
    client.close().await;
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

async fn pulselink_reconnect(url: &str) {
    let client = pulselink_client(url).await;
    let mut states = client.states();
    client.start().unwrap();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        for _ in std::io::stdin().lock().lines() {}
    });
    tokio::pin!(stdin_closed);
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            changed = states.changed() => {
                if changed.is_err() { break; }
                if *states.borrow_and_update() == pulselink::State::Connected {
                    println!("connected {:.3}", epoch_ms());
                }
            }
        }
    }
    report("reconnect", "pulselink", json!({}));
    client.close().await;
}

async fn rsio_connect(
    url: &str,
    on_event: Option<(Arc<AtomicU64>, Arc<tokio::sync::Notify>, u64)>,
) -> rust_socketio::asynchronous::Client {
    use rust_socketio::{TransportType, asynchronous::ClientBuilder};
    let mut b = ClientBuilder::new(url).transport_type(TransportType::Websocket);
    if let Some((count, done, n)) = on_event {
        b = b.on(EVENT, move |_payload, _client| {
            let c = count.fetch_add(1, Ordering::Relaxed) + 1;
            if c == n {
                done.notify_one();
            }
            async {}.boxed()
        });
    }
    b.connect().await.unwrap()
}

async fn rsio_in(url: &str, n: u64) {
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let client = rsio_connect(url, Some((count.clone(), done.clone(), n))).await;
    // Let the connection settle (rust_socketio has no connected signal on its async API).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    client.emit("blast", json!(n)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), done.notified()).await.expect("all events");
    let secs = started.elapsed().as_secs_f64();
    report("in", "rust_socketio", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
    let _ = client.disconnect().await;
}

async fn rsio_count(client: &rust_socketio::asynchronous::Client) -> u64 {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    client
        .emit_with_ack("count?", json!([]), Duration::from_secs(30), move |payload, _| {
            let tx = tx.clone();
            async move {
                if let rust_socketio::Payload::Text(v) = payload {
                    let _ = tx.send(v.first().and_then(Value::as_u64).unwrap_or(0));
                }
            }
            .boxed()
        })
        .await
        .unwrap();
    rx.recv().await.unwrap_or(0)
}

async fn rsio_out(url: &str, n: u64) {
    let client = rsio_connect(url, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let value = sample();
    let started = Instant::now();
    for _ in 0..n {
        client.emit(EVENT, value.clone()).await.unwrap();
    }
    while rsio_count(&client).await < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    report("out", "rust_socketio", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
    let _ = client.disconnect().await;
}

async fn rsio_ack(url: &str, n: u64) {
    let client = rsio_connect(url, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut us = Vec::with_capacity(n as usize);
    for i in 0..n + n / 10 {
        let tx = tx.clone();
        let t = Instant::now();
        client
            .emit_with_ack("quiz:answer_submit", json!(i), Duration::from_secs(5), move |_, _| {
                let _ = tx.send(());
                async {}.boxed()
            })
            .await
            .unwrap();
        rx.recv().await.unwrap();
        if i >= n / 10 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    report("ack", "rust_socketio", percentiles(us));
    let _ = client.disconnect().await;
}

/// The ceiling: tokio-tungstenite frames counted, no Socket.IO decoding, no JSON.
async fn raw_in(url: &str, n: u64) {
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    ws.next().await.unwrap().unwrap(); // open
    ws.send(Message::text("40")).await.unwrap();
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        if t.starts_with("40") {
            break;
        }
    }
    let started = Instant::now();
    ws.send(Message::text(format!("421[\"blast\",{n}]"))).await.unwrap();
    let mut seen = 0;
    while seen < n {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("42[") => seen += 1,
            Some(Ok(_)) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report("in", "raw", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
}
