//! A child process for the disk-full test: run with its store on a small tmpfs (the test
//! starts it under `unshare --map-root-user --mount`, so no privilege is needed and nothing
//! stays mounted). It fills the disk through `Client::emit`, checks what the full disk did,
//! frees space and emits again, then prints one JSON line of what it saw.
//!
//! Usage: `pl-diskfull DIR` (DIR: the tmpfs, holding a filler file `filler` to delete later).

use pulselink::{Client, ClientConfig, Error};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: pl-diskfull DIR"));
    let store = dir.join("outbox.db");
    // Nothing listens on port 9: every emit stays in the outbox.
    let config = ClientConfig::new("http://127.0.0.1:9")
        .expect("url")
        .with_store(&store);
    let client = Client::new(config).expect("client");
    let pad = "x".repeat(1_000);
    let mut stored = 0u64;
    let error = loop {
        match client.emit("tick", json!({"n": stored, "pad": pad})).await {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "the disk never filled");
    };
    let disk_full = matches!(error, Error::DiskFull(_));
    let pending_when_full = client.outbox().stats().await.expect("stats").pending;
    let listed = client.outbox().list(usize::MAX).await.expect("list");
    let in_order = listed
        .iter()
        .enumerate()
        .all(|(i, e)| e.args_json.contains(&format!("\"n\":{i},")));
    // Space comes back: the same client stores again.
    std::fs::remove_file(dir.join("filler")).expect("remove the filler");
    let after = client
        .emit("tick", json!({"n": stored, "pad": pad}))
        .await
        .map(|()| stored + 1);
    client.close().await;
    // Reopened, the file holds everything that was ever confirmed.
    let config = ClientConfig::new("http://127.0.0.1:9")
        .expect("url")
        .with_store(&store);
    let again = Client::new(config).expect("reopen");
    let reopened = again.outbox().stats().await.expect("stats").pending;
    again.close().await;
    println!(
        "{}",
        json!({
            "stored_before_full": stored,
            "error": error.to_string(),
            "disk_full": disk_full,
            "pending_when_full": pending_when_full,
            "listed_when_full": listed.len(),
            "listed_in_order": in_order,
            "stored_after_space_returned": after.as_ref().ok(),
            "error_after_space_returned": after.err().map(|e| e.to_string()),
            "pending_after_reopen": reopened,
        })
    );
}
