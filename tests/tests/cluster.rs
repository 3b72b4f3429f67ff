//! Pulselink against a real Socket.IO cluster: three official Socket.IO 4.8 nodes joined by
//! `@socket.io/redis-streams-adapter` (connection state recovery on), Redis, and nginx in
//! front (`tests/src/cluster.rs`). Failover with recovery, a crashed node against
//! socket.io-client in the same setup, broadcasts across nodes, long-polling behind the
//! balancer with and without sticky sessions, a rolling restart under durable traffic.
//!
//! Prints `RELIABILITY|…` lines for `tests/RELIABILITY.md`.

use std::{
    collections::BTreeSet,
    process::Stdio,
    time::{Duration, Instant},
};

use pulselink::{Client, ClientConfig, Error, Notice, ReconnectPolicy, Transports};
use pulselink_tests::{
    ask,
    cluster::{Balance, Cluster, ClusterOptions},
    node_dir,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::mpsc,
};

const T: Duration = Duration::from_secs(20);

/// Room events the failover tests publish, and their rate per second (the scenario).
const EVENTS: u64 = 1_000;
const RATE: u64 = 200;

/// A crashed node at default settings: events lost while the client finds another node, at
/// most one second's worth (the default backoff retries within 250 ms).
const MAX_LOST_ON_CRASH: u64 = RATE;

/// Graceful failover at default settings: a node's shutdown to events flowing again from
/// another node, at most this long (the longest silence between two room events, which at
/// 200/s are 5 ms apart when nothing fails).
const FAILOVER_GAP: Duration = Duration::from_secs(1);

/// Room events the Redis streams adapter may skip for a restored session (published between
/// its last read of the stream for that session and the socket rejoining its rooms; a race
/// in the adapter, not the client). Each must be one the new node never sent.
const MAX_SKIPPED_BY_ADAPTER: usize = 3;

fn report(name: &str, criterion: &str, figure: &str) {
    println!("RELIABILITY|{name}|{criterion}|{figure}");
}

/// A room event as an app saw it: when, its `n`, how many arguments reached the app.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    n: u64,
    argc: usize,
}

/// A Pulselink client subscribed to room `r1` through `url` with default settings; its room
/// events arrive on the receiver.
async fn pulselink_subscriber(url: &str) -> (Client, mpsc::UnboundedReceiver<Seen>) {
    let client = Client::new(ClientConfig::new(url).unwrap()).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    client
        .subscribe("room:subscribe", json!({"roomId": "r1"}), None)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if ev.name() != "room:event" {
                continue;
            }
            let args = ev.args().unwrap();
            let n = args[0]["n"].as_u64().unwrap();
            if tx
                .send(Seen {
                    at: Instant::now(),
                    n,
                    argc: args.len(),
                })
                .is_err()
            {
                break;
            }
        }
    });
    (client, rx)
}

/// socket.io-client (`tests/node/cluster-subscriber.js`) subscribed to room `r1` through
/// `url`; returns the node it landed on, its room events, and whether a later connect
/// recovered the session.
async fn socketio_subscriber(
    url: &str,
) -> (
    tokio::process::Child,
    String,
    mpsc::UnboundedReceiver<Seen>,
    mpsc::UnboundedReceiver<bool>,
) {
    let mut child = Command::new("node")
        .arg(node_dir().join("cluster-subscriber.js"))
        .args([url, "r1", "room:event"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let node = tokio::time::timeout(T, lines.next_line())
        .await
        .expect("socket.io-client subscribed in time")
        .unwrap()
        .and_then(|l| l.strip_prefix("ready ").map(str::to_owned))
        .expect("ready <node>");
    let (tx, rx) = mpsc::unbounded_channel();
    let (connects_tx, connects) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["event", n, argc] => {
                    let _ = tx.send(Seen {
                        at,
                        n: n.parse().unwrap(),
                        argc: argc.parse().unwrap(),
                    });
                }
                ["connect", recovered] => {
                    let _ = connects_tx.send(recovered == "true");
                }
                // Not a panic here: it would end this task unseen and the reference would
                // look like it lost everything.
                _ => eprintln!("cluster-subscriber said {line:?}"),
            }
        }
    });
    (child, node, rx, connects)
}

