//! Pulselink (and a raw tokio-tungstenite reader, the ceiling) as benchmark clients.
//! `pulselink-bench <in|out|ack|reconnect> <pulselink|pulselink-serde|raw> <url> <n>`

use std::{
    io::BufRead,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use pulselink_bench::{EVENT, parse_args, percentiles, report, runtime, sample};
use serde_json::json;

fn main() {
    let (mode, client, url, n) = parse_args();
    runtime().block_on(async move {
        match (mode.as_str(), client.as_str()) {
            ("in", "pulselink") => pulselink_in(&url, n, false).await,
            ("in", "pulselink-serde") => pulselink_in(&url, n, true).await,
            ("in", "raw") => raw_in(&url, n).await,
            ("out", "pulselink") => pulselink_out(&url, n).await,
            ("ack", "pulselink") => pulselink_ack(&url, n).await,
            ("reconnect", "pulselink") => pulselink_reconnect(&url).await,
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
