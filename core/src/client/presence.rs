//! Presence as a kept view: who is online in a room, from the server's online/offline events,
//! re-fetched with the platform's request after every (re)connect (offline events are missed
//! while disconnected), de-duplicated by user id. Built on the public socket API: events, an
//! acknowledged request, notices.

use std::{
    collections::BTreeSet,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::sync::broadcast;
use tracing::warn;

use super::{socket::Socket, stream::EventStream};
use crate::{
    event::{Event, Notice},
    outbox::{EmitOptions, Priority},
};

/// How long a presence request may wait in the outbox: one not sent by then is stale (the
/// next connect asks again).
const FETCH_TTL: Duration = Duration::from_secs(10);

/// The first wait before asking again after a failed fetch, doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Changes buffered for a slow reader of [`Presence::changes`] before it misses some (it can
/// always read the whole view with [`Presence::users`]).
const CHANGES: usize = 256;

/// The names a platform uses for presence. Every field has the seed platforms' name as its
/// default ([`PresenceConfig::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceConfig {
    /// The room.
    pub room: String,
    /// The event saying a user came online (`presence:user_online`).
    pub online_event: String,
    /// The event saying a user went offline (`presence:user_offline`).
    pub offline_event: String,
    /// The request answered with the room's users (`presence:get_online`), sent with
    /// `{<room_field>: room}`.
    pub get_online: String,
    /// The room's field in the request and the events (`roomId`).
    pub room_field: String,
    /// The user id's field in the events and in each user of the answer (`userId`); a user
    /// given as a plain string is its id.
    pub user_field: String,
    /// The field of the answer holding the users (`users`); an answer that is an array is the
    /// list itself.
    pub list_field: String,
}

impl PresenceConfig {
    /// The seed platforms' names for `room`.
    pub fn new(room: impl Into<String>) -> Self {
        Self {
            room: room.into(),
            online_event: "presence:user_online".into(),
            offline_event: "presence:user_offline".into(),
            get_online: "presence:get_online".into(),
            room_field: "roomId".into(),
            user_field: "userId".into(),
            list_field: "users".into(),
        }
    }
}

/// A change of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The user.
    pub user_id: String,
    /// Online now (or offline now).
    pub online: bool,
}

/// Who is online in one room, kept current. Dropping it stops the keeping. While it lives it
/// keeps its client running: drop (or close the client) when done.
pub struct Presence {
    users: Arc<Mutex<BTreeSet<String>>>,
    /// Only the task sends, so every receiver sees the stream end when the task does (the
    /// view dropped, or the client closed).
    changes: broadcast::Receiver<PresenceChange>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("users", &self.users())
            .finish()
    }
}

impl Socket {
    /// Who is online in `config.room`, kept current from the server's presence events and
    /// re-fetched after every (re)connect. Subscribe to the room as usual (`subscribe`): the
    /// view only watches. Dropping the [`Presence`] stops it.
    pub fn presence(&self, config: PresenceConfig) -> Presence {
        let notices = self.notices();
        Presence::start(self.clone(), config, notices)
    }
}

impl Presence {
    /// Starts keeping the view on `socket`'s namespace (see [`Socket::presence`]).
    fn start(socket: Socket, config: PresenceConfig, notices: broadcast::Receiver<Notice>) -> Self {
        let users = Arc::new(Mutex::new(BTreeSet::new()));
        let (sender, changes) = broadcast::channel(CHANGES);
        let keeper = Keeper {
            events: socket.events_any_of(&[&config.online_event, &config.offline_event]),
            socket,
            config,
            users: users.clone(),
            changes: sender,
        };
        let runtime = keeper.socket.runtime().clone();
        let task = runtime.spawn(keeper.run(notices));
        Self {
            users,
            changes,
            task,
        }
    }

