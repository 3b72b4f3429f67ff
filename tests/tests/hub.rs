//! Many clients in one process through a `Hub`, against the official Node server: one store
//! thread for all of them, each client its own identity, outbox and file.
//!
//! One test in this binary, so the process's thread count is this test's alone.

use std::{sync::Arc, time::Duration};

use pulselink::{AuthProvider, ClientConfig, Error, Hub, Notice, State, StaticAuth};
use pulselink_tests::{NodeServer, read_ledger, scratch};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// Clients the hub holds.
const CLIENTS: usize = 200;

/// Threads the process may gain for all of them: the hub's store thread.
const THREADS_FOR_A_HUB: u64 = 1;

fn threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_holds_many_durable_clients_on_one_store_thread_each_with_its_own_outbox() {
    let (dir, ledger, _) = scratch("hub");
    let server = NodeServer::start_with_ledger(&ledger).await;
    // Warm the runtime first: its worker and blocking threads are not the hub's.
    let warm = pulselink::Client::new(ClientConfig::new(&server.url()).unwrap()).unwrap();
    warm.connect().await.unwrap();
    warm.close().await;
    drop(warm);
    let before = threads();

    let hub = Hub::new().unwrap();
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let config = ClientConfig::new(&server.url())
            .unwrap()
            .with_store(dir.join(format!("device-{c}.db")));
        clients.push(hub.client(config).unwrap());
    }
    // The same file twice is refused, hub or not: one client per store file.
    let twice = hub.client(
        ClientConfig::new(&server.url())
            .unwrap()
            .with_store(dir.join("device-0.db")),
    );
    assert!(matches!(twice, Err(Error::Store(_))), "{twice:?}");

    let connects = clients.iter().map(|c| c.connect());
    for r in futures_util::future::join_all(connects).await {
        r.unwrap();
    }
    let gained = threads() - before;
    assert!(
        gained <= THREADS_FOR_A_HUB,
        "{CLIENTS} hub clients added {gained} threads"
    );

    // A hub's client reads 256 bytes at a time: a message many times that arrives whole.
    let blob = "x".repeat(200_000);
    let echoed = clients[1]
        .emit_with_ack("echo", json!({ "blob": blob }), T)
        .await
        .unwrap();
    let echoed = echoed.values().unwrap();
    assert_eq!(
        echoed[0]["blob"],
        blob.as_str(),
        "200 kB through a 256-byte read buffer"
    );

    // Every client emits acknowledged ticks of its own, and one client closes halfway: the
    // others' entries are untouched.
    let emits = clients.iter().enumerate().map(|(c, client)| async move {
        for i in 0..5u64 {
            let n = c as u64 * 100 + i;
            match client.emit_with_ack("tick", json!({"n": n}), T).await {
                Ok(_) => {}
                // The client that closes meanwhile.
                Err(_) if c == 0 => break,
                Err(e) => panic!("client {c}, tick {i}: {e}"),
            }
        }
    });
    let closing = clients[0].clone();
    let (_, ()) = tokio::join!(futures_util::future::join_all(emits), async move {
        closing.close().await;
    });
    // The closed client's emits may have failed with Closed; everything else arrived.
    let lines = read_ledger(&ledger);
    let mut delivered: Vec<u64> = lines.iter().filter(|l| !l.dup).map(|l| l.n).collect();
    delivered.sort_unstable();
    let expected: Vec<u64> = (1..CLIENTS as u64)
        .flat_map(|c| (0..5).map(move |i| c * 100 + i))
        .collect();
    let others: Vec<u64> = delivered.iter().copied().filter(|n| *n >= 100).collect();
    assert_eq!(others, expected, "every other client's ticks, once each");
    // Each client has its own identity: its keys carry its own store's id.
    let mut ids: Vec<&str> = lines
        .iter()
        .filter(|l| l.n >= 100)
        .map(|l| l.key.rsplit_once('-').unwrap().0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CLIENTS - 1, "one key prefix per client");
    for client in &clients[1..] {
        assert_eq!(client.state(), State::Connected);
    }

    // The hub's totals are its clients' own counts, without a listener on any of them.
    let (senders, each) = (&clients[1..11], 50u64);
    let before = hub.stats();
    let (mut sent, mut received) = (0, 0);
    for client in senders {
        let earlier = client.metrics().await.unwrap().events_received;
        client.emit_with_ack("blast", json!(each), T).await.unwrap();
        // The server writes the blast in one go after answering it: the answer to the next
        // emit comes behind it.
        client.emit_with_ack("count?", (), T).await.unwrap();
        // A round trip to the engine, which adds to the hub's totals at the end of each step:
        // the step that read the echo's answer has ended.
        let metrics = client.metrics().await.unwrap();
        assert_eq!(metrics.events_received - earlier, each);
        (sent, received) = (
            sent + metrics.events_sent,
            received + metrics.events_received,
        );
    }
    let after = hub.stats();
    assert_eq!(
        after.events_received - before.events_received,
        senders.len() as u64 * each
    );
    assert!(
        after.events_received >= received,
        "{after:?}, {received} received"
    );
    assert!(after.events_sent - before.events_sent >= senders.len() as u64);
    assert!(after.events_sent >= sent, "{after:?}, {sent} sent");

    // Every client's notices on the hub's one channel, each naming its client: a refused
    // client's refusal names it, a welcome one's join names that one.
    assert_eq!(clients[0].hub_index(), Some(0));
    assert_eq!(clients[CLIENTS - 1].hub_index(), Some(CLIENTS as u64 - 1));
    // Both on one shared configuration, the refused one with a token of its own.
    let mut fleet = hub.notices();
    let stored = hub.share(
        ClientConfig::new(&server.url())
            .unwrap()
            .with_store(dir.join("shared.db")),
    );
    assert!(
        matches!(&stored, Err(Error::InvalidConfig(m)) if m.contains("its own")),
        "{stored:?}"
    );
    let shared = hub
        .share(ClientConfig::new(&server.url()).unwrap())
        .unwrap();
    let bad: Arc<dyn AuthProvider> = Arc::new(StaticAuth(json!({ "token": "bad" })));
    let refused = hub.shared_client(&shared, Some(bad)).unwrap();
    let welcome = hub.shared_client(&shared, None).unwrap();
    let (refused_at, welcome_at) = (refused.hub_index().unwrap(), welcome.hub_index().unwrap());
    assert_ne!(refused_at, welcome_at);
    refused.start().unwrap();
    welcome.start().unwrap();
    let (mut refusal, mut joined) = (false, false);
    tokio::time::timeout(T, async {
        while !(refusal && joined) {
            let n = fleet.recv().await.unwrap();
            match (&n.notice, n.client) {
                // The other clients are connected and may (rarely) reconnect meanwhile.
                (_, c) if c != refused_at && c != welcome_at => {}
                (Notice::ConnectError { .. }, c) => {
                    assert_eq!(c, refused_at, "{n:?}");
                    refusal = true;
                }
                (Notice::Connected { .. }, c) => {
                    assert_eq!(c, welcome_at, "{n:?}");
                    joined = true;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("both clients' notices on the hub's channel");
}
