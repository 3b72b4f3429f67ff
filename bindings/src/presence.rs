//! Presence as a kept view: the core's `Presence`, pulled like events.

use tokio::sync::{Mutex, broadcast};

/// The names a platform uses for presence; every field left `None` is the seed platforms'
/// (`presence:user_online`, `presence:user_offline`, `presence:get_online`, `roomId`,
/// `userId`, `users`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct PresenceConfig {
    /// The room.
    pub room: String,
    /// The event saying a user came online.
    #[uniffi(default)]
    pub online_event: Option<String>,
    /// The event saying a user went offline.
    #[uniffi(default)]
    pub offline_event: Option<String>,
    /// The request answered with the room's users.
    #[uniffi(default)]
    pub get_online: Option<String>,
    /// The room's field in the request and the events.
    #[uniffi(default)]
    pub room_field: Option<String>,
    /// The user id's field.
    #[uniffi(default)]
    pub user_field: Option<String>,
    /// The field of the answer holding the users.
    #[uniffi(default)]
    pub list_field: Option<String>,
}

impl PresenceConfig {
    pub(crate) fn into_core(self) -> pulselink::PresenceConfig {
        let mut c = pulselink::PresenceConfig::new(self.room);
        let set = |field: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut c.online_event, self.online_event);
        set(&mut c.offline_event, self.offline_event);
        set(&mut c.get_online, self.get_online);
        set(&mut c.room_field, self.room_field);
        set(&mut c.user_field, self.user_field);
        set(&mut c.list_field, self.list_field);
        c
    }
}

/// A user came online or went offline.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PresenceChange {
    /// The user.
    pub user_id: String,
    /// Online now (or offline now).
    pub online: bool,
}

/// Who is online in one room, kept current; `users()` is the view, `next_change()` its
/// changes (for one consumer). Stops when cancelled or dropped.
#[derive(uniffi::Object)]
pub struct Presence {
    inner: std::sync::Mutex<Option<pulselink::Presence>>,
    changes: Mutex<broadcast::Receiver<pulselink::PresenceChange>>,
}

impl Presence {
    pub(crate) fn new(inner: pulselink::Presence) -> Self {
        let changes = Mutex::new(inner.changes());
        Self {
            inner: std::sync::Mutex::new(Some(inner)),
            changes,
        }
    }
}

#[uniffi::export]
impl Presence {
    /// The users online now, sorted.
    pub fn users(&self) -> Vec<String> {
        self.inner
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(pulselink::Presence::users))
            .unwrap_or_default()
    }

    /// Waits for the next change since the view was made; `None` once cancelled or the client
    /// is closed. One consumer: two would split the changes. A reader that falls far behind
    /// skips to the latest changes (`users()` is always whole).
    pub async fn next_change(&self) -> Option<PresenceChange> {
        let mut rx = self.changes.lock().await;
        loop {
            match rx.recv().await {
                Ok(c) => {
                    return Some(PresenceChange {
                        user_id: c.user_id,
                        online: c.online,
                    });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Stops keeping the view; a waiting `next_change` returns `None`.
    pub fn cancel(&self) {
        if let Ok(mut p) = self.inner.lock() {
            p.take();
        }
    }
}
