//! One simulated device of the swarm: a `Client` of its own (identity, subscriptions, outbox)
//! that connects at its slot of the ramp, emits telemetry at its rate and reports everything
//! to the fleet's [`Tally`] (what it receives, its hub counts).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use pulselink::{Client, ClientConfig, Hub, State};
use serde_json::Value;
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

/// How a device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Connected when the run stopped.
    pub(crate) connected_at_end: bool,
}

/// Runs device `i` from `start` until `stop` turns true.
///
/// A fleet's devices sit idle in this future most of the run, and a future is as large as
/// its largest state, so what is large and short-lived is kept out of it: the configuration
/// (over 1 KiB) arrives boxed, and the subscribe and emit calls (about 1 KiB and 0.7 KiB of
/// state each) run boxed. An idle device's task is then a few hundred bytes, not 2.8 KiB.
pub(crate) async fn run(
    i: u64,
    hub: Hub,
    config: Box<ClientConfig>,
    plan: Arc<Plan>,
    tally: Arc<Tally>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let ended = Outcome {
        connected_at_end: false,
    };
    tokio::select! {
        () = tokio::time::sleep_until(start) => {}
        _ = stop.wait_for(|s| *s) => return ended,
    }
    // Unboxed here, so the box is freed now rather than held by this future to the end.
    let client = match hub.client({
        let boxed = config;
        *boxed
    }) {
        Ok(c) => c,
        Err(e) => {
            tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
            return ended;
        }
    };
    // The hub's notices name the client by the hub's number for it (every hub client has one).
    if let Some(n) = client.hub_index() {
        tally.enlist(n, i);
    }
    for (event, template) in &plan.subscriptions {
        let arg = fill(template, i).expect("validated before the run");
        if let Err(e) = Box::pin(client.subscribe(event, arg, None)).await {
            tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
        }
    }
    // Its state is watched by this task, not one of its own: a task per device was another
    // 1.1 KiB each. Its notices are read for the whole fleet on the hub's channel
    // (`notices.rs`), so the client never makes a notice channel of its own.
    let mut watch = Watch::new(&client);
    if let Err(e) = client.start() {
        tally.error(kind_of(&format!("{e:?}")), Some(i), || e.to_string());
    }

    let mut acks = JoinSet::new();
    if let (Some((event, template)), true) = (&plan.emit, plan.rate > 0.0) {
        let every = Duration::from_secs_f64(1.0 / plan.rate);
        // A random phase, so a fleet started together does not emit in lockstep.
        let first = Instant::now() + every.mul_f64(fastrand::f64());
        let mut ticks = tokio::time::interval_at(first, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
                () = watch.next(&tally) => continue,
            }
            // Answered emits are reaped as the run goes, so a long run holds only those pending.
            while acks.try_join_next().is_some() {}
            let args = fill(template, i).expect("validated before the run");
            match plan.ack {
                None => match watched(&mut watch, &tally, Box::pin(client.emit(event, args))).await
                {
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
    } else {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = watch.next(&tally) => {}
            }
        }
    }
    // Every acknowledged emit is answered (or times out) before the device counts as done.
    while watched(&mut watch, &tally, acks.join_next())
        .await
        .is_some()
    {}
    let connected_at_end = client.state() == State::Connected;
    // Watched no more: closing is the run's end, not a loss to count.
    drop(watch);
    client.close().await;
    Outcome { connected_at_end }
}

/// Awaits `work` while following the client's state: a state is kept only until the next, so
/// a loss and a return while the device waits (for room in its outbox, say) would otherwise
/// go uncounted.
async fn watched<T>(watch: &mut Watch, tally: &Tally, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = watch.next(tally) => {}
        }
    }
}

/// Follows one client's state into the tally: the connected gauge, the first connect's time,
/// reconnects and losses.
struct Watch {
    states: watch::Receiver<State>,
    began: Instant,
    connected: bool,
    ever: bool,
    /// The client's state is still published; once it is not there is nothing to follow.
    open: bool,
}

impl Watch {
    fn new(client: &Client) -> Self {
        Self {
            states: client.states(),
            began: Instant::now(),
            connected: false,
            ever: false,
            open: true,
        }
    }

    /// Waits for the next change of state and reports it; never returns once the client is
    /// gone. Cancel-safe, as `changed` is.
    async fn next(&mut self, tally: &Tally) {
        if !self.open {
            return std::future::pending().await;
        }
        if self.states.changed().await.is_err() {
            self.open = false;
            return;
        }
        let now = *self.states.borrow_and_update() == State::Connected;
        if now && !self.connected {
            bump(&tally.connected);
            if self.ever {
                bump(&tally.reconnects);
            } else {
                self.ever = true;
                tally.first_connect(self.began.elapsed());
            }
        } else if !now && self.connected {
            tally.connected.fetch_sub(1, Ordering::Relaxed);
            bump(&tally.disconnects);
        }
        self.connected = now;
    }
}