/// A Pulselink client straight to one node, asking it to publish the room events.
async fn publish_from(url: &str) -> Client {
    let publisher = Client::new(ClientConfig::new(url).unwrap()).unwrap();
    publisher.connect().await.unwrap();
    ask(
        &publisher,
        "publish",
        json!({"roomId": "r1", "event": "room:event", "count": EVENTS, "rate": RATE}),
    )
    .await;
    publisher
}

/// Collects events until `n` reaches [`EVENTS`] or nothing arrives for `quiet`.
async fn collect(rx: &mut mpsc::UnboundedReceiver<Seen>, seen: &mut Vec<Seen>, quiet: Duration) {
    while seen.last().is_none_or(|s| s.n < EVENTS) {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => break,
        }
    }
}

/// Reads events until the `n`th has arrived.
async fn until(rx: &mut mpsc::UnboundedReceiver<Seen>, seen: &mut Vec<Seen>, n: usize) {
    while seen.len() < n {
        let s = tokio::time::timeout(T, rx.recv())
            .await
            .expect("room events flow")
            .expect("subscriber runs");
        seen.push(s);
    }
}

/// The longest silence between two consecutive events.
fn longest_gap(seen: &[Seen]) -> Duration {
    seen.windows(2)
        .map(|w| w[1].at - w[0].at)
        .max()
        .unwrap_or_default()
}

fn ns(seen: &[Seen]) -> Vec<u64> {
    seen.iter().map(|s| s.n).collect()
}

/// The events' `n`s, each once.
fn distinct(seen: &[Seen]) -> Vec<u64> {
    let mut n = ns(seen);
    n.sort_unstable();
    n.dedup();
    n
}

/// `"<distinct> of <EVENTS> (<r> repeated)"`, for the reference client's figures.
fn tally(seen: &[Seen]) -> String {
    let n = distinct(seen).len();
    format!("{n} of {EVENTS} ({} repeated)", seen.len() - n)
}

/// How the subscribers' node stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: the node closes its sockets and persists their sessions.
    Graceful,
    /// SIGKILL: no goodbye, nothing persisted.
    Crash,
}

/// One failover: a Pulselink subscriber and a socket.io-client one on node 0 (the balancer's
/// primary), node 2 publishing [`EVENTS`] room events at [`RATE`]/s, node 0 stopped a third of
/// the way through; what each subscriber saw, until the last event or 20 s of silence.
struct Failover {
    client: Client,
    notices: tokio::sync::broadcast::Receiver<Notice>,
    seen: Vec<Seen>,
    reference: Vec<Seen>,
    reference_connects: mpsc::UnboundedReceiver<bool>,
    _reference: tokio::process::Child,
    _cluster: Cluster,
}

impl Failover {
    /// Whether socket.io-client's reconnect recovered its session; panics if it never came back.
    async fn reference_reconnected(&mut self) -> bool {
        tokio::time::timeout(T, self.reference_connects.recv())
            .await
            .expect("socket.io-client reconnected")
            .expect("socket.io-client runs")
    }
}

