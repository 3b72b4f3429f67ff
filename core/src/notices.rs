//! Where a client's notices go: its own broadcast channel, and its hub's, if it has one.
//!
//! A broadcast channel allocates every slot when it is made (a notice slot is about 100
//! bytes), so both channels are made when someone first listens: most of a hub's thousands
//! of clients are never asked for their notices one by one, and a hub's app may listen to
//! all of them on the hub's one channel ([`crate::Hub::notices`]) instead. A notice published
//! before anyone listens reaches no one either way, as with any broadcast channel.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::event::Notice;

/// Notices kept for a client's slow receiver (one per emit dropped or failed, so a burst can
/// be long).
const OWN: usize = 256;

/// The same for a hub's client, whose app mostly listens on the hub's channel.
const HUB_MEMBER: usize = 16;

/// Notices kept on a hub's channel for its slow receiver: every client's, so that a fleet's
/// reconnect storm (a few notices from each of thousands of clients at once) fits. Some
/// 1.8 MiB, allocated when the app first listens.
const HUB: usize = 16_384;

/// A notice of one of a [`crate::Hub`]'s clients, on the hub's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct HubNotice {
    /// Which client: the hub's number for it ([`crate::Client::hub_index`]).
    pub client: u64,
    /// What happened.
    pub notice: Notice,
}

/// A hub's channel, made on first use; shared by the hub and its clients.
#[derive(Clone, Default)]
pub(crate) struct HubChannel(Arc<OnceLock<broadcast::Sender<HubNotice>>>);

impl HubChannel {
    /// A receiver of every client's notices from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HubNotice> {
        self.0.get_or_init(|| broadcast::channel(HUB).0).subscribe()
    }
}

/// One client's notices: published by its engine, listened to by its app.
pub(crate) struct Notices {
    own: OnceLock<broadcast::Sender<Notice>>,
    capacity: usize,
    /// The hub's channel and the client's number on it.
    hub: Option<(HubChannel, u64)>,
}

impl Notices {
    /// A client's own, with no hub.
    pub(crate) fn single() -> Self {
        Self {
            own: OnceLock::new(),
            capacity: OWN,
            hub: None,
        }
    }

    /// Client number `index` of the hub whose channel is `hub`.
    pub(crate) fn hub_member(hub: HubChannel, index: u64) -> Self {
        Self {
            own: OnceLock::new(),
            capacity: HUB_MEMBER,
            hub: Some((hub, index)),
        }
    }

    /// Sends `notice` to whoever listens: the client's receivers and its hub's.
    pub(crate) fn publish(&self, notice: Notice) {
        if let Some((HubChannel(hub), client)) = &self.hub
            && let Some(tx) = hub.get()
            && tx.receiver_count() > 0
        {
            let _ = tx.send(HubNotice {
                client: *client,
                notice: notice.clone(),
            });
        }
        if let Some(tx) = self.own.get() {
            let _ = tx.send(notice);
        }
    }

    /// A receiver of this client's notices from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.own
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// The client's number in its hub, if it has one.
    pub(crate) fn hub_index(&self) -> Option<u64> {
        self.hub.as_ref().map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(n: u32) -> Notice {
        Notice::ReconnectAttempt { attempt: n }
    }

    #[test]
    fn no_channel_is_made_until_someone_listens_and_then_each_hears_what_follows() {
        let hub = HubChannel::default();
        let notices = Notices::hub_member(hub.clone(), 7);
        notices.publish(notice(1));
        assert!(notices.own.get().is_none(), "no slots allocated for no one");
        assert!(hub.0.get().is_none());

        let mut own = notices.subscribe();
        notices.publish(notice(2));
        assert_eq!(own.try_recv().unwrap(), notice(2));
        assert!(own.try_recv().is_err(), "nothing from before it listened");
        assert!(hub.0.get().is_none(), "the hub's channel is still unmade");

        let mut all = hub.subscribe();
        notices.publish(notice(3));
        assert_eq!(
            all.try_recv().unwrap(),
            HubNotice {
                client: 7,
                notice: notice(3)
            }
        );
        assert_eq!(own.try_recv().unwrap(), notice(3), "both hear it");
        assert_eq!(notices.hub_index(), Some(7));
    }

    #[test]
    fn a_single_client_keeps_more_notices_for_a_slow_receiver_than_a_hub_member() {
        let single = Notices::single();
        let member = Notices::hub_member(HubChannel::default(), 0);
        assert_eq!((single.capacity, member.capacity), (OWN, HUB_MEMBER));
        assert_eq!(single.hub_index(), None);
        let mut slow = member.subscribe();
        for n in 0..=HUB_MEMBER as u32 {
            member.publish(notice(n));
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
    }
}
