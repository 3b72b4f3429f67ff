//! Presence as a kept view (`Client::presence`) against the Node server keeping presence as the
//! seed platforms do (`tests/node/server.js`): online/offline events, `presence:get_online`.
//! Three members of a room see each other; one drops and returns and the others' views
//! follow; a member offline while others came and went sees the truth once back.
//!
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::time::{Duration, Instant};

use pulselink::{Client, ClientConfig, Presence, PresenceConfig};
use pulselink_tests::{NodeServer, fast_reconnect};
use serde_json::json;

const T: Duration = Duration::from_secs(20);
const ROOM: &str = "r1";

fn figure(name: &str, criterion: &str, value: impl std::fmt::Display) {
    println!("RELIABILITY|{name}|{criterion}|{value}");
}

/// A client for `user`, subscribed to the room, with its presence view, connected.
async fn member(server: &NodeServer, user: &str) -> (Client, Presence) {
    let config = ClientConfig::new(&server.url())
        .unwrap()
        .with_static_auth(json!({ "userId": user }))
        .with_reconnect(fast_reconnect());
    let client = Client::new(config).unwrap();
    client
        .subscribe(
            "room:subscribe",
            json!({ "roomId": ROOM }),
            Some("room:unsubscribe"),
        )
        .await
        .unwrap();
    let presence = client.presence(PresenceConfig::new(ROOM));
    client.connect().await.unwrap();
    (client, presence)
}

/// Waits until `p` shows exactly `want` (its changes are the signal); returns how long.
async fn shows(p: &Presence, want: &[&str]) -> Duration {
    let started = Instant::now();
    let mut changes = p.changes();
    let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    tokio::time::timeout(T, async {
        while p.users() != want {
            let _ = changes.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("view {:?}, not {want:?}", p.users()));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_and_follow_a_drop_and_return() {
    let server = NodeServer::start().await;
    let (a, pa) = member(&server, "ann").await;
    let (_b, pb) = member(&server, "bob").await;
    let (c, pc) = member(&server, "cy").await;
    for p in [&pa, &pb, &pc] {
        shows(p, &["ann", "bob", "cy"]).await;
    }
    // Cy's network goes: the others see him leave.
    c.set_network_available(false).unwrap();
    shows(&pa, &["ann", "bob"]).await;
    shows(&pb, &["ann", "bob"]).await;
    // Back: everyone converges again, Cy by re-fetching.
    c.set_network_available(true).unwrap();
    let mut slowest = Duration::ZERO;
    for p in [&pa, &pb, &pc] {
        slowest = slowest.max(shows(p, &["ann", "bob", "cy"]).await);
    }
    // Each user once, however often the events repeat.
    let mut changes = pa.changes();
    a.emit("room:subscribe", json!({ "roomId": ROOM }))
        .await
        .unwrap();
    assert_eq!(pa.users(), ["ann", "bob", "cy"]);
    assert!(changes.try_recv().is_err(), "nothing changed");
    figure(
        "presence: drop and return",
        "three members' views converge to the room's users after one drops and returns",
        format!("{} ms after the return", slowest.as_millis()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_offline_while_others_came_and_went_sees_the_truth_when_back() {
    let server = NodeServer::start().await;
    let (a, pa) = member(&server, "ann").await;
    let (b, _pb) = member(&server, "bob").await;
    shows(&pa, &["ann", "bob"]).await;
    a.set_network_available(false).unwrap();
    // While Ann is away: Bob leaves, Dee arrives. Ann hears none of it.
    b.close().await;
    let (_d, pd) = member(&server, "dee").await;
    shows(&pd, &["dee"]).await;
    assert_eq!(pa.users(), ["ann", "bob"], "offline: no news");
    a.set_network_available(true).unwrap();
    let took = shows(&pa, &["ann", "dee"]).await;
    figure(
        "presence: offline while others came and went",
        "the view after reconnecting is the room's users (re-fetched; offline events were missed)",
        format!("{} ms after the return", took.as_millis()),
    );
}
