//! The FFI surface driven as foreign code drives it: an async foreign auth provider, the pull
//! receivers, calls from threads with their own executors, cancelled waits, against the
//! official Node server.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use pulselink_ffi::{
    AuthError, AuthProvider, AuthRequest, Client, ClientConfig, Durability, EmitOptions, EmitStart,
    Event, Interface, NetworkPath, Notice, Priority, ProxyConfig, PulselinkError, State,
    StoreConfig,
};
use pulselink_tests::{NodeServer, temp_dir};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn config(url: &str) -> ClientConfig {
    ClientConfig {
        url: url.into(),
        namespaces: vec![],
        auth_json: None,
        store: None,
        path: None,
        headers: Default::default(),
        transports: None,
        protocol: None,
        reconnect: None,
        background: None,
        connect_timeout_ms: None,
        connect_wait_ms: None,
        subscription_ack_timeout_ms: None,
        outbox: None,
        dedup: None,
        max_event_age_ms: None,
        max_inbound_bytes: None,
        token_expired_event: None,
        tls: None,
        proxy: None,
        signals: None,
        read_hold_us: None,
    }
}

fn first_arg(ev: &Event) -> Value {
    serde_json::from_str::<Vec<Value>>(&ev.args_json).unwrap()[0].clone()
}

/// Hands out a stale token first, a fresh one when asked to refresh, after suspending (a token
/// refresh over HTTP); panics once on request (a provider bug the engine must survive).
struct Tokens {
    asked: Mutex<Vec<AuthRequest>>,
    panic_first: bool,
}

#[async_trait::async_trait]
impl AuthProvider for Tokens {
    async fn auth(&self, request: AuthRequest) -> Result<Option<String>, AuthError> {
        let first = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(request.clone());
            asked.len() == 1
        };
        if self.panic_first && first {
            panic!("a provider bug");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let token = if request.refresh { "fresh" } else { "stale" };
        Ok(Some(json!({ "token": token }).to_string()))
    }
}

/// The events of `receiver`, pulled in batches as every language wrapper does.
fn pull(receiver: Arc<pulselink_ffi::EventReceiver>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let batch = receiver.next_batch(256).await;
            if batch.is_empty() {
                return;
            }
            for e in batch {
                let _ = tx.send(e);
            }
        }
    });
    rx
}

