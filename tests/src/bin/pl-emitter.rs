//! A child process for the durability tests: emits `tick {n}` events durably, printing
//! `ok <n>` once each emit returned Ok, then waits until the outbox is drained and prints
//! `drained`. The tests SIGKILL it at random instants.
//!
//! Usage: `pl-emitter URL STORE FROM COUNT` (env `PL_HOLD_ACK=1`: ask the test server to hold
//! the first acknowledgement of each tick, see `tests/node/server.js`; `PL_NO_ACK=1`: emit
//! without asking for acknowledgements, so an entry is delivered once flushed to the link)

use std::{io::Write, time::Instant};

use pulselink::{Client, ClientConfig, EmitOptions};
use pulselink_tests::fast_reconnect;
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, store, from, count] = &args[..] else {
        eprintln!("usage: pl-emitter URL STORE FROM COUNT");
        std::process::exit(2);
    };
    let from: u64 = from.parse().expect("FROM is a number");
    let count: u64 = count.parse().expect("COUNT is a number");
    let config = ClientConfig::new(url)
        .expect("url")
        .with_store(store)
        .with_reconnect(fast_reconnect());
    let client = Client::new(config).expect("client");
    client.start().expect("start");
    let hold = std::env::var_os("PL_HOLD_ACK").is_some();
    let options = match std::env::var_os("PL_NO_ACK") {
        Some(_) => EmitOptions::default(),
        None => EmitOptions::default().confirm(),
    };
    let mut out = std::io::stdout().lock();
    for n in from..from + count {
        let tick = json!({ "n": n, "holdAckOnce": hold });
        client
            .emit_with("tick", tick, options.clone())
            .await
            .expect("emit");
        writeln!(out, "ok {n}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
    let started = Instant::now();
    client.outbox().drained().await.expect("drained");
    writeln!(out, "drained in {:?}", started.elapsed()).expect("stdout");
    client.close().await;
}
