//! UniFFI surface of Pulselink: thin adapters over the `pulselink` core, no logic of its own.
//!
//! Foreign code gets one `Client` object with async methods, records for configuration,
//! events and state, and one error enum. Every call runs on a process-wide tokio runtime
//! owned by this crate, so foreign threads and foreign async runtimes can call in freely.

use std::{
    future::Future,
    sync::{Arc, LazyLock},
    time::Duration,
};

use tokio::sync::Mutex;

uniffi::setup_scaffolding!("pulselink");

/// The runtime every client and call runs on (two workers: engine I/O and callbacks).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pulselink")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the Pulselink runtime: {e}"))
});

/// Runs `f` on the Pulselink runtime and awaits it from any foreign executor. If the foreign
/// side drops the future the call still completes, so an emit is never half done.
async fn on_runtime<F>(f: F) -> Result<F::Output, PulselinkError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME
        .spawn(f)
        .await
        .map_err(|e| PulselinkError::Internal {
            message: e.to_string(),
        })
}

/// Errors foreign code sees; each message says what happened and what to do.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum PulselinkError {
    /// The configuration is unusable.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// Which field and why.
        message: String,
    },
    /// Arguments are not a JSON array or reference missing attachments.
    #[error("invalid arguments: {message}")]
    InvalidArgs {
        /// What is wrong.
        message: String,
    },
    /// The outbox is at its limit; nothing queued was lost.
    #[error("{message}")]
    OutboxFull {
        /// Details.
        message: String,
    },
    /// The emit expired (its TTL passed) before it could be delivered.
    #[error("{message}")]
    Expired {
        /// Details.
        message: String,
    },
    /// The store failed: disk full, a damaged file, or another I/O error.
    #[error("{message}")]
    Storage {
        /// Details.
        message: String,
    },
    /// No acknowledgement arrived in time.
    #[error("{message}")]
    AckTimeout {
        /// Details.
        message: String,
    },
    /// The link dropped before the acknowledgement arrived.
    #[error("{message}")]
    Disconnected {
        /// Details.
        message: String,
    },
    /// The server refused the credentials.
    #[error("{message}")]
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// Not connected in time (still retrying), gave up, or the connection failed.
    #[error("{message}")]
    Connection {
        /// Details.
        message: String,
    },
    /// The client is closed.
    #[error("client is closed")]
    Closed,
    /// A bug in Pulselink (a panic caught at the boundary).
    #[error("internal error: {message}")]
    Internal {
        /// Details.
        message: String,
    },
}

impl From<pulselink::Error> for PulselinkError {
    fn from(e: pulselink::Error) -> Self {
        use pulselink::Error as E;
        let message = e.to_string();
        match e {
            E::InvalidConfig(_) => Self::InvalidConfig { message },
            E::InvalidArgs(_) => Self::InvalidArgs { message },
            E::OutboxFull { .. } => Self::OutboxFull { message },
            E::Expired => Self::Expired { message },
            E::DiskFull(_) | E::StoreCorrupt(_) | E::Store(_) => Self::Storage { message },
            E::AckTimeout(_) => Self::AckTimeout { message },
            E::Disconnected => Self::Disconnected { message },
            E::Unauthorized { message: m, .. } => Self::Unauthorized { message: m },
            E::Closed => Self::Closed,
            E::ConnectTimeout(_)
            | E::GaveUp { .. }
            | E::ServerDisconnected
            | E::Connect(_)
            | E::Protocol(_) => Self::Connection { message },
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientConfig {
    /// Server URL, e.g. `https://api.example.com`.
    pub url: String,
    /// Namespaces to join; the first is the main one. Empty means `/`.
    pub namespaces: Vec<String>,
    /// The auth object for every namespace CONNECT, as JSON text (e.g. `{"token":"..."}`).
    pub auth_json: Option<String>,
    /// SQLite file for the durable outbox; `None` keeps it in memory.
    #[uniffi(default = None)]
    pub store_path: Option<String>,
}

/// An inbound event.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Event {
    /// Namespace it arrived on.
    pub namespace: String,
    /// Event name.
    pub name: String,
    /// Arguments as a JSON array text.
    pub args_json: String,
    /// Binary attachments.
    pub attachments: Vec<Vec<u8>>,
}

impl From<&pulselink::Event> for Event {
    fn from(e: &pulselink::Event) -> Self {
        Self {
            namespace: e.namespace().to_owned(),
            name: e.name().to_owned(),
            args_json: e.args_json().to_owned(),
            attachments: e.attachments().to_vec(),
        }
    }
}

/// Connection state.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum State {
    /// Not connected, not trying.
    Idle,
    /// First attempt under way.
    Connecting,
    /// Connected.
    Connected,
    /// Waiting for, or running, retry `attempt`.
    Reconnecting {
        /// 1-based attempt.
        attempt: u32,
        /// Wait before it, in milliseconds.
        delay_ms: u64,
    },
    /// The app said the network is down.
    Offline,
    /// Credentials refused.
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// Closed for good.
    Closed,
}

impl From<pulselink::State> for State {
    fn from(s: pulselink::State) -> Self {
        use pulselink::State as S;
        match s {
            S::Idle => Self::Idle,
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::Reconnecting { attempt, delay } => Self::Reconnecting {
                attempt,
                delay_ms: delay.as_millis() as u64,
            },
            S::Offline => Self::Offline,
            S::Unauthorized { message } => Self::Unauthorized { message },
            S::Closed => Self::Closed,
        }
    }
}

/// A Pulselink client.
#[derive(uniffi::Object)]
pub struct Client {
    inner: pulselink::Client,
    /// Subscribed at construction so no event is missed before the app starts pulling.
    events: Arc<Mutex<pulselink::EventStream>>,
}

#[uniffi::export]
impl Client {
    /// Creates a client; nothing connects until `connect()`.
    #[uniffi::constructor]
    pub fn new(config: ClientConfig) -> Result<Arc<Self>, PulselinkError> {
        let mut core = pulselink::ClientConfig::new(&config.url)?;
        if !config.namespaces.is_empty() {
            core = core.with_namespaces(config.namespaces);
        }
        if let Some(auth) = config.auth_json {
            let value = serde_json::from_str(&auth).map_err(|e| PulselinkError::InvalidConfig {
                message: format!("auth_json: {e}"),
            })?;
            core = core.with_static_auth(value);
        }
        if let Some(path) = config.store_path {
            core = core.with_store(path);
        }
        let _guard = RUNTIME.enter();
        let inner = pulselink::Client::new(core)?;
        let events = Arc::new(Mutex::new(inner.events()));
        Ok(Arc::new(Self { inner, events }))
    }