#[tokio::test]
async fn an_async_auth_provider_refreshes_and_pull_receivers_see_events_and_states() {
    let server = NodeServer::start().await;
    let tokens = Arc::new(Tokens {
        asked: Mutex::default(),
        panic_first: false,
    });
    let client = Client::new(config(&server.url()), Some(tokens.clone())).unwrap();
    let receiver = client.events();
    let mut events = pull(receiver.clone());
    let (tx, mut states) = mpsc::unbounded_channel();
    let watcher = client.clone();
    tokio::spawn(async move {
        let mut state = watcher.state();
        let _ = tx.send(state.clone());
        while state != State::Closed {
            state = watcher.next_state(state).await;
            let _ = tx.send(state.clone());
        }
    });
    assert_eq!(states.recv().await, Some(State::Idle));

    client.connect().await.unwrap();
    let welcome = events.recv().await.unwrap();
    assert_eq!(welcome.name, "welcome");
    assert_eq!(first_arg(&welcome)["auth"], json!({"token": "fresh"}));
    let asked = tokens.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(!asked[0].refresh && asked[1].refresh, "{asked:?}");
    assert!(
        asked[1]
            .message
            .as_deref()
            .unwrap()
            .contains("Authentication failed")
    );
    let mut seen = Vec::new();
    while seen.last() != Some(&State::Connected) {
        seen.push(states.recv().await.unwrap());
    }
    assert_eq!(seen.first(), Some(&State::Connecting), "{seen:?}");

    // The server asks for an ack; the event's responder answers it.
    let main = client.main_socket();
    main.emit("ask".into(), r#"["q1"]"#.into(), vec![])
        .await
        .unwrap();
    let question = events.recv().await.unwrap();
    assert_eq!(question.name, "server:question");
    let responder = question.ack.clone().expect("the server asked for an ack");
    responder.send(r#"["a1",2]"#.into(), vec![]).unwrap();
    let got = events.recv().await.unwrap();
    assert_eq!(
        (got.name.as_str(), got.args_json.as_str()),
        ("server:got_ack", r#"["a1",2]"#)
    );

    // Batches keep order across many events.
    let n = 2_000;
    let args = json!([{ "event": "n", "args": [] }]);
    for _ in 0..n {
        main.emit("emit-to-me".into(), args.to_string(), vec![])
            .await
            .unwrap();
    }
    for _ in 0..n {
        assert_eq!(events.recv().await.unwrap().name, "n");
    }

    // Once cancelled, the receiver hears nothing more, and its pending wait ends.
    receiver.cancel();
    let marker = client.events();
    main.emit("emit-to-me".into(), args.to_string(), vec![])
        .await
        .unwrap();
    assert_eq!(marker.next_batch(10).await[0].name, "n");
    client.shutdown().await.unwrap();
    if let Ok(e) = events.try_recv() {
        panic!("a cancelled receiver delivered {e:?}");
    }
    assert_eq!(client.state(), State::Closed);
    let mut last = None;
    while let Some(s) = states.recv().await {
        last = Some(s);
    }
    assert_eq!(
        last,
        Some(State::Closed),
        "the state stream ends with Closed"
    );
}

#[tokio::test]
async fn a_panicking_provider_is_a_failed_attempt_not_a_crash() {
    let server = NodeServer::start().await;
    let tokens = Arc::new(Tokens {
        asked: Mutex::default(),
        panic_first: true,
    });
    let client = Client::new(config(&server.url()), Some(tokens.clone())).unwrap();
    let notices = client.notices();
    client.connect().await.unwrap();
    let mut failures = Vec::new();
    'wait: loop {
        for notice in notices.next_batch(16).await {
            match notice {
                Notice::Connected { .. } => break 'wait,
                Notice::ConnectFailed { .. } => failures.push(notice),
                _ => {}
            }
        }
    }
    assert!(
        matches!(&failures[..], [Notice::ConnectFailed { error, .. }] if error.contains("panicked")),
        "{failures:?}"
    );
    client.shutdown().await.unwrap();
}

#[test]
fn calls_from_many_foreign_threads_each_with_its_own_executor() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(NodeServer::start());
    let client = Client::new(config(&server.url()), None).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let c = client.clone();
            std::thread::spawn(move || {
                // A foreign thread with its own executor, no tokio context of ours.
                let local = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                local.block_on(async {
                    c.connect().await.unwrap();
                    for j in 0..50 {
                        let answer = format!("{i}-{j}");
                        let reply = c
                            .main_socket()
                            .emit_with_ack(
                                "quiz:answer_submit".into(),
                                json!([answer]).to_string(),
                                5_000,
                                vec![],
                            )
                            .await
                            .unwrap();
                        let v: Value = serde_json::from_str(&reply.args_json).unwrap();
                        assert_eq!(v[0]["answer"], json!(answer));
                    }
                    let bad = c.main_socket().emit("t".into(), "{}".into(), vec![]).await;
                    assert!(
                        matches!(bad, Err(PulselinkError::InvalidArgs { .. })),
                        "{bad:?}"
                    );
                });
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    rt.block_on(client.shutdown()).unwrap();
    drop(server);
}

/// `Socket.emit_start` and `emit_start_event` (Python's `emit`), called from a foreign thread:
/// offline and connected it commits in place (connected, handing the entry to the engine);
/// under `Full` it hands the emit over at once. Every way, the ids come in order and the
/// server gets each tick once, in order.
#[test]
fn emit_start_commits_or_waits_in_place_and_hands_over_behind_an_fsync() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = temp_dir("ffi-emit-start");
    let ledger = dir.join("ledger");
    let server = rt.block_on(NodeServer::start_with_ledger(&ledger));
    let plain = || EmitOptions {
        priority: None,
        ttl_ms: None,
        coalesce_key: None,
        confirm: false,
    };
    let n = std::cell::Cell::new(0u64);
    // Both entry points, taking turns: one order across them.
    let tick = |socket: &pulselink_ffi::Socket| {
        let i = n.get();
        n.set(i + 1);
        if i % 2 == 1 {
            let event = json!(["tick", { "n": i }]).to_string();
            socket.emit_start_event(event).unwrap()
        } else {
            let args = json!([{ "n": i }]).to_string();
            socket
                .emit_start("tick".into(), args, plain(), vec![])
                .unwrap()
        }
    };
    for (durability, name) in [(Durability::Normal, "normal"), (Durability::Full, "full")] {
        let mut cfg = config(&server.url());
        cfg.store = Some(StoreConfig {
            path: Some(
                dir.join(format!("{name}.db"))
                    .to_string_lossy()
                    .into_owned(),
            ),
            durability: Some(durability),
            ..Default::default()
        });
        let client = Client::new(cfg, None).unwrap();
        let socket = client.main_socket();
        let (mut here, mut handed_over, mut ids) = (0, 0, Vec::new());
        let mut finish = |started: EmitStart, ids: &mut Vec<u64>| match started {
            EmitStart::Done { entry_id } => {
                here += 1;
                ids.push(entry_id);
            }
            EmitStart::Running { rest } => {
                handed_over += 1;
                ids.push(rt.block_on(rest.wait()).unwrap());
            }
        };
        for _ in 0..20 {
            finish(tick(&socket), &mut ids);
        }
        rt.block_on(client.connect()).unwrap();
        for _ in 0..50 {
            finish(tick(&socket), &mut ids);
        }
        match durability {
            // Committed here, every one: nothing else emits, the queue has room, and a fresh
            // block of numbers does not run low within 70 entries.
            Durability::Normal => assert_eq!(here, 70, "done in place"),
            // Its first poll sends it; only a thread descheduled right then can find the
            // fsync done already.
            Durability::Full => assert!(handed_over >= 35, "{handed_over} handed over"),
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        rt.block_on(client.outbox().drained()).unwrap();
        rt.block_on(client.shutdown()).unwrap();
    }
    let firsts: Vec<u64> = pulselink_tests::read_ledger(&ledger)
        .into_iter()
        .filter(|l| !l.dup)
        .map(|l| l.n)
        .collect();
    assert_eq!(firsts, (0..140).collect::<Vec<_>>());
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `cancel()` while a `next_batch` waits and an event is already there for it: the wait
/// wakes with both ready, and must return nothing (a cancelled receiver hears nothing more),
/// whichever its select takes first.
#[tokio::test(flavor = "current_thread")]
async fn a_receiver_cancelled_while_an_event_waits_for_it_returns_nothing() {
    const ROUNDS: usize = 16;
    let server = NodeServer::start().await;
    let client = Client::new(config(&server.url()), None).unwrap();
    // The server greets each connection: past that, only what the test asks for arrives.
    let greeting = client.events();
    client.connect().await.unwrap();
    assert_eq!(greeting.next_batch(1).await[0].name, "welcome");
    greeting.cancel();
    let main = client.main_socket();
    let args = json!([{ "event": "n", "args": [] }]).to_string();
    for round in 0..ROUNDS {
        let (receiver, marker) = (client.events(), client.events());
        let wait = receiver.next_batch(10);
        tokio::pin!(wait);
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(wait.as_mut().poll(cx)));
        assert!(first.await.is_pending(), "nothing sent yet");
        main.emit("emit-to-me".into(), args.clone(), vec![])
            .await
            .unwrap();
        // The engine hands an event to every listener in one go: once the marker has it,
        // so has the waiting receiver's channel.
        assert_eq!(marker.next_batch(10).await[0].name, "n");
        receiver.cancel();
        let got = wait.await;
        assert!(
            got.is_empty(),
            "round {round}: a cancelled receiver returned {got:?}"
        );
        marker.cancel();
    }
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_wait_for_events_loses_none() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server.url()), None).unwrap();
    let rx = client.events();
    client.connect().await.unwrap();
    assert_eq!(rx.next_batch(1).await[0].name, "welcome");
    // Nothing is coming: the wait is cancelled, as a foreign task cancellation would.
    let waited = tokio::time::timeout(Duration::from_millis(20), rx.next_batch(100)).await;
    assert!(waited.is_err());
    let args = json!([{ "event": "n", "args": [1] }]).to_string();
    for _ in 0..3 {
        client
            .main_socket()
            .emit("emit-to-me".into(), args.clone(), vec![])
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(rx.next_batch(100).await);
    }
    assert_eq!(got.len(), 3, "an event went to the cancelled wait");

    // close() wakes a waiting receiver, which then stays empty.
    let rx = Arc::new(rx);
    let waiter = tokio::spawn({
        let rx = rx.clone();
        async move { rx.next_batch(10).await }
    });
    tokio::task::yield_now().await;
    rx.cancel();
    assert!(waiter.await.unwrap().is_empty());
    assert!(rx.next_batch(10).await.is_empty());
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn outbox_options_and_metrics_cross_the_boundary() {
    let dir = temp_dir("ffi-outbox");
    let mut cfg = config("http://127.0.0.1:1");
    cfg.store = Some(StoreConfig {
        path: Some(dir.join("o.db").to_string_lossy().into_owned()),
        ..Default::default()
    });
    let client = Client::new(cfg.clone(), None).unwrap();
    let high = EmitOptions {
        priority: Some(Priority::High),
        ..Default::default()
    };
    client
        .main_socket()
        .emit("metric:recorded".into(), "[1]".into(), vec![])
        .await
        .unwrap();
    let id = client
        .main_socket()
        .emit_with(
            "session:status".into(),
            r#"[{"s":"paused"}]"#.into(),
            high,
            vec![],
        )
        .await
        .unwrap();
    let coalesced = EmitOptions {
        coalesce_key: Some("hr".into()),
        ..Default::default()
    };
    for bpm in [70, 71] {
        client
            .main_socket()
            .emit_with(
                "hr".into(),
                json!([{ "bpm": bpm }]).to_string(),
                coalesced.clone(),
                vec![],
            )
            .await
            .unwrap();
    }
    let bin = client
        .main_socket()
        .emit(
            "frame".into(),
            r#"[{"_placeholder":true,"num":0}]"#.into(),
            vec![vec![1, 2]],
        )
        .await;
    assert!(bin.is_ok(), "{bin:?}");
    let missing = client
        .main_socket()
        .emit("frame".into(), "[1]".into(), vec![vec![1]])
        .await;
    assert!(
        matches!(missing, Err(PulselinkError::InvalidArgs { .. })),
        "{missing:?}"
    );

    let outbox = client.outbox();
    let list = outbox.list(10).await.unwrap();
    let names: Vec<_> = list.iter().map(|p| p.event.as_str()).collect();
    assert_eq!(names, ["session:status", "metric:recorded", "hr", "frame"]);
    assert_eq!((list[0].id, list[0].priority), (id, Priority::High));
    assert_eq!(list[2].args_json, r#"[{"bpm":71}]"#);
    assert_eq!(list[3].attachments, 1);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.coalesced), (4, 1));
    assert!(outbox.remove(id).await.unwrap());
    client.shutdown().await.unwrap();

    // The same file, a new client: the entries are still there and flow once connected.
    let server = NodeServer::start().await;
    cfg.url = server.url();
    let client = Client::new(cfg, None).unwrap();
    assert_eq!(client.outbox().stats().await.unwrap().pending, 3);
    client.connect().await.unwrap();
    client.outbox().drained().await.unwrap();
    let m = client.metrics().await.unwrap();
    assert_eq!(
        (&m.state, m.connects, m.outbox.pending),
        (&State::Connected, 1, 0)
    );
    assert!(m.events_sent >= 3, "{m:?}");
    client.shutdown().await.unwrap();
}

/// The lifecycle calls cross the boundary: background (flush, then `Background`), foreground
/// (connected again), a network path; on a closed client each says `Closed`.
#[tokio::test]
async fn lifecycle_calls_cross_the_boundary() {
    let server = NodeServer::start().await;
    let client = Client::new(config(&server.url()), None).unwrap();
    client.connect().await.unwrap();
    let path = NetworkPath {
        available: true,
        interface: Interface::Cellular,
        expensive: true,
        constrained: false,
    };
    client.network_changed(path).unwrap();
    let flush = client.enter_background(2_000).await.unwrap();
    assert_eq!(flush.remaining, 0);
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = client.state();
        while s != State::Background {
            s = client.next_state(s).await;
        }
    })
    .await;
    assert!(state.is_ok(), "{:?}", client.state());
    // Time in the background is what the metric measures: spend a known amount there.
    let stay = Duration::from_millis(50);
    tokio::time::sleep(stay).await;
    client.enter_foreground().unwrap();
    let mut s = client.state();
    while s != State::Connected {
        s = tokio::time::timeout(Duration::from_secs(10), client.next_state(s))
            .await
            .unwrap();
    }
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.radio_wakeups >= 1 && metrics.state_times.background_ms >= stay.as_millis() as u64,
        "{metrics:?}"
    );
    client.shutdown().await.unwrap();
    assert!(matches!(
        client.enter_foreground(),
        Err(PulselinkError::Closed)
    ));
    assert!(matches!(
        client.enter_background(10).await,
        Err(PulselinkError::Closed)
    ));
}

