//! Durable delivery against the official Node Socket.IO server: the outbox across process
//! kills and server restarts, idempotency keys, subscriptions replayed before the outbox,
//! inbound de-duplication, connection state recovery, priorities, TTL and coalescing.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use pulselink::{
    Client, ClientConfig, DedupConfig, EmitOptions, Error, Notice, Priority, RateLimit, State,
};
use pulselink_tests::{
    LedgerLine, NodeServer, ServerOptions, fast_reconnect, ledger_with, next_named, next_notice,
    read_ledger, scratch, temp_dir, wait_for_state,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const T: Duration = Duration::from_secs(10);

fn config(server: &NodeServer) -> ClientConfig {
    ClientConfig::new(&server.url())
        .unwrap()
        .with_reconnect(fast_reconnect())
}

/// Both kinds of store, for the outbox's features: rows in memory (no store file, `None`)
/// and a SQLite file in a scratch directory the caller removes.
fn store_kinds(name: &str) -> (PathBuf, [Option<PathBuf>; 2]) {
    let dir = temp_dir(name);
    let file = dir.join("outbox.db");
    (dir, [None, Some(file)])
}

/// `cfg` with its store on `store` (`None`: in memory).
fn on(cfg: ClientConfig, store: Option<PathBuf>) -> ClientConfig {
    match store {
        Some(path) => cfg.with_store(path),
        None => cfg,
    }
}

/// Every tick number recorded once, in increasing order, and the number of repeats dropped.
fn check_ledger(lines: &[LedgerLine]) -> (Vec<u64>, usize) {
    let firsts: Vec<u64> = lines.iter().filter(|l| !l.dup).map(|l| l.n).collect();
    let unique: BTreeSet<u64> = firsts.iter().copied().collect();
    assert_eq!(unique.len(), firsts.len(), "a tick was accepted twice");
    let mut by_key: HashMap<&str, u64> = HashMap::new();
    for l in lines {
        let n = *by_key.entry(&l.key).or_insert(l.n);
        assert_eq!(n, l.n, "one key, one tick: {l:?}");
    }
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "ticks arrived out of order"
    );
    (firsts, lines.iter().filter(|l| l.dup).count())
}

/// [`check_ledger`] once the server has handled everything the client sent: the server
/// answers its log request after them.
async fn settled_ledger(client: &Client, ledger: &Path) -> (Vec<u64>, usize) {
    server_log(client).await;
    check_ledger(&read_ledger(ledger))
}

/// Every event the server received on this client's current connection, in order.
async fn server_log(client: &Client) -> Vec<String> {
    let reply = client.emit_with_ack("log?", (), T).await.unwrap();
    reply.args_as::<(Vec<String>,)>().unwrap().0
}

/// The server's timeline of this connection: `("in:<event>" | "acked:<event>", ms)` on its
/// own clock, in order.
async fn server_timeline(client: &Client) -> Vec<(String, f64)> {
    let reply = client.emit_with_ack("timeline?", (), T).await.unwrap();
    reply.args_as::<(Vec<(String, f64)>,)>().unwrap().0
}

/// How many subscription acks the server had sent when the first tick arrived (server clock,
/// this connection's timeline).
fn acks_before_first_tick(timeline: &[(String, f64)]) -> usize {
    let first_tick = timeline
        .iter()
        .position(|(w, _)| w == "in:tick")
        .expect("a tick arrived");
    timeline[..first_tick]
        .iter()
        .filter(|(w, _)| w == "acked:room:subscribe")
        .count()
}

/// How much sooner one frame may reach the server than another sent after it by the
/// subscription-ack deadline: loopback delivery jitter, not a scheduling allowance.
const DELIVERY_JITTER_MS: f64 = 5.0;

/// How long the test server holds each subscription's ack: a client that did not wait for the
/// acks would send its queued ticks well inside this window.
const SUB_ACK_DELAY_MS: u64 = 50;

fn integrity_ok(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let r: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok");
}

/// How one `pl-emitter` run ended.
struct Emitted {
    /// The numbers whose emit returned Ok.
    ok: Vec<u64>,
    /// It drained its outbox and exited 0.
    drained: bool,
    /// It was ended by SIGKILL (ours).
    killed: bool,
}

/// Runs `pl-emitter`; kills it after `kill_after` (if given) counted from its first `ok` line.
async fn run_emitter(
    url: &str,
    store: &Path,
    from: u64,
    count: u64,
    kill_after: Option<Duration>,
) -> Emitted {
    let child = emitter(url, store, from, count, false, Delivery::Acked);
    finish_emitter(child, kill_after).await
}

