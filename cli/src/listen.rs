//! `pulselink listen`: inbound events as JSON lines on stdout.

use std::io::Write;

use pulselink::Client;
use serde_json::value::RawValue;

use crate::{Connection, log_states};

pub(crate) async fn run(
    conn: Connection,
    namespaces: Vec<String>,
    count: Option<u64>,
) -> pulselink::Result<()> {
    let client = Client::new(conn.config(&namespaces)?)?;
    log_states(&client);
    let mut events = client.events();
    for ns in namespaces.iter().skip(1) {
        client.socket(ns)?;
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