    /// Connects and waits until joined (or a definite failure).
    pub async fn connect(&self) -> Result<(), PulselinkError> {
        let c = self.inner.clone();
        Ok(on_runtime(async move { c.connect().await }).await??)
    }

    /// Emits `event` with `args_json` (a JSON array of arguments) on the main namespace.
    pub async fn emit(&self, event: String, args_json: String) -> Result<(), PulselinkError> {
        let c = self.inner.clone();
        let args = pulselink::Args::from_json_array(args_json)?;
        Ok(on_runtime(async move { c.emit(&event, args).await }).await??)
    }

    /// Emits and waits up to `timeout_ms` for the acknowledgement; returns its JSON array.
    pub async fn emit_with_ack(
        &self,
        event: String,
        args_json: String,
        timeout_ms: u64,
    ) -> Result<String, PulselinkError> {
        let c = self.inner.clone();
        let args = pulselink::Args::from_json_array(args_json)?;
        let timeout = Duration::from_millis(timeout_ms);
        let reply =
            on_runtime(async move { c.emit_with_ack(&event, args, timeout).await }).await??;
        Ok(reply.args.get().to_owned())
    }

    /// Waits for inbound events and returns up to `max` of them (empty once closed).
    pub async fn next_events(&self, max: u32) -> Result<Vec<Event>, PulselinkError> {
        let events = self.events.clone();
        let max = max.max(1) as usize;
        on_runtime(async move {
            let mut buf = Vec::with_capacity(max.min(1024));
            events.lock().await.recv_many(&mut buf, max).await;
            buf.iter().map(Event::from).collect()
        })
        .await
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state().into()
    }

    /// Reachability hint from the platform.
    pub fn set_network_available(&self, available: bool) -> Result<(), PulselinkError> {
        Ok(self.inner.set_network_available(available)?)
    }

    /// Closes the client for good.
    pub async fn close(&self) -> Result<(), PulselinkError> {
        let c = self.inner.clone();
        on_runtime(async move { c.close().await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_is_an_error_not_a_panic() {
        let cfg = |url: &str, auth: Option<&str>| ClientConfig {
            url: url.into(),
            namespaces: vec![],
            auth_json: auth.map(Into::into),
            store_path: None,
        };
        assert!(matches!(
            Client::new(cfg("nope", None)),
            Err(PulselinkError::InvalidConfig { .. })
        ));
        let err = Client::new(cfg("http://127.0.0.1:1", Some("{token")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("auth_json"), "{err}");
        let c = Client::new(cfg("http://127.0.0.1:1", Some(r#"{"token":"t"}"#))).unwrap();
        assert_eq!(c.state(), State::Idle);
    }

    #[test]
    fn calls_from_many_foreign_threads() {
        let c = Client::new(ClientConfig {
            url: "http://127.0.0.1:1".into(),
            namespaces: vec![],
            auth_json: None,
            store_path: None,
        })
        .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    // A foreign thread with its own executor: a plain blocking wait.
                    let r = futures_lite_block_on(c.emit("t".into(), format!("[{i}]")));
                    assert!(r.is_ok(), "{r:?}");
                    let bad = futures_lite_block_on(c.emit("t".into(), "{}".into()));
                    assert!(matches!(bad, Err(PulselinkError::InvalidArgs { .. })));
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        futures_lite_block_on(c.close()).unwrap();
        assert_eq!(c.state(), State::Closed);
    }

    /// A minimal executor standing in for a foreign one (no tokio context on this thread).
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(f)
    }
}
