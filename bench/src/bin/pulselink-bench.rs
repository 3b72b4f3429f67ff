//! Pulselink (and a raw tokio-tungstenite reader, the ceiling) as benchmark clients.
//! `pulselink-bench <in|out|ack|reconnect> <pulselink|pulselink-serde|raw> <url> <n>`
//! (`in-emit` also takes `pulselink-unheld`: `read_hold` zero)
//!
//! Durability modes (client `pulselink`; a store file in a fresh temp dir):
//! `commit-full-1`, `commit-full-batch`, `commit-normal-1`, `commit-normal-batch` (n emits
//! of pre-encoded arguments while offline, 1 or `BATCH` in flight), `offline-rss` (n emits offline: RSS growth), `drain` (n
//! confirmed emits queued offline, then connect: time until all are acknowledged),
//! `resubscribe` (n subscriptions, then connect: time until the first outbox entry is acked).
//! `out-file`, `out-seq-file`: `out` and `out-seq` with a store file (`Durability::Normal`).
//! `BENCH_PROXY=URL` runs `in` and `ack` through that proxy.
//! `env-in`, `env-out`, `env-ack`: `in`, `out` and `ack` as JSON envelopes, against
//! `tests/node/envelope-server.js` (the URL is its `ws://…/ws`).
//! Radio modes (n seconds connected at the server's heartbeat): `radio-idle`, and `radio-low`
//! (one `Low` emit per second) with the battery-aware schedule (`pulselink`) or without it
//! (`pulselink-schedule-off`): radio wake-ups per hour and the fraction of time awake.

use std::{
    io::BufRead,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt, stream::FuturesUnordered};
use pulselink::{Durability, EmitOptions, EnvelopeOptions, LowLaneHold, Priority, Protocol, Transports};
use pulselink_bench::{EVENT, parse_args, peak_rss_kib, percentiles, report, runtime, sample};
use serde_json::json;

fn main() {
    let (mode, client, url, n) = parse_args();
    runtime().block_on(async move {
        match (mode.as_str(), client.as_str()) {
            ("in", "pulselink") => pulselink_in(&url, n, false, &mode).await,
            ("in", "pulselink-serde") => pulselink_in(&url, n, true, &mode).await,
            ("env-in", "pulselink") => pulselink_in(&url, n, false, &mode).await,
            ("in-emit", "pulselink") => {
                pulselink_in_emit(&url, n, Transports::WebSocket, true, &mode).await
            }
            ("in-emit", "pulselink-unheld") => {
                pulselink_in_emit(&url, n, Transports::WebSocket, false, &mode).await
            }
            ("in-emit-polling", "pulselink") => {
                pulselink_in_emit(&url, n, Transports::Polling, true, &mode).await
            }
            ("in", "raw") => raw_in(&url, n).await,
            ("out", "pulselink") => pulselink_out(&url, n, 256, false, false, &mode).await,
            ("env-out", "pulselink") => pulselink_out(&url, n, 256, false, false, &mode).await,
            ("out-seq", "pulselink") => pulselink_out(&url, n, 1, false, false, &mode).await,
            ("out-file", "pulselink") => pulselink_out(&url, n, 256, true, false, &mode).await,
            ("out-seq-file", "pulselink") => pulselink_out(&url, n, 1, true, false, &mode).await,
            ("out-seq-file-task", "pulselink") => pulselink_out(&url, n, 1, true, true, &mode).await,
            ("ack", "pulselink") => pulselink_ack(&url, n, &mode).await,
            ("env-ack", "pulselink") => pulselink_ack(&url, n, &mode).await,
            ("reconnect", "pulselink") => pulselink_reconnect(&url).await,
            ("commit-full-1", "pulselink") => {
                commit(&url, n, Durability::Full, 1, false, &mode).await
            }
            ("commit-full-batch", "pulselink") => {
                commit(&url, n, Durability::Full, BATCH, false, &mode).await
            }
            ("commit-full-batch-encrypted", "pulselink") => {
                commit(&url, n, Durability::Full, BATCH, true, &mode).await
            }
            ("commit-normal-1", "pulselink") => {
                commit(&url, n, Durability::Normal, 1, false, &mode).await
            }
            ("commit-normal-batch", "pulselink") => {
                commit(&url, n, Durability::Normal, BATCH, false, &mode).await
            }
            ("offline-rss", "pulselink") => offline_rss(&url, n).await,
            ("drain", "pulselink") => drain(&url, n).await,
            ("resubscribe", "pulselink") => resubscribe(&url, n).await,
            ("radio-idle", "pulselink") => radio(&url, n, &mode, None).await,
            ("radio-low", "pulselink") => radio(&url, n, &mode, Some(LowLaneHold::Always)).await,
            ("radio-low", "pulselink-schedule-off") => {
                radio(&url, n, &mode, Some(LowLaneHold::Never)).await
            }
            other => panic!("unknown mode/client {other:?}"),
        }
    });
}