async fn failover(stop: Stop) -> Failover {
    let mut cluster = Cluster::start().await;
    let url = cluster.url(Balance::Failover);
    let (client, mut rx) = pulselink_subscriber(&url).await;
    let notices = client.notices();
    assert_eq!(ask(&client, "node?", ()).await, "n0");
    let (reference_child, reference_node, mut reference_rx, reference_connects) =
        socketio_subscriber(&url).await;
    assert_eq!(reference_node, "n0");
    let _publisher = publish_from(&cluster.nodes[2].url()).await;

    let mut seen = Vec::new();
    until(&mut rx, &mut seen, (EVENTS / 3) as usize).await;
    match stop {
        Stop::Graceful => cluster.nodes[0].terminate().await,
        Stop::Crash => cluster.nodes[0].kill().await,
    }
    collect(&mut rx, &mut seen, T).await;
    let mut reference = Vec::new();
    collect(&mut reference_rx, &mut reference, Duration::from_secs(5)).await;
    Failover {
        client,
        notices,
        seen,
        reference,
        reference_connects,
        _reference: reference_child,
        _cluster: cluster,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_failover_recovers_the_session_on_another_node_with_every_event_once() {
    let mut f = failover(Stop::Graceful).await;

    // Every event the cluster sent this session once, in order, with the offset taken off
    // its arguments. The streams adapter itself can skip one: an event published between
    // the new node's last read of the stream for the restored session and the socket
    // rejoining its rooms reaches neither (socket.io-client meets it too, as a rare 999 of
    // 1000). The new node's own record of what it sent this session (replayed, then
    // broadcast) tells such an event from one the client lost.
    let got = ns(&f.seen);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    let sent: BTreeSet<u64> = serde_json::from_value(ask(&f.client, "sent?", ()).await).unwrap();
    let seen: BTreeSet<u64> = got.iter().copied().collect();
    let lost: Vec<&u64> = sent.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "sent by the new node, never seen: {lost:?}"
    );
    let never_sent: Vec<u64> = (1..=EVENTS).filter(|n| !seen.contains(n)).collect();
    let (first, last) = (sent.first().unwrap(), sent.last().unwrap());
    assert!(
        never_sent
            .iter()
            .all(|n| n > first && n < last && !sent.contains(n)),
        "missing, yet not skipped by the new node inside what it sent: {never_sent:?} \
         (it sent {first}..={last})"
    );
    assert!(
        never_sent.len() <= MAX_SKIPPED_BY_ADAPTER,
        "the cluster skipped {never_sent:?}"
    );
    assert!(
        f.seen.iter().all(|s| s.argc == 1),
        "an offset reached the app"
    );
    let recovered = pulselink_tests::next_notice(&mut f.notices, T, |n| match n {
        Notice::Connected { recovered, .. } => Some(recovered),
        Notice::RecoveryFailed { .. } => Some(false),
        _ => None,
    })
    .await;
    assert!(recovered, "the session was not recovered");
    assert_ne!(ask(&f.client, "node?", ()).await, "n0");
    let gap = longest_gap(&f.seen);
    assert!(gap <= FAILOVER_GAP, "events stopped for {gap:?}");
    let reference_recovered = f.reference_reconnected().await;
    report(
        "graceful failover behind nginx (3 nodes, Redis streams adapter)",
        &format!(
            "the subscriber's node shut down (SIGTERM) a third into {EVENTS} room events at \
             {RATE}/s: session recovered on another node, each event the cluster sent once \
             and in order (at most {MAX_SKIPPED_BY_ADAPTER} skipped by the adapter's restore \
             race, each one the new node never sent), no offset in the app's arguments, events \
             flowing again within {FAILOVER_GAP:?}"
        ),
        &format!(
            "{} of {EVENTS} once and in order, recovered ({} never sent by the cluster); \
             longest silence {} ms (socket.io-client in the same run: {}, recovered: \
             {reference_recovered}, longest silence {} ms)",
            f.seen.len(),
            never_sent.len(),
            gap.as_millis(),
            tally(&f.reference),
            longest_gap(&f.reference).as_millis(),
        ),
    );
    f.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_loses_less_than_socketio_client_and_says_a_gap_may_exist() {
    let mut f = failover(Stop::Crash).await;
    // No server kept the session: the app hears that events may be missing.
    pulselink_tests::next_notice(&mut f.notices, T, |n| {
        matches!(n, Notice::RecoveryFailed { .. }).then_some(())
    })
    .await;

    // What arrived came once and in order, and the stream runs to the end on the new node.
    let got = ns(&f.seen);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    assert_eq!(got.last(), Some(&EVENTS));
    assert!(
        f.seen.iter().all(|s| s.argc == 1),
        "an offset reached the app"
    );
    let lost = EVENTS - f.seen.len() as u64;
    assert!(lost <= MAX_LOST_ON_CRASH, "lost {lost} events");
    // The reference came back too (not recovered: no server kept its session).
    let reference_recovered = f.reference_reconnected().await;
    assert!(!reference_recovered);
    let reference_lost = EVENTS - distinct(&f.reference).len() as u64;
    assert!(
        lost <= reference_lost,
        "Pulselink lost {lost}, socket.io-client {reference_lost}"
    );
    report(
        "crashed node behind nginx (3 nodes, Redis streams adapter)",
        &format!(
            "the subscriber's node SIGKILLed a third into {EVENTS} room events at {RATE}/s (no \
             server keeps the session): `RecoveryFailed` tells the app a gap may exist; what \
             arrives comes once and in order; at most {MAX_LOST_ON_CRASH} lost (one second of \
             events), and no more than socket.io-client in the same run"
        ),
        &format!(
            "lost {lost} (longest silence {} ms); socket.io-client lost {reference_lost} \
             (longest silence {} ms)",
            longest_gap(&f.seen).as_millis(),
            longest_gap(&f.reference).as_millis()
        ),
    );
    f.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_from_one_node_reach_every_subscriber_on_every_node_once() {
    let cluster = Cluster::start().await;
    let mut subscribers = Vec::new();
    for node in &cluster.nodes {
        let (client, rx) = pulselink_subscriber(&node.url()).await;
        subscribers.push((client, rx));
    }
    let _publisher = publish_from(&cluster.nodes[0].url()).await;
    for (client, rx) in &mut subscribers {
        let mut seen = Vec::new();
        collect(rx, &mut seen, T).await;
        assert_eq!(ns(&seen), (1..=EVENTS).collect::<Vec<_>>());
        let m = client.metrics().await.unwrap();
        assert_eq!(
            m.duplicates_dropped, 0,
            "the servers sent no duplicates, yet some were dropped"
        );
    }
    report(
        "broadcasts across nodes",
        &format!(
            "{EVENTS} room events published on one node reach a subscriber on each of the 3 nodes once, in order; no duplicate dropped"
        ),
        "3 of 3 subscribers: every event once, in order, 0 duplicates dropped",
    );
}

/// A client of the balancer with `transports` that does not retry, so a failure is final.
fn through(url: &str, transports: Transports) -> Client {
    let reconnect = ReconnectPolicy {
        enabled: false,
        ..Default::default()
    };
    let config = ClientConfig::new(url)
        .unwrap()
        .with_transports(transports)
        .with_reconnect(reconnect);
    Client::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_needs_sticky_sessions_and_says_so() {
    let cluster = Cluster::start().await;
    // Sticky (ip_hash): long-polling works, on polling.
    let sticky = through(&cluster.url(Balance::Sticky), Transports::Polling);
    sticky.connect().await.unwrap();
    assert_eq!(ask(&sticky, "transport?", ()).await, "polling");
    assert_eq!(ask(&sticky, "echo", json!({"x": 1})).await["x"], 1);

    // Round robin: every request of the session may reach another node.
    let round = cluster.url(Balance::RoundRobin);
    let err = through(&round, Transports::Polling)
        .connect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("sticky sessions"),
        "the error does not name sticky sessions: {text}"
    );
    assert!(matches!(err, Error::Connect(_)), "{err:?}");

    // Where the balancer allows WebSocket, both fallbacks reach a working state:
    // WebSocketThenFallback starts there; PollingThenUpgrade's first session is refused like
    // the one above, and its next attempt goes to WebSocket.
    for transports in [
        Transports::WebSocketThenFallback,
        Transports::PollingThenUpgrade,
    ] {
        let config = ClientConfig::new(&round)
            .unwrap()
            .with_transports(transports)
            .with_reconnect(pulselink_tests::fast_reconnect());
        let client = Client::new(config).unwrap();
        client
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{transports:?}: {e}"));
        assert_eq!(ask(&client, "transport?", ()).await, "websocket");
        assert_eq!(ask(&client, "echo", json!({"x": 2})).await["x"], 2);
    }
    report(
        "long-polling behind the balancer",
        "polling works through sticky sessions (ip_hash); without them the error names sticky sessions; WebSocketThenFallback and PollingThenUpgrade still connect (over WebSocket)",
        &format!("sticky: polling; round robin: \"{text}\"; both fallbacks: websocket"),
    );
}

/// Clients in the rolling-restart test, each emitting acknowledged ticks at [`TICK_EVERY`].
const CLIENTS: usize = 100;
const TICK_EVERY: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_no_acknowledged_emit_and_leaves_every_client_connected() {
    let (_dir, ledger, _) = pulselink_tests::scratch("rolling");
    let store_dir = pulselink_tests::temp_dir("rolling-stores");
    let mut cluster = Cluster::start_with(ClusterOptions {
        ledger: Some(ledger.clone()),
        ..Default::default()
    })
    .await;
    let url = cluster.url(Balance::RoundRobin);
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let config = ClientConfig::new(&url)
            .unwrap()
            .with_store(store_dir.join(format!("c{c}.db")));
        let client = Client::new(config).unwrap();
        client.connect().await.unwrap();
        clients.push(client);
    }

    // Every client emits until told to stop; what returned Ok is kept, as `n = c·10⁶ + i`.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut emitters = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mut stop = stop.clone();
        emitters.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut every = tokio::time::interval(TICK_EVERY);
            for i in 0.. {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let n = c as u64 * 1_000_000 + i;
                match client.emit_with_ack("tick", json!({"n": n}), T).await {
                    Ok(_) => acked.push(n),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (acked, failed)
        }));
    }

    // Each node in turn: the clients on it are found, it shuts down (SIGTERM) and starts
    // again; the next node goes once every one of those clients is connected again.
    for i in 0..cluster.nodes.len() {
        let name = format!("n{i}");
        let mut moved = Vec::new();
        for client in &clients {
            if ask(client, "node?", ()).await == name.as_str() {
                moved.push((client.clone(), client.notices()));
            }
        }
        cluster.nodes[i].terminate().await;
        cluster.nodes[i].restart().await;
        for (client, notices) in &mut moved {
            let back = tokio::time::timeout(T, async {
                loop {
                    match notices.recv().await {
                        Ok(Notice::Connected { .. }) => return,
                        Ok(n) => println!("{n:?}"),
                        Err(e) => panic!("notices: {e}"),
                    }
                }
            })
            .await;
            assert!(
                back.is_ok(),
                "a client of {name} is not back: {:?}",
                client.metrics().await.unwrap()
            );
        }
        println!("node {name} restarted: {} clients moved", moved.len());
    }
    stop_tx.send(true).unwrap();
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for e in emitters {
        let (a, f) = e.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    for client in &clients {
        tokio::time::timeout(T, client.outbox().drained())
            .await
            .expect("every outbox drains")
            .unwrap();
        assert_eq!(client.state(), pulselink::State::Connected);
    }

    // The ledger (every node records each tick, repeats of a key across nodes marked by Redis).
    let lines = pulselink_tests::read_ledger(&ledger);
    let mut first: Vec<u64> = lines.iter().filter(|l| !l.dup).map(|l| l.n).collect();
    let repeats = lines.iter().filter(|l| l.dup).count();
    first.sort_unstable();
    let distinct = {
        let mut d = first.clone();
        d.dedup();
        d
    };
    assert_eq!(distinct.len(), first.len(), "a key was accepted twice");
    let missing: Vec<_> = acked
        .iter()
        .filter(|n| distinct.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged yet never arrived: {missing:?}"
    );
    assert!(failed.is_empty(), "emits failed: {failed:?}");
    report(
        "rolling restart behind nginx (3 nodes)",
        &format!(
            "{CLIENTS} clients in one process emit acknowledged ticks every {TICK_EVERY:?} \
             while each node is shut down and started again in turn: every emit that returned \
             Ok arrived once (server ledger by idempotency key, repeats marked in Redis), no \
             emit failed, every outbox drains and every client ends connected"
        ),
        &format!(
            "{} acknowledged, all arrived, {} delivered in all, {repeats} resends dropped by \
             key; {CLIENTS} of {CLIENTS} connected",
            acked.len(),
            first.len()
        ),
    );
}
