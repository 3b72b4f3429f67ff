//! `pulselink listen`: inbound events as JSON lines on stdout.

use std::io::{BufWriter, Write};

use pulselink::Client;
use serde::Serialize;
use serde_json::{Value, value::RawValue};

use crate::{connection::Connection, states::log_states};

/// A `--subscribe EVENT=JSON` option: the event sent on every connect and its argument.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    event: String,
    arg: Value,
}

/// Parses `EVENT=JSON`; the JSON is the event's single argument.
pub(crate) fn parse_subscription(s: &str) -> Result<Subscription, String> {
    let (event, json) = s
        .split_once('=')
        .ok_or_else(|| format!("expected EVENT=JSON, got {s:?}"))?;
    if event.is_empty() {
        return Err("the subscription's event name is empty".into());
    }
    let arg = serde_json::from_str(json).map_err(|e| format!("subscription JSON: {e}"))?;
    Ok(Subscription {
        event: event.to_owned(),
        arg,
    })
}

/// Events taken from the client per batch written.
const BATCH: usize = 1024;

/// One line of output.
#[derive(Serialize)]
struct Line<'a> {
    namespace: &'a str,
    event: &'a str,
    args: &'a RawValue,
}

/// Connects, subscribes, and prints events until `count` or until stdout closes.
pub(crate) async fn run(
    conn: Connection,
    namespaces: Vec<String>,
    count: Option<u64>,
    subscriptions: Vec<Subscription>,
) -> pulselink::Result<()> {
    let client = Client::new(conn.config(&namespaces)?)?;
    log_states(&client);
    let mut events = client.events();
    for ns in namespaces.iter().skip(1) {
        client.socket(ns)?;
    }
    // Declared before connecting, so they go out (and are answered) on every connect before
    // anything else. The listener's store is in memory: nothing outlives the run.
    for s in subscriptions {
        client.subscribe(&s.event, s.arg, None).await?;
    }
    client.connect().await?;
    let mut seen = 0u64;
    // Written in batches: everything ready is written, then flushed once before waiting for
    // more, so a reader (a terminal, `jq`, a file) sees each event as soon as the client
    // would have handed over the next one, without a write per event at high rates.
    let mut stdout = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut batch = Vec::with_capacity(BATCH);
    'events: while events.recv_many(&mut batch, BATCH).await > 0 {
        for ev in batch.drain(..) {
            // The args are already validated JSON: splice them in without re-encoding.
            let line = Line {
                namespace: ev.namespace(),
                event: ev.name(),
                args: serde_json::from_str(ev.args_json())
                    .map_err(|e| pulselink::Error::InvalidArgs(e.to_string()))?,
            };
            let written = serde_json::to_writer(&mut stdout, &line)
                .map_err(std::io::Error::from)
                .and_then(|_| stdout.write_all(b"\n"));
            if written.is_err() {
                break 'events; // stdout closed (e.g. piped into `head`)
            }
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                break 'events;
            }
        }
        if stdout.flush().is_err() {
            break;
        }
    }
    let _ = stdout.flush();
    drop(stdout);
    client.close().await;
    Ok(())
}
