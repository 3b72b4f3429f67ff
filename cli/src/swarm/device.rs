//! One simulated device of the swarm: a `Client` of its own (identity, subscriptions, outbox)
//! that connects at its slot of the ramp, emits telemetry at its rate and reports everything
//! to the fleet's [`Tally`] (what it receives, its hub counts).

use std::{sync::Arc, time::Duration};

use pulselink::{AuthProvider, Client, Hub, SharedConfig, StaticAuth};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinSet, time::Instant};

use super::tally::{Tally, bump, kind_of};

/// What every device does, with `{i}` replaced by its index.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Subscriptions replayed on every connect: event and JSON template.
    pub(crate) subscriptions: Vec<(String, String)>,
    /// Telemetry: event, JSON template, emits per second (0: none).
    pub(crate) emit: Option<(String, String)>,
    pub(crate) rate: f64,
    /// Wait for the server's acknowledgement of each emit, this long at most.
    pub(crate) ack: Option<Duration>,
}

/// `template` with `{i}` replaced, parsed as JSON.
pub(crate) fn fill(template: &str, i: u64) -> Result<Value, String> {
    serde_json::from_str(&template.replace("{i}", &i.to_string()))
        .map_err(|e| format!("{template:?} is not JSON once {{i}} is replaced: {e}"))
}

/// What every device shares: the hub its client is made on, the fleet's one configuration,
/// the plan and the counts.
pub(crate) struct Fleet {
    pub(crate) hub: Hub,
    pub(crate) shared: SharedConfig,
    pub(crate) plan: Plan,
    pub(crate) tally: Arc<Tally>,
    /// Each device's token, `{i}` replaced by its index; without one, the configuration's.
    pub(crate) token_template: Option<String>,
}

impl Fleet {
    /// Device `i`'s client: the fleet's configuration with its own token, if there is a
    /// template (an auth provider of some 100 bytes, not a configuration of 1.5 KiB).
    fn client(&self, i: u64) -> pulselink::Result<Client> {
        let auth = self.token_template.as_ref().map(|t| {
            Arc::new(StaticAuth(
                json!({ "token": t.replace("{i}", &i.to_string()) }),
            )) as Arc<dyn AuthProvider>
        });
        self.hub.shared_client(&self.shared, auth)
    }
}

/// Starts device `i` now: its client connects, subscribes and, when the plan has telemetry,
/// emits it until `stop` turns true. Returns the client (`None` if it could not be made).
///
/// A device without telemetry returns as soon as it has started: its client runs on its own
/// engine, and the hub's notices follow its state for the whole fleet (`notices.rs`), so a
/// task held per idle device (about 0.9 KiB) would only wait. A device's future is as large
/// as its largest state, so the subscribe and emit calls (about 1 KiB and 0.7 KiB of state)
/// run boxed.
pub(crate) async fn run(
    i: u64,
    fleet: Arc<Fleet>,
    mut stop: watch::Receiver<bool>,
) -> Option<Client> {
    let tally = &fleet.tally;
    let client = match fleet.client(i) {
        Ok(c) => c,
        Err(e) => {
            tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
            return None;
        }
    };
    // The hub's notices name the client by the hub's number for it (every hub client has
    // one), from its first connect on: it is enlisted before it starts.
    if let Some(n) = client.hub_index() {
        tally.enlist(n, i, Instant::now(), client.clone());
    }
    for (event, template) in &fleet.plan.subscriptions {
        let arg = fill(template, i).expect("validated before the run");
        if let Err(e) = Box::pin(client.subscribe(event, arg, None)).await {
            tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
        }
    }
    if let Err(e) = client.start() {
        tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
    }
    let plan = &fleet.plan;
    let Some((event, template)) = plan.emit.as_ref().filter(|_| plan.rate > 0.0) else {
        return Some(client);
    };
    let mut acks = JoinSet::new();
    let every = Duration::from_secs_f64(1.0 / plan.rate);
    // A random phase, so a fleet started together does not emit in lockstep.
    let first = Instant::now() + every.mul_f64(fastrand::f64());
    let mut ticks = tokio::time::interval_at(first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        // Answered emits are reaped as the run goes, so a long run holds only those pending.
        while acks.try_join_next().is_some() {}
        let args = fill(template, i).expect("validated before the run");
        match plan.ack {
            None => match Box::pin(client.emit(event, args)).await {
                Ok(()) => bump(&tally.emitted),
                Err(e) => tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string()),
            },
            Some(timeout) => {
                let (client, tally, event) = (client.clone(), tally.clone(), event.clone());
                acks.spawn(async move {
                    let sent = Instant::now();
                    match client.emit_with_ack(&event, args, timeout).await {
                        Ok(_) => {
                            bump(&tally.emitted);
                            tally.ack(sent.elapsed());
                        }
                        Err(e) => {
                            bump(&tally.ack_failed);
                            tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
                        }
                    }
                });
            }
        }
    }
    // Every acknowledged emit is answered (or times out) before the device counts as done.
    while acks.join_next().await.is_some() {}
    Some(client)
}
