//! A child client process driven by commands on stdin, for tests that must freeze, resume or
//! kill the client itself (SIGSTOP/SIGCONT).
//!
//! Usage: `pl-scripted URL STORE`. Prints `connected` once connected, then for each stdin line:
//! - `emit A B`: emits `tick {n}` for n in A..B durably, in order; prints `ok B`;
//! - `drain`: waits until the server has acknowledged everything; prints `drained`;
//! - `quit` (or end of input): closes the client and exits.
//!
//! Every notice is printed as `notice <unix ms> <kind>`, the wall clock so the parent can
//! compare it with when it resumed this process (kinds: `connected`, `disconnected`,
//! `attempt <n>`, `failed`).

use std::{
    io::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use pulselink::{Client, ClientConfig, EmitOptions, Notice};
use pulselink_tests::fast_reconnect;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, store] = &args[..] else {
        eprintln!("usage: pl-scripted URL STORE");
        std::process::exit(2);
    };
    let config = ClientConfig::new(url)
        .expect("url")
        .with_store(store)
        .with_reconnect(fast_reconnect());
    let client = Client::new(config).expect("client");
    let mut notices = client.notices();
    tokio::spawn(async move {
        while let Ok(n) = notices.recv().await {
            let kind = match n {
                Notice::Connected { .. } => "connected".to_owned(),
                Notice::Disconnected { reason } => format!("disconnected {reason:?}"),
                Notice::ReconnectAttempt { attempt } => format!("attempt {attempt}"),
                Notice::ConnectFailed { .. } => "failed".to_owned(),
                _ => continue,
            };
            say(&format!("notice {} {kind}", unix_ms()));
        }
    });
    client.connect().await.expect("connect");
    say("connected");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["emit", from, to] => {
                let (from, to): (u64, u64) = (from.parse().expect("A"), to.parse().expect("B"));
                for n in from..to {
                    client
                        .emit_with("tick", json!({ "n": n }), EmitOptions::default().confirm())
                        .await
                        .expect("emit");
                }
                say(&format!("ok {to}"));
            }
            ["drain"] => {
                client.outbox().drained().await.expect("drained");
                say("drained");
            }
            ["quit"] => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
    client.close().await;
}