#[test]
fn bad_configuration_is_an_error_with_the_field_named() {
    let err = |cfg: ClientConfig| Client::new(cfg, None).err().unwrap();
    assert!(matches!(
        err(config("nope")),
        PulselinkError::InvalidConfig { .. }
    ));
    let mut c = config("http://127.0.0.1:1");
    c.auth_json = Some("{token".into());
    assert!(err(c).to_string().contains("auth_json"));
    let mut c = config("http://127.0.0.1:1");
    c.namespaces = vec!["rooms".into()];
    assert!(err(c).to_string().contains("namespace"));
    let mut c = config("http://127.0.0.1:1");
    c.reconnect = Some(pulselink_ffi::ReconnectConfig {
        enabled: true,
        initial_delay_ms: Some(100),
        max_delay_ms: Some(10),
        factor: Some(0.5),
        jitter: None,
        max_attempts: None,
        suspend_after_ms: None,
        suspended_retry_ms: None,
    });
    assert!(matches!(err(c), PulselinkError::InvalidConfig { .. }));
    let mut c = config("wss://127.0.0.1:1");
    c.tls = Some(pulselink_ffi::TlsConfig {
        ca_pem: vec![],
        builtin_roots: true,
        pins: vec!["sha256/short".into()],
    });
    assert!(err(c).to_string().contains("pins[0]"));
    assert!(matches!(
        pulselink_ffi::certificate_pins("no certificate here".into()),
        Err(PulselinkError::InvalidArgs { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_settings_are_checked_and_never_echo_the_password() {
    let with = |proxy: ProxyConfig| ClientConfig {
        proxy: Some(proxy),
        ..config("http://127.0.0.1:9")
    };
    let blank = ProxyConfig {
        url: None,
        username: None,
        password: None,
        no_proxy: vec![],
        from_environment: false,
    };
    let refused = |c: ClientConfig| match Client::new(c, None) {
        Err(PulselinkError::InvalidConfig { message }) => message,
        Err(other) => panic!("not InvalidConfig: {other:?}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(refused(with(blank.clone())).contains("url or from_environment"));
    let both = ProxyConfig {
        url: Some("http://p:1".into()),
        from_environment: true,
        ..blank.clone()
    };
    assert!(refused(with(both)).contains("not both"));
    let bad = ProxyConfig {
        url: Some("ftp://u:S3CRET@p:1".into()),
        ..blank.clone()
    };
    let message = refused(with(bad));
    assert!(
        message.contains("scheme") && !message.contains("S3CRET"),
        "{message}"
    );
    let good = ProxyConfig {
        url: Some("socks5h://127.0.0.1:1".into()),
        username: Some("u".into()),
        password: Some("S3CRET".into()),
        no_proxy: vec!["example.com".into(), "10.0.0.0/8".into()],
        ..blank
    };
    let client = Client::new(with(good), None).unwrap();
    client.shutdown().await.unwrap();
}