fn emitter(
    url: &str,
    store: &Path,
    from: u64,
    count: u64,
    hold_ack: bool,
    delivery: Delivery,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pl-emitter"));
    if hold_ack {
        cmd.env("PL_HOLD_ACK", "1");
    }
    if let Delivery::Flushed = delivery {
        cmd.env("PL_NO_ACK", "1");
    }
    cmd.args([
        url,
        store.to_str().unwrap(),
        &from.to_string(),
        &count.to_string(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap()
}

/// Reads an emitter's output to the end, killing it `kill_after` its first `ok` line. Every
/// run ends either drained (exit 0) or by our SIGKILL, and says nothing on stderr: a panic or
/// an error after reopening the store (a damaged file, "database is locked", a failed emit)
/// must not pass for a kill.
async fn finish_emitter(mut child: tokio::process::Child, kill_after: Option<Duration>) -> Emitted {
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ok = Vec::new();
    let mut drained = false;
    let mut deadline = None;
    let mut sent_kill = false;
    loop {
        let line = match deadline {
            Some(at) => match tokio::time::timeout_at(at, lines.next_line()).await {
                Ok(l) => l,
                Err(_) => {
                    child.start_kill().unwrap();
                    sent_kill = true;
                    deadline = None;
                    continue;
                }
            },
            None => tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("emitter is stuck"),
        };
        let Some(line) = line.unwrap() else { break };
        if let Some(n) = line.strip_prefix("ok ") {
            ok.push(n.parse().unwrap());
            if ok.len() == 1 {
                deadline = kill_after.map(|d| tokio::time::Instant::now() + d);
            }
        } else if line.starts_with("drained") {
            drained = true;
        }
    }
    let status = child.wait().await.unwrap();
    let errors = errors.await.unwrap();
    assert_eq!(errors, "", "the emitter reported on stderr ({status:?})");
    let killed = {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(9)
    };
    assert!(
        (drained && status.success()) || (sent_kill && killed),
        "the emitter ended neither drained nor by our SIGKILL: {status:?}"
    );
    Emitted {
        ok,
        drained,
        killed,
    }
}

/// SIGKILLs per run of the storm: 50, `PULSELINK_SIGKILL_SEEDS` for long runs.
fn sigkill_seeds() -> u64 {
    std::env::var("PULSELINK_SIGKILL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// How a SIGKILL storm's emitter asks for delivery.
#[derive(Clone, Copy)]
enum Delivery {
    /// Each emit waits for the server's acknowledgement before leaving the outbox.
    Acked,
    /// No acknowledgement: an entry is delivered once flushed to a healthy link, and one
    /// delivered before its commit is never stored at all.
    Flushed,
}

/// SIGKILLs the emitter at `seeds` seeded instants up to `max_kill_ms` after its first Ok,
/// each run emitting `count` ticks on one store file, then lets a last run drain it; asserts
/// that every emit that returned Ok reached the server exactly once, in order, and that some
/// kills landed between a tick's delivery and the emitter hearing Ok.
async fn sigkill_storm(name: &str, delivery: Delivery, seeds: u64, count: u64, max_kill_ms: u64) {
    let (dir, ledger, store) = scratch(name);
    let server = NodeServer::start_with_ledger(&ledger).await;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut promised = Vec::new();
    let mut kills = 0;
    for round in 0..seeds {
        let kill = Duration::from_millis(rng.u64(1..max_kill_ms));
        let child = emitter(
            &server.url(),
            &store,
            round * 100_000,
            count,
            false,
            delivery,
        );
        let run = finish_emitter(child, Some(kill)).await;
        kills += u64::from(run.killed);
        promised.extend(run.ok);
    }
    assert!(
        kills * 10 >= seeds * 8,
        "the kills must land mid-stream ({kills} of {seeds})"
    );
    // A last run with nothing new to say delivers whatever the killed runs left behind.
    assert!(run_emitter(&server.url(), &store, 0, 0, None).await.drained);

    let (delivered, dups) = check_ledger(&read_ledger(&ledger));
    let delivered: BTreeSet<u64> = delivered.into_iter().collect();
    let lost: Vec<&u64> = promised.iter().filter(|n| !delivered.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} emits that returned Ok lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // Some kills must land after the server had an entry and before the emitter heard Ok
    // (the live path widens that window: the frame leaves while the commit is in flight).
    // Those entries were delivered once without being promised; a kill there must not make
    // them go twice.
    let promised_set: BTreeSet<u64> = promised.iter().copied().collect();
    let unconfirmed = delivered
        .iter()
        .filter(|n| !promised_set.contains(n))
        .count();
    assert!(
        unconfirmed >= 1,
        "no kill landed between delivery and the emitter hearing Ok"
    );
    let how = match delivery {
        Delivery::Acked => "acknowledged emits",
        Delivery::Flushed => "emits without acknowledgement (delivered once flushed)",
    };
    println!(
        "RELIABILITY|emitter process SIGKILLed at {seeds} seeded instants, {how}|every emit that \
         returned Ok delivered exactly once, in order; every kill by signal 9, nothing on stderr|{} \
         emits returned Ok over {kills} kills, all delivered once, in order; {unconfirmed} \
         delivered before the killed emitter heard Ok; {dups} resends dropped by key",
        promised.len()
    );
    integrity_ok(&store);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emit_that_returned_ok_survives_sigkill_exactly_once() {
    sigkill_storm("sigkill", Delivery::Acked, sigkill_seeds(), 5_000, 500).await;
}

/// Without acknowledgements a live entry flushed before its commit is never stored: an emit
/// that returned Ok was either delivered already or committed, whichever instant the kill
/// picks. Runs are shorter (these emits are much faster), so the kills land mid-stream; as
/// many runs as the acknowledged storm, because about one kill in four lands between
/// delivery and Ok here and the storm asserts that one did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unacknowledged_emit_that_returned_ok_survives_sigkill_exactly_once() {
    sigkill_storm(
        "sigkill-flushed",
        Delivery::Flushed,
        sigkill_seeds(),
        20_000,
        150,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_send_and_delete_the_resend_keeps_its_key() {
    let (dir, ledger, store) = scratch("between");
    let server = NodeServer::start_with_ledger(&ledger).await;
    // The server records the tick but holds its ack: the entry is sent and not yet deleted.
    let mut child = emitter(&server.url(), &store, 7, 1, true, Delivery::Acked);
    let recorded = tokio::time::timeout(T, async {
        loop {
            if let Some(line) = read_ledger(&ledger).pop() {
                return line;
            }
            // The ledger is a file another process appends to: nothing to wait on but it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server recorded the tick");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let drained = run_emitter(&server.url(), &store, 0, 0, None).await.drained;
    assert!(
        drained,
        "the restarted process resent the entry and got its ack"
    );
    let lines = read_ledger(&ledger);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!((lines[0].n, lines[0].dup), (7, false));
    assert_eq!(
        lines[1].key, recorded.key,
        "the resend carries the original key"
    );
    assert!(lines[1].dup, "and the server kept one copy");
    integrity_ok(&store);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_stream_loses_nothing_and_app_sees_no_duplicate() {
    let (dir, ledger, store) = scratch("server-kill");
    let mut server = NodeServer::start_with_ledger(&ledger).await;
    let cfg = config(&server)
        .with_store(&store)
        .with_static_auth(json!({"news": true}))
        .with_dedup(DedupConfig::default().event("news", "/id"));
    let client = Client::new(cfg).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();

    const TICKS: u64 = 3_000;
    const RESTARTS: u64 = 50;
    // Production is spread over the whole restart sequence: the ticks of slice k go out
    // between restart k and restart k + 1, so every restart lands on live traffic.
    let (restarted, mut restarts_seen) = tokio::sync::watch::channel(0u64);
    let emitter = client.clone();
    let producer = tokio::spawn(async move {
        let per_slice = TICKS / RESTARTS;
        for n in 0..TICKS {
            let slice = n / per_slice;
            restarts_seen
                .wait_for(|done| *done >= slice)
                .await
                .expect("restarts go on");
            // The first tick of every slice but the last is one the server keeps and does not
            // acknowledge ("holdAckOnce"): a restart after its delivery must make the client
            // resend it with its key, and the server drops it there. A held tick left without
            // a restart after its delivery would never drain, so the last slice (one restart
            // after it, which its first tick might miss on a slow machine) holds none. Other
            // ticks may be caught by a restart too, at random.
            let hold = n % per_slice == 0 && slice + 1 < RESTARTS;
            let opts = EmitOptions::default().confirm();
            emitter
                .emit_with("tick", json!({"n": n, "holdAckOnce": hold}), opts)
                .await
                .unwrap();
        }
    });
    let mut rng = fastrand::Rng::with_seed(7);
    let restarts = RESTARTS;
    let mut states = client.states();
    // One pass more than there are restarts: the last waits for the link after the last one.
    for k in 1..=RESTARTS + 1 {
        // Each restart hits a live link carrying the current slice: wait until the client is
        // connected again, then let traffic flow for a random 10–60 ms (fault injection at a
        // random instant, not synchronisation).
        // (`connects` tells a link made after the last restart from a stale `Connected`.)
        loop {
            let connected = *states.borrow_and_update() == State::Connected;
            if connected && client.metrics().await.unwrap().connects >= k {
                break;
            }
            tokio::time::timeout(T, states.changed())
                .await
                .expect("reconnected after the restart")
                .unwrap();
        }
        if k > RESTARTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..60))).await;
        server.restart().await;
        restarted.send_replace(k);
    }
    producer.await.unwrap();
    drained_within(&client, BIG_DRAIN).await;

    let (delivered, dups) = check_ledger(&read_ledger(&ledger));
    assert_eq!(
        delivered,
        (0..TICKS).collect::<Vec<_>>(),
        "every tick, once, in order"
    );

    // Each connection replayed news 1..=20; the app saw each id once.
    let mut news = Vec::new();
    while let Some(ev) = events.try_recv() {
        if ev.name() == "news" {
            news.push(ev.first_arg::<Value>().unwrap()["id"].as_u64().unwrap());
        }
    }
    assert_eq!(news, (1..=20).collect::<Vec<_>>());
    let m = client.metrics().await.unwrap();
    assert!(
        m.reconnects >= RESTARTS,
        "every restart must land on a live link: {m:?}"
    );
    assert!(
        dups as u64 >= RESTARTS - 1,
        "every held tick (the server kept it, did not ack) is resent once and dropped by key: {dups}"
    );
    assert!(m.duplicates_dropped >= 20, "{m:?}");
    assert_eq!(m.outbox.pending, 0);
    assert!(m.ack_latency.samples > 0);
    println!(
        "server restarts: {restarts}, {TICKS} ticks delivered once in order, {dups} resends dropped by key, \
         {} inbound duplicates dropped, {} reconnects",
        m.duplicates_dropped, m.reconnects
    );
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_acked_before_the_outbox_flushes_on_every_connect() {
    let dir = temp_dir("subs");
    let store = dir.join("outbox.db");
    let server = NodeServer::start_with(ServerOptions {
        sub_ack_delay_ms: SUB_ACK_DELAY_MS,
        ..Default::default()
    })
    .await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    let mut states = client.states();
    client.connect().await.unwrap();
    for i in 0..100 {
        let room = json!({"roomId": format!("room_{i}")});
        client
            .subscribe("room:subscribe", room, Some("room:unsubscribe"))
            .await
            .unwrap();
    }
    for round in 0..25 {
        client.set_network_available(false).unwrap();
        wait_for_state(&mut states, T, |s| *s == State::Offline).await;
        for k in 0..3 {
            client
                .emit("tick", json!({"n": round * 10 + k}))
                .await
                .unwrap();
        }
        client.set_network_available(true).unwrap();
        let log = server_log(&client).await;
        let subs = log.iter().take_while(|e| *e == "room:subscribe").count();
        assert_eq!(subs, 100, "round {round}: all 100 replayed first: {log:?}");
        assert_eq!(
            &log[100..],
            ["tick", "tick", "tick", "log?"],
            "round {round}"
        );
        // Received after the subscriptions is not enough: the server holds each ack for
        // SUB_ACK_DELAY_MS, so every one of the 100 acks must have been sent before the first
        // tick arrived.
        let before = acks_before_first_tick(&server_timeline(&client).await);
        assert_eq!(
            before, 100,
            "round {round}: the first tick arrived when only {before} of 100 subscription acks \
             had been sent"
        );
    }

    // The subscriptions are persisted: a new client on the same store replays them.
    client.close().await;
    let again = Client::new(config(&server).with_store(&store)).unwrap();
    again.connect().await.unwrap();
    again
        .unsubscribe("room:subscribe", json!({"roomId": "room_0"}))
        .await
        .unwrap();
    let log = server_log(&again).await;
    assert_eq!(log.iter().filter(|e| *e == "room:subscribe").count(), 100);
    assert_eq!(log[100..], ["room:unsubscribe", "log?"]);
    again.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_server_never_acks_is_reported_and_does_not_block() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server);
    let deadline = Duration::from_millis(300);
    cfg.subscription_ack_timeout = deadline;
    let client = Client::new(cfg).unwrap();
    let mut notices = client.notices();
    // The server has no handler that acks this event.
    client
        .subscribe("metric:recorded", json!({}), None)
        .await
        .unwrap();
    client.connect().await.unwrap();
    let reply = client
        .emit_with_ack("quiz:answer_submit", json!("A"), T)
        .await;
    assert!(
        reply.is_ok(),
        "the outbox flowed after the timeout: {reply:?}"
    );
    // And not before: on the server's clock, the first outbox entry arrived a whole deadline
    // after the subscription (less the few ms two frames' delivery may differ by).
    let timeline = server_timeline(&client).await;
    let at = |what: &str| timeline.iter().find(|(w, _)| w == what).unwrap().1;
    let gap = at("in:quiz:answer_submit") - at("in:metric:recorded");
    assert!(
        gap >= deadline.as_secs_f64() * 1000.0 - DELIVERY_JITTER_MS,
        "the entry came {gap:.1} ms after the unanswered subscription"
    );
    let failed = next_notice(&mut notices, T, |n| match n {
        Notice::SubscriptionFailed { event, .. } => Some(event),
        _ => None,
    })
    .await;
    assert_eq!(failed, "metric:recorded");
    assert_eq!(client.metrics().await.unwrap().subscriptions_failed, 1);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_inbound_ids_are_dropped_across_a_client_restart() {
    let dir = temp_dir("dedup");
    let store = dir.join("outbox.db");
    let server = NodeServer::start().await;
    let cfg = || {
        config(&server)
            .with_store(&store)
            .with_dedup(DedupConfig::with_pointer("/messageId"))
    };
    let send = |id: &str| json!({"event": "chat:message", "args": [{"messageId": id}]});

    let client = Client::new(cfg()).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    for id in ["m1", "m1", "m2"] {
        client.emit("emit-to-me", send(id)).await.unwrap();
    }
    client
        .emit("emit-to-me", json!({"event": "done", "args": []}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap();
        match ev.name() {
            "chat:message" => seen.push(ev.first_arg::<Value>().unwrap()["messageId"].clone()),
            "done" => break,
            _ => {}
        }
    }
    assert_eq!(seen, [json!("m1"), json!("m2")]);
    client.close().await;

    // The seen ids were persisted: a restarted app does not show m2 again.
    let client = Client::new(cfg()).unwrap();
    let mut events = client.events();
    client.connect().await.unwrap();
    for id in ["m2", "m3"] {
        client.emit("emit-to-me", send(id)).await.unwrap();
    }
    let ev = next_named(&mut events, "chat:message", T).await;
    assert_eq!(ev.first_arg::<Value>().unwrap()["messageId"], "m3");
    assert_eq!(client.metrics().await.unwrap().duplicates_dropped, 1);
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_state_recovery_replays_missed_events_or_says_it_could_not() {
    let server = NodeServer::start_with(ServerOptions {
        recovery_ms: Some(1_500),
        ..Default::default()
    })
    .await;
    let client = Client::new(config(&server)).unwrap();
    let mut events = client.events();
    let mut states = client.states();
    client.connect().await.unwrap();
    // A second client makes the server broadcast while the first is away.
    let other = Client::new(config(&server)).unwrap();
    other.connect().await.unwrap();
    let broadcast = |n: u32| json!({"event": "scores:updated", "args": [{"n": n}]});

    other
        .emit_with_ack("broadcast", broadcast(0), T)
        .await
        .unwrap();
    let first = next_named(&mut events, "scores:updated", T).await;
    assert_eq!(
        first.args().unwrap(),
        vec![json!({"n": 0})],
        "offset stripped"
    );
    let first_offset = first.id().expect("the server's offset is the event's id");

    client.set_network_available(false).unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Offline).await;
    let mut notices = client.notices();
    for n in 1..=3 {
        other
            .emit_with_ack("broadcast", broadcast(n), T)
            .await
            .unwrap();
    }
    client.set_network_available(true).unwrap();
    let recovered = next_notice(&mut notices, T, |n| match n {
        Notice::Connected { recovered, .. } => Some(recovered),
        _ => None,
    })
    .await;
    assert!(recovered, "within the window the session is restored");
    for n in 1..=3 {
        let ev = next_named(&mut events, "scores:updated", T).await;
        assert_eq!(
            ev.args().unwrap(),
            vec![json!({"n": n})],
            "missed events, in order"
        );
        assert!(ev.id().is_some_and(|o| o != first_offset));
    }

    // Beyond the window: the server cannot restore, and the app is told.
    client.set_network_available(false).unwrap();
    wait_for_state(&mut states, T, |s| *s == State::Offline).await;
    other
        .emit_with_ack("broadcast", broadcast(4), T)
        .await
        .unwrap();
    // The server's recovery window is wall-clock time; nothing to wait on but the clock.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    client.set_network_available(true).unwrap();
    let failed = next_notice(&mut notices, T, |n| match n {
        Notice::RecoveryFailed { namespace } => Some(namespace),
        _ => None,
    })
    .await;
    assert_eq!(failed, "/");
    assert_eq!(client.metrics().await.unwrap().recovered_sessions, 1);
    client.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_outbox_flushes_by_priority_drops_expired_and_coalesces() {
    let (dir, stores) = store_kinds("priority");
    for store in stores {
        offline_outbox_flushes_by_priority_drops_expired_and_coalesces_on(store).await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

async fn offline_outbox_flushes_by_priority_drops_expired_and_coalesces_on(store: Option<PathBuf>) {
    let mut server = NodeServer::start().await;
    server.kill().await;
    let client = Client::new(on(config(&server), store)).unwrap();
    let mut sent = client.outgoing();
    client.start().unwrap();
    let low = EmitOptions::default().priority(Priority::Low);
    client
        .emit_with("telemetry", json!({"i": 1}), low.clone())
        .await
        .unwrap();
    for bpm in [70, 71, 72, 73] {
        let hr = EmitOptions::default().coalesce("hr");
        client
            .emit_with("heart_rate", json!({"bpm": bpm}), hr)
            .await
            .unwrap();
    }
    let ttl = EmitOptions::default().ttl(Duration::from_millis(50));
    let doomed = client.emit_with("stale", json!({}), ttl).await.unwrap();
    client
        .emit_with("telemetry", json!({"i": 2}), low)
        .await
        .unwrap();
    let high = EmitOptions::default().priority(Priority::High);
    client
        .emit_with("alert", json!({"fall": true}), high)
        .await
        .unwrap();

    let outbox = client.outbox();
    let listed = outbox.list(10).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.event.as_str()).collect();
    assert_eq!(
        names,
        ["alert", "heart_rate", "stale", "telemetry", "telemetry"]
    );
    assert!(
        listed
            .iter()
            .any(|p| p.id == doomed && p.expires_ms.is_some())
    );
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.coalesced), (5, 3));

    // Past the TTL before any connection exists.
    tokio::time::sleep(Duration::from_millis(80)).await;
    server.restart().await;
    let mut order = Vec::new();
    while order.len() < 4 {
        let ev = tokio::time::timeout(T, sent.recv()).await.unwrap().unwrap();
        order.push((ev.name().to_owned(), ev.first_arg::<Value>().unwrap()));
    }
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alert", "heart_rate", "telemetry", "telemetry"]);
    assert_eq!(order[1].1["bpm"], 73, "only the newest heart rate");
    client.outbox().drained().await.unwrap();
    let stats = client.outbox().stats().await.unwrap();
    assert_eq!((stats.expired, stats.delivered, stats.pending), (1, 4, 0));
    client.close().await;
}

/// Emits an app makes together in one task (here 600 in a `FuturesUnordered`, 256 at a time,
/// on a single-threaded runtime) are numbered in the order they were made, so they reach the
/// server in that order: the SDK's queue does not yield while it has room.
#[tokio::test(flavor = "current_thread")]
async fn emits_polled_together_are_stored_in_the_order_they_were_made() {
    let dir = temp_dir("emit-order");
    let config = ClientConfig::new("http://127.0.0.1:1")
        .unwrap()
        .with_store(dir.join("outbox.db"));
    let client = Client::new(config).unwrap();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for n in 0..600u64 {
        pending.push(client.emit("tick", json!({ "n": n })));
        if pending.len() >= 256 {
            futures_util::StreamExt::next(&mut pending)
                .await
                .unwrap()
                .unwrap();
        }
    }
    while let Some(r) = futures_util::StreamExt::next(&mut pending).await {
        r.unwrap();
    }
    let stored: Vec<u64> = client
        .outbox()
        .list(600)
        .await
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(&p.args_json).unwrap()[0]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let misplaced = stored.iter().enumerate().find(|(i, n)| *i as u64 != **n);
    assert_eq!(stored.len(), 600);
    assert!(
        misplaced.is_none(),
        "the first emit out of place: {misplaced:?}"
    );
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// `Socket::emit_here` (the Python binding's `emit`) commits on the caller's thread; it
/// declines while an emit made before it waits for the engine's number, so the two paths
/// keep the order in which emits were made.
#[tokio::test(flavor = "current_thread")]
async fn an_emit_committed_by_its_caller_never_overtakes_one_queued_before_it() {
    let (dir, ledger, store) = scratch("emit-here-order");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    let socket = client.main_socket();
    let tick = |n: u64| pulselink::Args::from(json!({ "n": n }));
    let plain = EmitOptions::default();
    let first = socket.emit_here("tick", &tick(0), &plain).unwrap().unwrap();
    // Queued: sent to the engine, which cannot run (one thread) until this task yields.
    let queued = socket.emit_with("tick", tick(1), plain.clone());
    tokio::pin!(queued);
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(queued.as_mut().poll(cx)));
    assert!(polled.await.is_pending());
    assert!(
        socket.emit_here("tick", &tick(2), &plain).is_none(),
        "must leave the next number to the queued emit"
    );
    let second = queued.await.unwrap();
    let mut ids = vec![first, second];
    for n in 2..100 {
        ids.push(match socket.emit_here("tick", &tick(n), &plain) {
            Some(committed) => committed.unwrap(),
            None => panic!("nothing queued and offline: committed here"),
        });
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(client.outbox().stats().await.unwrap().pending, 100);
    client.connect().await.unwrap();
    // Connected: committed here and handed to the engine, which writes it after the backlog.
    let handed = socket.emit_here("tick", &tick(100), &plain);
    assert!(matches!(handed, Some(Ok(_))), "{handed:?}");
    drained(&client).await;
    let (firsts, _) = settled_ledger(&client, &ledger).await;
    assert_eq!(firsts, (0..=100).collect::<Vec<_>>());
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A thread committing its own emits and sending others through the engine, one after
/// another, while the client connects: every tick reaches the server once, in the order made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_committed_here_and_by_the_engine_keep_one_order_across_a_connect() {
    const TICKS: u64 = 2_000;
    let (dir, ledger, store) = scratch("emit-here-connect");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    let (socket, runtime) = (client.main_socket(), tokio::runtime::Handle::current());
    let (halfway_tx, halfway) = tokio::sync::oneshot::channel();
    let emitter = std::thread::spawn(move || {
        let mut halfway_tx = Some(halfway_tx);
        let mut here = 0;
        for n in 0..TICKS {
            let args = pulselink::Args::from(json!({ "n": n }));
            let plain = EmitOptions::default();
            let done = match (n % 2 == 0).then(|| socket.emit_here("tick", &args, &plain)) {
                Some(Some(committed)) => {
                    here += 1;
                    committed
                }
                _ => runtime.block_on(socket.emit_with("tick", args, plain)),
            };
            done.unwrap();
            if n == TICKS / 4 {
                let _ = halfway_tx.take().unwrap().send(());
            }
        }
        here
    });
    halfway.await.unwrap();
    client.connect().await.unwrap();
    let here = tokio::task::spawn_blocking(move || emitter.join().unwrap())
        .await
        .unwrap();
    assert!(here > TICKS / 8, "committed here while offline: {here}");
    drained(&client).await;
    let (firsts, _) = settled_ledger(&client, &ledger).await;
    assert_eq!(firsts, (0..TICKS).collect::<Vec<_>>());
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// With a link, `Socket::emit_here` commits on the caller's thread and hands the entry to the
/// engine, which writes it at once or, behind older entries, fetches it. A thread mixing that
/// (with and without a confirmation) with emits the engine numbers, while the server restarts
/// under it: the server gets the ticks in the order made, none twice, every confirmed one
/// (an unconfirmed tick is delivered once written to a healthy link, and a restart may lose
/// it unread); and once caught up, the handed entries go out live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_committed_here_while_connected_keep_one_order_across_server_restarts() {
    const TICKS: u64 = 3_000;
    const RESTARTS: u64 = 10;
    let (dir, ledger, store) = scratch("emit-here-linked");
    let mut server = NodeServer::start_with_ledger(&ledger).await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    client.connect().await.unwrap();
    let (socket, runtime) = (client.main_socket(), tokio::runtime::Handle::current());
    // The ticks of slice k go out after restart k: every restart lands on live traffic.
    let (restarted, mut restarts_seen) = tokio::sync::watch::channel(0u64);
    let emitter = std::thread::spawn(move || {
        let mut here = 0;
        for n in 0..TICKS {
            let slice = n / (TICKS / RESTARTS);
            if n % (TICKS / RESTARTS) == 0 {
                runtime
                    .block_on(restarts_seen.wait_for(|done| *done >= slice))
                    .expect("restarts go on");
            }
            let args = pulselink::Args::from(json!({ "n": n }));
            let opts = match n % 3 {
                0 => EmitOptions::default(),
                _ => EmitOptions::default().confirm(),
            };
            let done = match (n % 3 != 1).then(|| socket.emit_here("tick", &args, &opts)) {
                Some(Some(committed)) => {
                    here += 1;
                    committed
                }
                _ => runtime.block_on(socket.emit_with("tick", args, opts)),
            };
            done.unwrap();
        }
        here
    });
    let mut rng = fastrand::Rng::with_seed(11);
    let mut states = client.states();
    for k in 1..=RESTARTS {
        loop {
            let connected = *states.borrow_and_update() == State::Connected;
            if connected && client.metrics().await.unwrap().connects >= k {
                break;
            }
            tokio::time::timeout(T, states.changed())
                .await
                .expect("reconnected after the restart")
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(5..30))).await;
        server.restart().await;
        restarted.send_replace(k);
    }
    let here = tokio::task::spawn_blocking(move || emitter.join().unwrap())
        .await
        .unwrap();
    // Two in three ticks try `emit_here`; it declines only when a block of numbers runs low
    // (the engine lets callers number again before it answers the emits of its step).
    assert!(here > TICKS * 6 / 10, "committed here: {here}");
    drained_within(&client, BIG_DRAIN).await;
    let (firsts, _) = check_ledger(&read_ledger(&ledger));
    let missing: Vec<u64> = (0..TICKS)
        .filter(|n| n % 3 != 0 && firsts.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "confirmed, never reached the server: {missing:?}"
    );
    // Caught up on a healthy link, a handed entry is written at once, never fetched. (The
    // replay may have ended on a fetch that filled its window exactly, so the engine does not
    // know yet that nothing more waits: the first handed tick, fetched, tells it.)
    let plain = EmitOptions::default();
    let socket = client.main_socket();
    let tick = pulselink::Args::from(json!({ "n": TICKS }));
    socket.emit_here("tick", &tick, &plain).unwrap().unwrap();
    drained(&client).await;
    let before = client.outbox().stats().await.unwrap().sent_live;
    for n in TICKS + 1..TICKS + 101 {
        let tick = pulselink::Args::from(json!({ "n": n }));
        socket.emit_here("tick", &tick, &plain).unwrap().unwrap();
    }
    drained(&client).await;
    let after = client.outbox().stats().await.unwrap().sent_live;
    assert_eq!(after - before, 100, "every handed tick went live");
    let (firsts, _) = settled_ledger(&client, &ledger).await;
    assert!(firsts.ends_with(&(TICKS..TICKS + 101).collect::<Vec<_>>()));
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A backlog replays while a thread keeps committing and handing over emits as fast as it
/// can: each handed entry waits behind the backlog (it cannot go live), and the fetches that
/// bring the backlog must not be starved by them. The server gets the whole backlog while
/// the thread is still emitting, and then everything once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_replays_while_a_caller_keeps_handing_over_emits() {
    const BACKLOG: u64 = 5_000;
    /// Emits the thread makes at most: far more than the backlog takes to replay.
    const CAP: u64 = 400_000;
    let (dir, ledger, store) = scratch("emit-here-backlog");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    let socket = client.main_socket();
    let plain = EmitOptions::default();
    for n in 0..BACKLOG {
        let tick = pulselink::Args::from(json!({ "n": n }));
        socket.emit_here("tick", &tick, &plain).unwrap().unwrap();
    }
    client.connect().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut n = BACKLOG;
            while n < BACKLOG + CAP && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tick = pulselink::Args::from(json!({ "n": n }));
                match socket.emit_here("tick", &tick, &EmitOptions::default()) {
                    Some(done) => {
                        done.unwrap();
                        n += 1;
                    }
                    // Declined for a moment (the engine reserving numbers): try again.
                    None => std::thread::yield_now(),
                }
            }
            n - BACKLOG
        }
    });
    // In order, so the first lines are the backlog's.
    let first = ledger_with(&ledger, BACKLOG as usize).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let handed = tokio::task::spawn_blocking(move || emitter.join().unwrap())
        .await
        .unwrap();
    assert!(
        handed < CAP,
        "the backlog arrived only after the emitter stopped"
    );
    assert!(first[..BACKLOG as usize].iter().all(|l| l.n < BACKLOG));
    drained_within(&client, BIG_DRAIN).await;
    let (firsts, _) = settled_ledger(&client, &ledger).await;
    assert_eq!(firsts, (0..BACKLOG + handed).collect::<Vec<_>>());
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// Emits that asked no acknowledgement are delivered once written to a healthy link; a
/// polite close right after them must not make the server drop them. The official server
/// handles an event on the tick after reading it and ignores it if a namespace DISCONNECT
/// read in the same chunk ended the socket first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_just_before_a_polite_close_reach_the_server() {
    const TICKS: u64 = 200;
    let (dir, ledger, store) = scratch("close-after-emits");
    let server = NodeServer::start_with_ledger(&ledger).await;
    for round in 0..CLOSE_ROUNDS {
        let client = Client::new(config(&server).with_store(&store)).unwrap();
        client.connect().await.unwrap();
        // The server reads nothing for a while: the ticks, and whatever the close sends
        // after them, reach it in one chunk.
        let stalled = std::time::Instant::now();
        client.emit_volatile("stall", json!(STALL_MS)).unwrap();
        for n in round * TICKS..(round + 1) * TICKS {
            client.emit("tick", json!({ "n": n })).await.unwrap();
        }
        // Otherwise the server may have read the ticks before the close, and the test
        // would pass without the fix it guards.
        let took = stalled.elapsed();
        assert!(
            took < Duration::from_millis(STALL_MS / 2),
            "emits took {took:?}"
        );
        client.close().await;
    }
    let (firsts, _) = check_ledger(&read_ledger(&ledger));
    let missing: Vec<u64> = (0..CLOSE_ROUNDS * TICKS)
        .filter(|n| firsts.binary_search(n).is_err())
        .collect();
    assert!(missing.is_empty(), "never reached the server: {missing:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Polite closes [`emits_just_before_a_polite_close_reach_the_server`] makes, and how long
/// its server stalls before each.
const CLOSE_ROUNDS: u64 = 5;
const STALL_MS: u64 = 300;

/// The engine commits a step's deletions before it answers the acks that caused them: an app
/// that heard its acknowledgement and looks at the outbox finds the entry gone, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_heard_its_ack_finds_the_entry_gone() {
    let (dir, _, store) = scratch("ack-then-look");
    let server = NodeServer::start().await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    client.connect().await.unwrap();
    for n in 0..300 {
        client
            .emit_with_ack("quiz:answer_submit", json!({ "n": n }), T)
            .await
            .unwrap();
        let stats = client.outbox().stats().await.unwrap();
        assert_eq!(stats.pending, 0, "entry {n} still pending after its ack");
    }
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// Waits for the outbox to drain, failing (rather than hanging) after `T`.
async fn drained(client: &Client) {
    drained_within(client, T).await;
}

/// Waits for the outbox to empty, for `limit` at most.
async fn drained_within(client: &Client, limit: Duration) {
    tokio::time::timeout(limit, client.outbox().drained())
        .await
        .expect("the outbox drained")
        .unwrap();
}

/// How long a test that queues thousands of emits (through restarts, behind a backlog) may
/// take to drain them.
const BIG_DRAIN: Duration = Duration::from_secs(60);

/// The live path: with the link up and nothing older waiting, a new durable emit is written
/// while its commit is in flight, never read back from the store; emits made while a backlog
/// is replayed wait behind it. Every tick reaches the server once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_emits_go_live_once_the_backlog_is_replayed_and_order_holds() {
    let (dir, ledger, store) = scratch("live-path");
    let server = NodeServer::start_with_ledger(&ledger).await;
    let client = Client::new(config(&server).with_store(&store)).unwrap();
    let (backlog, during, after) = (300u64, 1_000u64, 500u64);
    for n in 0..backlog {
        client.emit("tick", json!({ "n": n })).await.unwrap();
    }
    let live = |s: pulselink::OutboxStats| s.sent_live;
    assert_eq!(live(client.outbox().stats().await.unwrap()), 0, "offline");
    client.connect().await.unwrap();
    // Emitted while the backlog is replayed: behind it, whichever way each one goes.
    for n in backlog..backlog + during {
        client.emit("tick", json!({ "n": n })).await.unwrap();
    }
    drained(&client).await;
    let before = live(client.outbox().stats().await.unwrap());
    // Caught up: every new emit takes the live path.
    for n in backlog + during..backlog + during + after {
        client.emit("tick", json!({ "n": n })).await.unwrap();
    }
    drained(&client).await;
    let stats = client.outbox().stats().await.unwrap();
    assert_eq!(
        live(stats.clone()) - before,
        after,
        "every emit made while caught up went live"
    );
    // A round trip on the same connection: the server has read every tick before it.
    let (firsts, dups) = settled_ledger(&client, &ledger).await;
    assert_eq!(firsts, (0..backlog + during + after).collect::<Vec<_>>());
    assert_eq!(dups, 0);
    println!(
        "RELIABILITY|live path: a backlog of {backlog} replayed, {during} emits during the \
         replay, {after} after|every tick once, in order; every emit made while caught up \
         written live|{} ticks once, in order; live: {before} of the {during} during the replay, \
         {} of {after} after",
        firsts.len(),
        live(stats) - before
    );
    client.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A full outbox refuses an acknowledged emit with the reason, not a bare `Closed`: the
/// caller waits only for the answer, and reads the store's refusal when none comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_acknowledged_emit_says_why() {
    let mut server = NodeServer::start().await;
    server.kill().await;
    let (dir, stores) = store_kinds("refused");
    for store in stores {
        let mut cfg = on(config(&server), store);
        cfg.outbox.max_entries = 1;
        cfg.outbox.overflow = pulselink::Overflow::Reject;
        let client = Client::new(cfg).unwrap();
        client.emit("e", json!({"i": 0})).await.unwrap();
        let refused = client.emit_with_ack("e", json!({"i": 1}), T).await;
        assert!(
            matches!(refused, Err(Error::OutboxFull { entries: 1, .. })),
            "{refused:?}"
        );
        client.close().await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_can_be_listed_removed_cleared_and_overflow_drops_oldest() {
    let (dir, stores) = store_kinds("overflow");
    for store in stores {
        outbox_can_be_listed_removed_cleared_and_overflow_drops_oldest_on(store).await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

async fn outbox_can_be_listed_removed_cleared_and_overflow_drops_oldest_on(store: Option<PathBuf>) {
    let mut server = NodeServer::start().await;
    server.kill().await;
    let mut cfg = on(config(&server), store);
    cfg.outbox.max_entries = 3;
    cfg.outbox.overflow = pulselink::Overflow::DropOldest;
    let client = Client::new(cfg).unwrap();
    let mut notices = client.notices();
    let outbox = client.outbox();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            client
                .emit_with("e", json!({"i": i}), EmitOptions::default())
                .await
                .unwrap(),
        );
    }
    assert!(matches!(
        notices.recv().await.unwrap(),
        Notice::OutboxOverflow { dropped: 1 }
    ));
    let listed: Vec<u64> = outbox
        .list(10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, ids[1..]);
    assert!(outbox.remove(ids[2]).await.unwrap());
    assert!(!outbox.remove(ids[2]).await.unwrap());
    assert_eq!(outbox.clear().await.unwrap(), 2);
    let s = outbox.stats().await.unwrap();
    assert_eq!(
        (s.pending, s.pending_bytes, s.dropped_overflow, s.failed),
        (0, 0, 1, 3)
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_a_clear_error() {
    let dir = temp_dir("corrupt");
    let path = dir.join("outbox.db");
    std::fs::write(&path, vec![0x42; 16 * 1024]).unwrap();
    let server = NodeServer::start().await;
    let err = Client::new(config(&server).with_store(&path)).unwrap_err();
    assert!(matches!(err, Error::StoreCorrupt(_)), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_space_out_the_outbox_and_the_server_can_pause_it() {
    let server = NodeServer::start().await;
    let mut cfg = config(&server);
    // 100 per second with bursts of 20.
    cfg.outbox.rate_limits = vec![RateLimit::new(20, Duration::from_millis(200))];
    let client = Client::new(cfg).unwrap();
    let mut sent = client.outgoing();
    let mut events = client.events();
    client.connect().await.unwrap();
    // A lower bound that scheduling delays cannot fake: from before the first emit to the
    // 60th send, 20 go at once and 40 more need 0.4 s of refill.
    let started = tokio::time::Instant::now();
    for n in 0..60 {
        client.emit("tick", json!({"n": n})).await.unwrap();
    }
    for n in 0..60 {
        let ev = tokio::time::timeout(T, sent.recv()).await.unwrap().unwrap();
        assert_eq!(ev.first_arg::<Value>().unwrap()["n"], n, "order kept");
    }
    let spread = started.elapsed();
    assert!(spread >= Duration::from_millis(390), "{spread:?}");

    // The server's own signal pauses the outbox until its resetTime, 600 ms after it read
    // "limit-me" (so at least 600 ms after this instant).
    let asked_at = tokio::time::Instant::now();
    client.emit("limit-me", json!(600)).await.unwrap();
    next_named(&mut events, "rate_limit_exceeded", T).await;
    client.emit("tick", json!({"n": "after"})).await.unwrap();
    loop {
        let ev = tokio::time::timeout(T, sent.recv()).await.unwrap().unwrap();
        if ev.name() == "tick" {
            break;
        }
    }
    let waited = asked_at.elapsed();
    assert!(waited >= Duration::from_millis(580), "{waited:?}");
    assert_eq!(client.metrics().await.unwrap().rate_limit_pauses, 1);
    client.close().await;
}

/// Health data queued offline with an encryption key: neither the database nor its WAL holds
/// it readable, the file refuses to open without the key or with another one (and loses
/// nothing), and with the key every entry is delivered once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_outbox_keeps_health_data_unreadable_and_delivers_it() {
    let (dir, ledger, store) = scratch("encrypted-outbox");
    let mut server = NodeServer::start_with_ledger(&ledger).await;
    server.kill().await;
    let key = pulselink::OutboxKey::generate().unwrap();
    let base = config(&server).with_store(&store);
    let keyed = |key: Option<pulselink::OutboxKey>| {
        let mut c = base.clone();
        c.store.encryption_key = key;
        c
    };

    let client = Client::new(keyed(Some(key.clone()))).unwrap();
    client.start().unwrap();
    for n in 0..10 {
        let reading = json!({"n": n, "diagnosis": "arrhythmia-7f3a", "bpm": 180 + n});
        client
            .emit_with("tick", reading, EmitOptions::default().confirm())
            .await
            .unwrap();
    }
    client.close().await;
    // close() returns once the store is closed: the WAL is checkpointed and gone.
    assert!(!dir.join("outbox.db-wal").exists());
    for file in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(15).any(|w| w == b"arrhythmia-7f3a"),
            "plaintext health data on disk"
        );
    }

    for wrong in [None, Some(pulselink::OutboxKey::generate().unwrap())] {
        let err = Client::new(keyed(wrong)).expect_err("refused");
        assert!(
            matches!(err, Error::InvalidConfig(ref m) if m.contains("encrypt")),
            "{err:?}"
        );
    }

    server.restart().await;
    let client = Client::new(keyed(Some(key))).unwrap();
    client.connect().await.unwrap();
    drained(&client).await;
    client.close().await;
    let (ticks, _) = check_ledger(&read_ledger(&ledger));
    assert_eq!(ticks, (0..10).collect::<Vec<_>>());
}

/// The keys of every `silent` event the server received on this connection, resends included.
async fn silent_keys(client: &Client) -> Vec<String> {
    let reply = client.emit_with_ack("silent?", (), T).await.unwrap();
    reply.args_as::<(Vec<String>,)>().unwrap().0
}

/// An event the server never acknowledges is sent again after `ack_timeout` with the same
/// key, given up after `max_sends` (`Notice::EmitFailed`; the waiting caller hears
/// `AckTimeout`); and an entry whose TTL passes first ends its caller's wait with `Expired`
/// and is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_entries_are_resent_with_their_key_then_given_up_or_expired() {
    let (dir, stores) = store_kinds("resend");
    for store in stores {
        unacknowledged_entries_are_resent_with_their_key_then_given_up_or_expired_on(store).await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

async fn unacknowledged_entries_are_resent_with_their_key_then_given_up_or_expired_on(
    store: Option<PathBuf>,
) {
    let server = NodeServer::start().await;
    let ack_timeout = Duration::from_millis(150);
    let mut cfg = on(config(&server), store);
    cfg.outbox.ack_timeout = ack_timeout;
    cfg.outbox.max_sends = 3;
    let client = Client::new(cfg).unwrap();
    let mut notices = client.notices();
    client.connect().await.unwrap();

    let started = tokio::time::Instant::now();
    let reply = client.emit_with_ack("silent", json!({"n": 1}), T).await;
    assert_eq!(reply, Err(Error::AckTimeout(ack_timeout)));
    assert!(
        started.elapsed() >= ack_timeout * 3,
        "given up after three sends {ack_timeout:?} apart, not sooner: {:?}",
        started.elapsed()
    );
    let failed = next_notice(&mut notices, T, |n| match n {
        Notice::EmitFailed { event, error, .. } => Some((event, error)),
        _ => None,
    })
    .await;
    assert_eq!(failed.0, "silent");
    assert!(failed.1.contains("acknowledgement"), "{}", failed.1);
    let keys = silent_keys(&client).await;
    assert_eq!(keys.len(), 3, "sent three times: {keys:?}");
    assert!(keys.iter().all(|k| *k == keys[0]), "one key: {keys:?}");
    let stats = client.outbox().stats().await.unwrap();
    assert_eq!((stats.failed, stats.pending), (1, 0));

    // A TTL shorter than the give-up: the caller hears Expired at the TTL, and the entry goes
    // no more (sent at 0 and 150 ms, expired at 250 ms, the 300 ms resend never happens).
    let ttl = Duration::from_millis(250);
    let started = tokio::time::Instant::now();
    let options = EmitOptions::default().ttl(ttl);
    let reply = client
        .emit_with_ack_options("silent", json!({"n": 2}), options, T)
        .await;
    let waited = started.elapsed();
    assert_eq!(reply, Err(Error::Expired));
    assert!(
        waited >= ttl && waited < ack_timeout * 3,
        "expired at {waited:?}, TTL {ttl:?}"
    );
    // Long enough for a third send, had the entry not expired.
    tokio::time::sleep(ack_timeout * 2).await;
    let keys = silent_keys(&client).await;
    assert_eq!(keys.len(), 5, "two sends of the second entry: {keys:?}");
    assert_eq!(keys[3], keys[4]);
    client.close().await;
}

/// Size of the tmpfs the disk-full test fills.
const DISK_KIB: u64 = 1_024;

/// A full disk under a real store file (WAL on): the emit that does not fit fails with
/// `Error::DiskFull`, nothing already stored is lost, and the same client stores again once
/// space returns. The child runs in a private mount namespace (`unshare`) on a 1 MiB tmpfs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_emit_clearly_loses_nothing_and_recovers() {
    let dir = temp_dir("diskfull");
    let script = format!(
        "mount -t tmpfs -o size={DISK_KIB}k pulselink-test \"$1\" && \
         head -c 131072 /dev/zero > \"$1/filler\" && exec \"$2\" \"$1\""
    );
    let out = tokio::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", &script, "sh"])
        .arg(&dir)
        .arg(env!("CARGO_BIN_EXE_pl-diskfull"))
        .output()
        .await
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = seen["stored_before_full"].as_u64().unwrap();
    assert!(stored >= 10, "the disk filled only after a while: {seen}");
    assert_eq!(seen["disk_full"], true, "{seen}");
    assert!(
        seen["error"].as_str().unwrap().contains("disk full"),
        "{seen}"
    );
    assert_eq!(seen["pending_when_full"], stored, "{seen}");
    assert_eq!(
        seen["listed_when_full"], stored,
        "nothing stored was lost: {seen}"
    );
    assert_eq!(seen["listed_in_order"], true, "{seen}");
    assert_eq!(seen["stored_after_space_returned"], stored + 1, "{seen}");
    assert_eq!(seen["pending_after_reopen"], stored + 1, "{seen}");
    std::fs::remove_dir_all(dir).unwrap();
}