/// A client of `url`; `envelope`: speaking JSON envelopes to the envelope test server
/// (`tests/node/envelope-server.js`, which accepts the token `good`) rather than Socket.IO.
fn client_for(url: &str, envelope: bool) -> pulselink::Client {
    // WebSocket, as the peers use: the default's fallback to polling must not decide a row.
    let mut config = pulselink::ClientConfig::new(url).unwrap().with_transports(Transports::WebSocket);
    if envelope {
        config = config
            .with_protocol(Protocol::Envelope(EnvelopeOptions::default()))
            .with_static_auth(json!({"token": "good", "userId": "u1", "sessionId": "s1"}));
    }
    // `BENCH_PROXY=URL`: through that proxy (the proxy-hop rows).
    if let Ok(proxy) = std::env::var("BENCH_PROXY") {
        config = config.with_proxy(pulselink::ProxyConfig::via(&proxy).unwrap());
    }
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

/// `n` events the server writes pre-encoded (`blast`); mode `env-in`: as JSON envelopes.
async fn pulselink_in(url: &str, n: u64, typed: bool, mode: &str) {
    let client = client_for(url, mode.starts_with("env-"));
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
    report(mode, client_name, json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs, "checksum": checksum}));
    client.close().await;
}

/// Inbound events the server sends through `socket.emit` (`emit-many`), on `transports`;
/// without `held`, as client `pulselink-unheld`, with `read_hold` zero (every frame read the
/// moment it arrives), the A/B of read pacing.
async fn pulselink_in_emit(url: &str, n: u64, transports: Transports, held: bool, mode: &str) {
    let mut config = pulselink::ClientConfig::new(url).unwrap().with_transports(transports);
    if !held {
        config.read_hold = Duration::ZERO;
    }
    let name = if held { "pulselink" } else { "pulselink-unheld" };
    let client = pulselink::Client::new(config).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    let started = Instant::now();
    client.emit_with_ack("emit-many", json!(n), Duration::from_secs(10)).await.unwrap();
    let mut seen = 0u64;
    let mut batch = Vec::with_capacity(512);
    while seen < n {
        if events.recv_many(&mut batch, 512).await == 0 {
            panic!("stream ended after {seen} events");
        }
        seen += batch.drain(..).filter(|ev| ev.name() == EVENT).count() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let m = client.metrics().await.unwrap();
    report(
        mode,
        name,
        json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs,
               "inbound_reads": m.inbound_reads, "held_reads": m.held_reads}),
    );
    client.close().await;
}

