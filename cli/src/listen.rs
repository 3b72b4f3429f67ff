//! `pulselink listen`: inbound events as JSON lines on stdout.

use std::io::Write;

use pulselink::Client;
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
    let mut stdout = std::io::stdout().lock();
    while let Some(ev) = events.recv().await {
        // The args are already validated JSON: splice them in without re-encoding.
        let args: &RawValue = serde_json::from_str(ev.args_json())
            .map_err(|e| pulselink::Error::InvalidArgs(e.to_string()))?;
        let line = serde_json::json!({
            "namespace": ev.namespace(),
            "event": ev.name(),
            "args": args,
        });
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break; // stdout closed (e.g. piped into `head`)
        }
        seen += 1;
        if count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    drop(stdout);
    client.close().await;
    Ok(())
}
