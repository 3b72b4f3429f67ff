//! rust_socketio 0.6 as a benchmark peer.
//! `peer-bench <in|out|ack> rust_socketio <url> <n>`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use pulselink_bench::{EVENT, parse_args, percentiles, report, runtime, sample};
use serde_json::json;

fn main() {
    let (mode, client, url, n) = parse_args();
    assert_eq!(client, "rust_socketio");
    runtime().block_on(async move {
        match mode.as_str() {
            "in" => rsio_in(&url, n).await,
            "out" => rsio_out(&url, n, false).await,
            "out-task" => rsio_out(&url, n, true).await,
            "ack" => rsio_ack(&url, n).await,
            other => panic!("unknown mode {other:?}"),
        }
    });
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
                    if std::env::var("BENCH_DEBUG").is_ok() {
                        eprintln!("ack payload {v:?}");
                    }
                    // rust_socketio may wrap the ack arguments in one more array.
                    let first = v.first().map(|f| f.get(0).unwrap_or(f).clone());
                    let _ = tx.send(first.and_then(|f| f.as_u64()).unwrap_or(0));
                }
            }
            .boxed()
        })
        .await
        .unwrap();
    rx.recv().await.unwrap_or(0)
}

/// Sequential emits; with `spawned`, the loop runs in a task of its own (on a worker of the
/// multi-threaded runtime) rather than in the body `block_on` runs on the main thread.
async fn rsio_out(url: &str, n: u64, spawned: bool) {
    let client = rsio_connect(url, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let value = sample();
    let started = Instant::now();
    let emits = {
        let client = client.clone();
        async move {
            for _ in 0..n {
                client.emit(EVENT, value.clone()).await.unwrap();
            }
        }
    };
    if spawned {
        tokio::spawn(emits).await.unwrap();
    } else {
        emits.await;
    }
    while { let c = rsio_count(&client).await; if std::env::var("BENCH_DEBUG").is_ok() { eprintln!("count {c}"); } c < n } {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mode = if spawned { "out-task" } else { "out" };
    report(mode, "rust_socketio", json!({"events": n, "secs": secs, "events_per_sec": n as f64 / secs}));
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