/// Durable emits (each awaits the store's commit), `in_flight` at a time: 1 is an app that
/// awaits every emit, 256 a producer that keeps many in flight and gets group commit. With
/// `file`, the store is a file (`Durability::Normal`), as an app that survives a kill has it;
/// otherwise the default in-memory store.
/// `n` emits, `in_flight` at a time, into a store file or not; with `spawned`, the loop runs
/// in a task of its own (on a worker of the multi-threaded runtime) rather than in the body
/// `block_on` runs on the main thread.
async fn pulselink_out(url: &str, n: u64, in_flight: usize, file: bool, spawned: bool, mode: &str) {
    let scratch = Scratch::new();
    let client = if file {
        durable_client(url, &scratch.store(), Durability::Normal, None)
    } else {
        client_for(url, mode.starts_with("env-"))
    };
    client.connect().await.unwrap();
    let started = Instant::now();
    if spawned {
        let client = client.clone();
        tokio::spawn(async move { emit_many(&client, EVENT, n, in_flight, EmitOptions::default()).await })
            .await
            .unwrap();
    } else {
        emit_many(&client, EVENT, n, in_flight, EmitOptions::default()).await;
    }
    loop {
        let reply = client.emit_with_ack("count?", (), Duration::from_secs(30)).await.unwrap();
        if reply.values().unwrap()[0].as_u64() == Some(n) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    report(mode, "pulselink", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
    client.close().await;
}

async fn pulselink_ack(url: &str, n: u64, mode: &str) {
    let client = client_for(url, mode.starts_with("env-"));
    client.connect().await.unwrap();
    let mut us = Vec::with_capacity(n as usize);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        client.emit_with_ack("quiz:answer_submit", json!(i), Duration::from_secs(5)).await.unwrap();
        if i >= n / 10 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    report(mode, "pulselink", percentiles(us));
    client.close().await;
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

async fn pulselink_reconnect(url: &str) {
    let client = client_for(url, false);
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

/// Emits in flight for the group-commit modes.
const BATCH: usize = 1024;

/// A fresh store path; the directory is removed by [`Scratch::drop`].
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pulselink-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn store(&self) -> std::path::PathBuf {
        self.0.join("outbox.db")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn durable_client(
    url: &str,
    store: &std::path::Path,
    durability: Durability,
    key: Option<pulselink::OutboxKey>,
) -> pulselink::Client {
    let mut config = pulselink::ClientConfig::new(url)
        .unwrap()
        .with_store(store)
        .with_transports(Transports::WebSocket);
    config.store.durability = durability;
    config.store.encryption_key = key;
    pulselink::Client::new(config).unwrap()
}

/// `n` emits of `event`, `in_flight` at a time.
async fn emit_many(
    client: &pulselink::Client,
    event: &str,
    n: u64,
    in_flight: usize,
    options: EmitOptions,
) {
    let value = sample();
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        pending.push(client.emit_with(event, value.clone(), options.clone()));
        if pending.len() >= in_flight {
            pending.next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
}

/// Measures the store: the arguments are already JSON text (as a gateway forwarding lines
/// has them), so building them costs a copy, not a serialization. `encrypted` seals every
/// payload (`StoreConfig::encryption_key`).
async fn commit(
    url: &str,
    n: u64,
    durability: Durability,
    in_flight: usize,
    encrypted: bool,
    mode: &str,
) {
    let scratch = Scratch::new();
    let key = encrypted.then(|| pulselink::OutboxKey::generate().unwrap());
    let client = durable_client(url, &scratch.store(), durability, key);
    let text = format!("[{}]", sample());
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        let args = pulselink::Args::from_json_array(text.as_str()).unwrap();
        pending.push(client.emit(EVENT, args));
        if pending.len() >= in_flight {
            pending.next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    report(mode, "pulselink", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
    client.close().await;
}

async fn offline_rss(url: &str, n: u64) {
    let scratch = Scratch::new();
    let client = durable_client(url, &scratch.store(), Durability::Normal, None);
    // Warm up the allocator and SQLite's page cache before the baseline.
    emit_many(&client, EVENT, 1_000, 256, EmitOptions::default()).await;
    let before = peak_rss_kib();
    let started = Instant::now();
    emit_many(&client, EVENT, n, 256, EmitOptions::default()).await;
    let secs = started.elapsed().as_secs_f64();
    let pending = client.outbox().stats().await.unwrap().pending;
    assert_eq!(pending, n + 1_000);
    report("offline-rss", "pulselink", json!({"events": n, "secs": secs, "rss_before_kib": before, "rss_growth_kib": peak_rss_kib() - before}));
    client.close().await;
}

async fn drain(url: &str, n: u64) {
    let scratch = Scratch::new();
    let client = durable_client(url, &scratch.store(), Durability::Normal, None);
    // Queued while offline (the client has not started), each kept until the server acks it
    // (the test server acks `tick`), numbered so the server can check the order.
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        // FuturesUnordered first polls futures in the order they were pushed, so the emits
        // reach the outbox in `i` order (256 in flight).
        pending.push(client.emit_with("tick", json!({"n": i}), EmitOptions::default().confirm()));
        if pending.len() >= 256 {
            pending.next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
    let started = Instant::now();
    client.connect().await.unwrap();
    client.outbox().drained().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    // Checked, not assumed: the server counted the ticks and any that came out of order.
    let reply = client.emit_with_ack("ticks?", json!(null), Duration::from_secs(10)).await.unwrap();
    let (seen,): (serde_json::Value,) = reply.args_as().unwrap();
    let (ticks, out_of_order) = (seen["ticks"].as_u64().unwrap(), seen["outOfOrder"].as_u64().unwrap());
    assert_eq!(ticks, n, "the server received every tick once");
    report(
        "drain",
        "pulselink",
        json!({"events": n, "secs": secs, "acked_per_sec": n as f64 / secs, "out_of_order": out_of_order}),
    );
    client.close().await;
}

/// Radio wake-ups over `secs` seconds connected at the server's heartbeat: idle, or with one
/// `Low` emit per second under the battery-aware schedule (`hold`).
async fn radio(url: &str, secs: u64, mode: &str, hold: Option<LowLaneHold>) {
    let mut config = pulselink::ClientConfig::new(url).unwrap().with_transports(Transports::WebSocket);
    if let Some(hold) = hold {
        config.outbox.low_lane.hold = hold;
    }
    let client = pulselink::Client::new(config).unwrap();
    client.connect().await.unwrap();
    let started = Instant::now();
    if hold.is_some() {
        let low = EmitOptions {
            priority: Priority::Low,
            ..EmitOptions::default()
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while started.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            client.emit_with("tick", json!({"n": 0, "low": true}), low.clone()).await.unwrap();
        }
    } else {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let m = client.metrics().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let client_name = match hold {
        Some(LowLaneHold::Never) => "pulselink-schedule-off",
        _ => "pulselink",
    };
    report(
        mode,
        client_name,
        json!({"secs": secs, "wakeups": m.radio_wakeups, "wakeups_per_hour": m.radio_wakeups as f64 * 3600.0 / secs,
               "active_fraction": m.radio_active.as_secs_f64() / secs}),
    );
    client.close().await;
}

async fn resubscribe(url: &str, n: u64) {
    let scratch = Scratch::new();
    let client = durable_client(url, &scratch.store(), Durability::Normal, None);
    for i in 0..n {
        let room = json!({"roomId": format!("room_{i}")});
        client.subscribe("room:subscribe", room, Some("room:unsubscribe")).await.unwrap();
    }
    let started = Instant::now();
    client.connect().await.unwrap();
    // The outbox flows only after every subscription's ack: this ack marks the end.
    client.emit_with_ack("quiz:answer_submit", json!("A"), Duration::from_secs(10)).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    report("resubscribe", "pulselink", json!({"subscriptions": n, "ms": secs * 1000.0}));
    client.close().await;
}
