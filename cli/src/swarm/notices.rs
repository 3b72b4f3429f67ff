//! The fleet's notices, read for every device at once on its hub's channel: each device's
//! connects and losses (the connected gauge, connect times, reconnects), failed attempts and
//! refusals by kind, losses by reason, each charged to the device that met it.
//!
//! One reader for the fleet rather than one per device: a client's own notice channel
//! allocates its slots when first asked for (some 1.7 KiB), and a reader per device would
//! ask for each.

use pulselink::{DisconnectReason, HubNotice, Notice};
use tokio::sync::{broadcast, oneshot};

use super::tally::{Tally, kind_of};

/// Reads a hub's `notices` into `tally` until `done` fires, then the ones already published,
/// so that none before the end goes uncounted.
pub(crate) async fn follow(
    mut notices: broadcast::Receiver<HubNotice>,
    tally: std::sync::Arc<Tally>,
    done: oneshot::Receiver<()>,
) {
    tokio::pin!(done);
    loop {
        tokio::select! {
            n = notices.recv() => match n {
                Ok(n) => count(&tally, n),
                Err(broadcast::error::RecvError::Lagged(missed)) => lagged(&tally, missed),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut done => break,
        }
    }
    loop {
        match notices.try_recv() {
            Ok(n) => count(&tally, n),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => lagged(&tally, missed),
            Err(_) => return,
        }
    }
}

/// A burst (a fleet's reconnect storm, say) outran the reader: the gauge is settled from
/// the clients' states, and the report says that some notices (failures among them, maybe)
/// went uncounted.
fn lagged(tally: &Tally, missed: u64) {
    tally.reconcile();
    tally.error("notices missed", None, || {
        format!("{missed} notices skipped by a reader that fell behind")
    });
}

fn count(tally: &Tally, HubNotice { client, notice }: HubNotice) {
    let device = tally.device(client);
    match notice {
        Notice::Connected { namespace, .. } => tally.joined(client, &namespace),
        Notice::ConnectFailed { error, .. } => {
            let kind = format!("connect: {}", kind_of(&format!("{error:?}")));
            tally.error(&kind, device, || error.to_string());
        }
        Notice::ConnectError {
            message,
            will_retry,
            ..
        } => {
            let kind = if will_retry {
                "refused, retrying"
            } else {
                "refused"
            };
            tally.error(kind, device, || message);
        }
        // The client's own decision (after a refusal, say): reported where it began.
        Notice::Disconnected {
            reason: DisconnectReason::ClientDisconnect,
        } => tally.left(client),
        Notice::Disconnected { reason } => {
            tally.left(client);
            let kind = format!("disconnect: {}", kind_of(&format!("{reason:?}")));
            tally.error(&kind, device, || format!("{reason:?}"));
        }
        _ => {}
    }
}