    /// The users online now, sorted.
    pub fn users(&self) -> Vec<String> {
        self.users
            .lock()
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every change from now on: users coming online and going offline, each once. Ends
    /// when the view or its client is closed.
    pub fn changes(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.resubscribe()
    }
}

struct Keeper {
    socket: Socket,
    config: PresenceConfig,
    /// Online and offline events in arrival order: an offline then online of one user must
    /// not be applied the other way round.
    events: EventStream,
    users: Arc<Mutex<BTreeSet<String>>>,
    changes: broadcast::Sender<PresenceChange>,
}

impl Keeper {
    async fn run(mut self, mut notices: broadcast::Receiver<Notice>) {
        // Already connected: ask now; otherwise the connect below asks.
        let mut fetch = self.socket.is_connected().then(|| self.fetch());
        // Events that arrive while a fetch is out are applied again after its answer, which
        // the server may have computed before them.
        let mut during: Vec<(String, bool)> = Vec::new();
        // A fetch that failed is asked again, later each time, while connected.
        let mut retry_in = FIRST_RETRY;
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut retrying = false;
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => {
                        let online = ev.name() == self.config.online_event;
                        self.seen(&ev, online, fetch.is_some(), &mut during);
                    }
                    None => return,
                },
                n = notices.recv() => match n {
                    Ok(Notice::Connected { namespace, .. }) if namespace == self.socket.namespace() => {
                        during.clear();
                        retry_in = FIRST_RETRY;
                        fetch = Some(self.fetch());
                    }
                    Ok(Notice::Disconnected { .. }) => retrying = false,
                    // Notices were missed, a `Connected` perhaps: ask again to be sure.
                    Err(broadcast::error::RecvError::Lagged(_)) if self.socket.is_connected() => {
                        during.clear();
                        fetch = Some(self.fetch());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                answer = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                    fetch = None;
                    match answer {
                        Some(list) => {
                            self.replace(list);
                            for (user, online) in during.drain(..) {
                                self.apply(user, online);
                            }
                        }
                        None if self.socket.is_connected() => {
                            retry.as_mut().reset(tokio::time::Instant::now() + retry_in);
                            retry_in = (retry_in * 2).min(LAST_RETRY);
                            retrying = true;
                        }
                        None => {}
                    }
                    during.clear();
                }
                () = &mut retry, if retrying => {
                    retrying = false;
                    fetch = Some(self.fetch());
                }
            }
        }
    }

    /// Asks for the room's users; `None` when the answer did not come (the next connect asks
    /// again).
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Option<Vec<String>>> + Send>> {
        let socket = self.socket.clone();
        let event = self.config.get_online.clone();
        let mut request = serde_json::Map::new();
        request.insert(
            self.config.room_field.clone(),
            Value::String(self.config.room.clone()),
        );
        let args = Value::Object(request);
        let list_field = self.config.list_field.clone();
        let user_field = self.config.user_field.clone();
        Box::pin(async move {
            // High: the view is stale until the answer, and a backlog of the app's own emits
            // must not hold it past its TTL.
            let options = EmitOptions {
                ttl: Some(FETCH_TTL),
                priority: Priority::High,
                ..EmitOptions::default()
            };
            let reply = socket
                .emit_with_ack_options(&event, args, options, FETCH_TTL)
                .await
                .ok()?;
            let first = reply.values().ok()?.into_iter().next()?;
            let list = match first {
                Value::Array(list) => list,
                Value::Object(mut o) if matches!(o.get(&list_field), Some(Value::Array(_))) => {
                    match o.remove(&list_field) {
                        Some(Value::Array(list)) => list,
                        _ => return None,
                    }
                }
                other => {
                    let kind = match other {
                        Value::Object(_) => "an object without the list field",
                        _ => "neither a list nor an object",
                    };
                    warn!(%event, kind, "presence answer has no list of users");
                    return None;
                }
            };
            Some(
                list.into_iter()
                    .filter_map(|u| user_id(&u, &user_field))
                    .collect(),
            )
        })
    }

    /// An online/offline event: applied if it is about this room.
    fn seen(&self, ev: &Event, online: bool, fetching: bool, during: &mut Vec<(String, bool)>) {
        let Ok(values) = ev.args() else { return };
        let Some(first) = values.first() else { return };
        let room = first.get(&self.config.room_field);
        if room.is_some_and(|r| r.as_str() != Some(self.config.room.as_str())) {
            return;
        }
        let Some(user) = user_id(first, &self.config.user_field) else {
            return;
        };
        if fetching {
            during.push((user.clone(), online));
        }
        self.apply(user, online);
    }

    fn apply(&self, user: String, online: bool) {
        let changed = match self.users.lock() {
            Ok(mut users) if online => users.insert(user.clone()),
            Ok(mut users) => users.remove(&user),
            Err(_) => false,
        };
        if changed {
            let _ = self.changes.send(PresenceChange {
                user_id: user,
                online,
            });
        }
    }

    /// The server's list replaces the view; the differences are changes.
    fn replace(&self, list: Vec<String>) {
        let fresh: BTreeSet<String> = list.into_iter().collect();
        let (gone, came) = match self.users.lock() {
            Ok(mut users) => {
                let gone: Vec<String> = users.difference(&fresh).cloned().collect();
                let came: Vec<String> = fresh.difference(&users).cloned().collect();
                *users = fresh;
                (gone, came)
            }
            Err(_) => return,
        };
        for (user, online) in gone
            .into_iter()
            .map(|u| (u, false))
            .chain(came.into_iter().map(|u| (u, true)))
        {
            let _ = self.changes.send(PresenceChange {
                user_id: user,
                online,
            });
        }
    }
}

/// A user's id: a string, or the `field` of an object (a number is taken as its text).
fn user_id(user: &Value, field: &str) -> Option<String> {
    let v = match user {
        Value::Object(o) => o.get(field)?,
        other => other,
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
