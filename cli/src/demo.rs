//! `pulselink demo`: a Socket.IO server (socketioxide) and a Pulselink client in one process.
//!
//! The server streams `metric:recorded` heart-rate readings and answers `session:feedback`
//! with an ack. Half-way through it is dropped (its runtime shut down, every socket closed)
//! and restarted on the same port a second later; the client reconnects by itself and the
//! readings carry on.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use pulselink::{Client, ClientConfig, State};
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef},
};

use crate::states::describe;

/// A Socket.IO server on its own runtime, so dropping it closes every connection at once.
struct DemoServer {
    runtime: tokio::runtime::Runtime,
}

static READING: AtomicU64 = AtomicU64::new(0);

impl DemoServer {
    fn start(addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let bound = std_listener.local_addr()?;
        runtime.spawn(async move {
            let (layer, io) = SocketIo::new_layer();
            io.ns("/", async |socket: SocketRef, Data(auth): Data<Value>| {
                let user = auth
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or("anonymous");
                let _ = socket.emit("session:status", &json!({"status": "active", "user": user}));
                socket.on(
                    "session:feedback",
                    async |Data(feedback): Data<Value>, ack: AckSender| {
                        let _ = ack.send(&json!({"received": true, "feedback": feedback}));
                    },
                );
            });
            let emitter = io.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let n = READING.fetch_add(1, Ordering::Relaxed);
                    let bpm = 120 + (n * 7 % 40);
                    let _ = emitter
                        .emit(
                            "metric:recorded",
                            &json!({"metric": "heart_rate", "value": bpm, "seq": n}),
                        )
                        .await;
                }
            });
            let app = axum::Router::new().layer(layer);
            if let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
        Ok((Self { runtime }, bound))
    }

    /// Drops the server: every task and socket of its runtime goes away.
    fn stop(self) {
        self.runtime.shutdown_background();
    }
}

fn io_error(e: std::io::Error) -> pulselink::Error {
    pulselink::Error::Connect(format!("demo server: {e}"))
}

pub(crate) async fn run() -> pulselink::Result<()> {
    let started = Instant::now();
    let stamp = move || format!("[{:>5.2}s]", started.elapsed().as_secs_f64());
    let (server, addr) = DemoServer::start(([127, 0, 0, 1], 0).into()).map_err(io_error)?;
    println!(
        "{} server: Socket.IO (socketioxide) listening on {addr}",
        stamp()
    );

    let config = ClientConfig::new(&format!("http://{addr}"))?
        .with_static_auth(json!({"token": "demo-user"}));
    let client = Client::new(config)?;
    let mut events = client.events();
    let mut states = client.states();
    let state_log = tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let s = states.borrow_and_update().clone();
            println!("{} client state: {}", stamp(), describe(&s));
            if s == State::Closed {
                break;
            }
        }
    });

    client.connect().await?;
    let reply = client
        .emit_with_ack(
            "session:feedback",
            json!({"rating": 5}),
            Duration::from_secs(2),
        )
        .await?;
    println!("{} ack for session:feedback: {}", stamp(), reply.args.get());

    let show =
        |ev: &pulselink::Event| println!("{} event {} {}", stamp(), ev.name(), ev.args_json());
    let mut shown = 0;
    while shown < 4 {
        let Some(ev) = events.recv().await else { break };
        show(&ev);
        shown += 1;
    }

    println!("{} server: dropping every connection and stopping", stamp());
    server.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Emitted while the server is down: buffered, delivered and acknowledged after the
    // reconnect.
    let offline = client.clone();
    let offline_emit = tokio::spawn(async move {
        let feedback = json!({"rating": 4, "note": "sent while offline"});
        offline
            .emit_with_ack("session:feedback", feedback, Duration::from_secs(10))
            .await
    });
    let (server, _) = DemoServer::start(addr).map_err(io_error)?;
    let back = Instant::now();
    println!("{} server: listening again on {addr}", stamp());
    let mut states = client.states();
    let _ = states.wait_for(|s| *s == State::Connected).await;
    println!(
        "{} reconnected {} ms after the server came back",
        stamp(),
        back.elapsed().as_millis()
    );
    match offline_emit.await {
        Ok(Ok(reply)) => println!(
            "{} ack for the emit made while offline: {}",
            stamp(),
            reply.args.get()
        ),
        Ok(Err(e)) => println!("{} emit made while offline failed: {e}", stamp()),
        Err(_) => {}
    }

    let mut after = 0;
    while after < 4 {
        let Some(ev) = events.recv().await else { break };
        show(&ev);
        after += 1;
    }
    client.close().await;
    let _ = state_log.await;
    server.stop();
    println!(
        "{} demo finished: the client reconnected by itself and kept receiving",
        stamp()
    );
    Ok(())
}
