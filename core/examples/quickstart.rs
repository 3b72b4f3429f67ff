//! The README's quick start, compiled on every test run so it cannot drift from the API.
//!
//! `cargo run -p pulselink --example quickstart -- http://localhost:3000`

use std::time::Duration;

use pulselink::{AuthReason, AuthRequest, Client, ClientConfig, Interface, NetworkPath};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Metric {
    metric: String,
    value: f64,
}

/// Stands in for the app's token service: a refresh after a refusal returns a new token.
async fn fetch_token(reason: AuthReason) -> String {
    tokio::time::sleep(Duration::from_millis(5)).await; // the round trip to the token service
    match reason {
        AuthReason::Connect => "cached-token".into(),
        AuthReason::Refresh { .. } => "fresh-token".into(),
    }
}

#[tokio::main]
async fn main() -> pulselink::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://localhost:3000".into());
    let config = ClientConfig::new(&url)?.with_auth(|req: AuthRequest| async move {
        Ok(Some(json!({ "token": fetch_token(req.reason).await })))
    });
    let client = Client::new(config)?;
    let mut events = client.events(); // subscribe before connecting
    client.connect().await?; // waits until joined (or a definite failure)

    client
        .emit("session:feedback", json!({"rating": 5}))
        .await?; // buffered while offline
    let reply = client
        .emit_with_ack(
            "quiz:answer_submit",
            json!({"a": "B"}),
            Duration::from_secs(5),
        )
        .await?;
    println!("ack: {}", reply.args.get());
    let room = client.socket("/rooms/r1")?; // another namespace on the same connection
    room.emit("room:subscribe", json!({"roomId": "r1"})).await?;

    while let Some(ev) = events.recv().await {
        if ev.name() == "metric:recorded" {
            let metric: Metric = ev.first_arg()?; // args stay JSON text until asked for
            println!("{} = {}", metric.metric, metric.value);
        }
    }
    // What the platform reports (the Swift and Android adapters call these for you).
    client.network_changed(NetworkPath::available(Interface::Cellular))?;
    let flush = client.enter_background(Duration::from_secs(25)).await?; // flush, then close
    println!("{} sent, {} stored", flush.sent, flush.remaining);
    client.enter_foreground()?; // connects at once
    client.close().await;
    Ok(())
}
