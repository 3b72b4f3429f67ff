//! What the simulated fleet did, counted by every device at once: gauges and counters as
//! atomics, latencies in histograms, errors by kind with the clients that met them.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use pulselink::{Client, Hub, State};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::histogram::Histogram;

/// Clients listed per error kind in the report.
const CLIENTS_PER_ERROR: usize = 10;

/// One kind of error: how often, which clients (the first few), one message.
#[derive(Debug, Default)]
struct ErrorKind {
    count: u64,
    clients: Vec<u64>,
    example: String,
}

/// The fleet's shared counts.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The devices' hub, whose totals count the events they received: a listener on each
    /// device only to count would cost it a task and a channel, some 2.8 KiB of its memory.
    hub: Hub,
    /// Clients connected now.
    pub(crate) connected: AtomicU64,
    /// Clients that connected at least once.
    pub(crate) ever_connected: AtomicU64,
    /// Emits that returned Ok (committed to the outbox).
    pub(crate) emitted: AtomicU64,
    /// Acknowledged emits answered.
    pub(crate) acked: AtomicU64,
    /// Acknowledged emits that failed (timeout, refusal, closed).
    pub(crate) ack_failed: AtomicU64,
    /// Connections that came back after a loss.
    pub(crate) reconnects: AtomicU64,
    /// Connections lost.
    pub(crate) disconnects: AtomicU64,
    acks: Mutex<Histogram>,
    connects: Mutex<Histogram>,
    errors: Mutex<BTreeMap<String, ErrorKind>>,
    /// Each device by the hub's number for its client: the hub's notices name clients so.
    /// A list indexed by that number (the swarm's hub makes only its devices' clients, so
    /// the numbers run from 0 to the fleet's size), made to the fleet's size at the start.
    devices: Mutex<Vec<Option<Device>>>,
    /// The namespace whose joining makes a device connected.
    main: String,
}

/// A device as its client's notices show it.
#[derive(Debug)]
struct Device {
    /// Its index in the fleet.
    i: u64,
    /// When it started.
    began: Instant,
    connected: bool,
    ever: bool,
    /// Its client, whose state settles the counts when notices were missed.
    client: Client,
}

/// The device with the hub's client number `hub_index`, if one is enlisted.
fn device_mut(devices: &mut [Option<Device>], hub_index: u64) -> Option<&mut Device> {
    devices.get_mut(usize::try_from(hub_index).ok()?)?.as_mut()
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The variant name of an error or reason's `Debug` form (`Unauthorized { .. }` →
/// `Unauthorized`): what the report groups by.
pub(crate) fn kind_of(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(debug.len());
    &debug[..end]
}

impl Tally {
    /// Counts for the `clients` devices of `hub`, connected once they have joined `main`.
    pub(crate) fn new(hub: Hub, main: &str, clients: u64) -> Self {
        Self {
            main: main.to_owned(),
            hub,
            connected: AtomicU64::default(),
            ever_connected: AtomicU64::default(),
            emitted: AtomicU64::default(),
            acked: AtomicU64::default(),
            ack_failed: AtomicU64::default(),
            reconnects: AtomicU64::default(),
            disconnects: AtomicU64::default(),
            acks: Mutex::default(),
            connects: Mutex::default(),
            errors: Mutex::default(),
            devices: Mutex::new(Vec::with_capacity(usize::try_from(clients).unwrap_or(0))),
        }
    }

    /// Counts an acknowledged emit's round trip.
    pub(crate) fn ack(&self, rtt: Duration) {
        bump(&self.acked);
        self.acks
            .lock()
            .expect("no panic holding it")
            .record(micros(rtt));
    }

    /// Counts a client's first connect and how long it took.
    pub(crate) fn first_connect(&self, took: Duration) {
        bump(&self.ever_connected);
        self.connects
            .lock()
            .expect("no panic holding it")
            .record(micros(took));
    }

    /// Notes that device `i`, started at `began`, is `client`, the hub's client number
    /// `hub_index`.
    pub(crate) fn enlist(&self, hub_index: u64, i: u64, began: Instant, client: Client) {
        let Ok(at) = usize::try_from(hub_index) else {
            return;
        };
        let mut devices = self.devices.lock().expect("no panic holding it");
        if devices.len() <= at {
            devices.resize_with(at + 1, || None);
        }
        devices[at] = Some(Device {
            i,
            began,
            connected: false,
            ever: false,
            client,
        });
    }

    /// The device whose client is the hub's number `hub_index`.
    pub(crate) fn device(&self, hub_index: u64) -> Option<u64> {
        let devices = self.devices.lock().expect("no panic holding it");
        devices
            .get(usize::try_from(hub_index).ok()?)?
            .as_ref()
            .map(|d| d.i)
    }

    /// Client `hub_index` joined `namespace`: its device is connected if that is the main one
    /// (a first connect, timed from the device's start, or a reconnect).
    pub(crate) fn joined(&self, hub_index: u64, namespace: &str) {
        if namespace != self.main {
            return;
        }
        let mut devices = self.devices.lock().expect("no panic holding it");
        let Some(d) = device_mut(&mut devices, hub_index).filter(|d| !d.connected) else {
            return;
        };
        d.connected = true;
        bump(&self.connected);
        if d.ever {
            bump(&self.reconnects);
        } else {
            d.ever = true;
            let took = d.began.elapsed();
            drop(devices);
            self.first_connect(took);
        }
    }

    /// Client `hub_index`'s connection ended: its device, if connected, no longer is.
    pub(crate) fn left(&self, hub_index: u64) {
        let mut devices = self.devices.lock().expect("no panic holding it");
        if let Some(d) = device_mut(&mut devices, hub_index).filter(|d| d.connected) {
            self.lost(d);
        }
    }

    /// Device `d`, connected until now, lost its connection.
    fn lost(&self, d: &mut Device) {
        d.connected = false;
        self.connected.fetch_sub(1, Ordering::Relaxed);
        bump(&self.disconnects);
    }

    /// Settles every device's connected flag with its client's state, for when notices went
    /// unread (a reader that fell behind) or before the gauge is relied on: a missed loss
    /// counts as one, a missed first connect counts (untimed); a missed loss and return
    /// cannot be told from no loss. Returns the devices connected now.
    pub(crate) fn reconcile(&self) -> u64 {
        let mut devices = self.devices.lock().expect("no panic holding it");
        for d in devices.iter_mut().flatten() {
            let now = d.client.state() == State::Connected;
            if now == d.connected {
                continue;
            }
            if now {
                d.connected = true;
                bump(&self.connected);
                if !d.ever {
                    d.ever = true;
                    bump(&self.ever_connected);
                }
            } else {
                self.lost(d);
            }
        }
        get(&self.connected)
    }

    /// Counts an error of `kind` met by `client` (by the fleet as a whole: `None`).
    pub(crate) fn error(&self, kind: &str, client: Option<u64>, message: impl FnOnce() -> String) {
        let mut errors = self.errors.lock().expect("no panic holding it");
        let e = errors.entry(kind.to_owned()).or_default();
        e.count += 1;
        if e.example.is_empty() {
            e.example = message();
        }
        if let Some(client) = client
            && e.clients.len() < CLIENTS_PER_ERROR
            && !e.clients.contains(&client)
        {
            e.clients.push(client);
        }
    }

    /// The ack round trips so far.
    pub(crate) fn acks(&self) -> Histogram {
        self.acks.lock().expect("no panic holding it").clone()
    }

    /// Counters now, for the status line (rates are differences of two readings).
    pub(crate) fn reading(&self) -> Reading {
        Reading {
            connected: get(&self.connected),
            events_in: self.hub.stats().events_received,
            emitted: get(&self.emitted),
            reconnects: get(&self.reconnects),
            errors: self
                .errors
                .lock()
                .expect("no panic holding it")
                .iter()
                .map(|(k, e)| (k.clone(), e.count))
                .collect(),
        }
    }

    /// The report's counts.
    pub(crate) fn to_json(&self) -> Value {
        let errors: serde_json::Map<String, Value> = self
            .errors
            .lock()
            .expect("no panic holding it")
            .iter()
            .map(|(k, e)| {
                (
                    k.clone(),
                    json!({"count": e.count, "clients": e.clients, "example": e.example}),
                )
            })
            .collect();
        json!({
            "connected": get(&self.connected),
            "ever_connected": get(&self.ever_connected),
            "connect_time": self.connects.lock().expect("no panic holding it").to_json(),
            "events_in": self.hub.stats().events_received,
            "emitted": get(&self.emitted),
            "acked": get(&self.acked),
            "ack_failed": get(&self.ack_failed),
            "ack_latency": self.acks().to_json(),
            "reconnects": get(&self.reconnects),
            "disconnects": get(&self.disconnects),
            "errors": errors,
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The counters at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reading {
    pub(crate) connected: u64,
    pub(crate) events_in: u64,
    pub(crate) emitted: u64,
    pub(crate) reconnects: u64,
    pub(crate) errors: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_variant_names() {
        assert_eq!(kind_of("Unauthorized { namespace: \"/\" }"), "Unauthorized");
        assert_eq!(kind_of("Connect(\"refused\")"), "Connect");
        assert_eq!(kind_of("AckTimeout(1s)"), "AckTimeout");
        assert_eq!(kind_of("Closed"), "Closed");
    }

    #[test]
    fn errors_keep_a_count_the_first_clients_and_one_message() {
        let t = Tally::new(Hub::new().unwrap(), "/", 10);
        for c in 0..15 {
            t.error("Unauthorized", Some(c), || format!("client {c} refused"));
        }
        let v = t.to_json();
        let e = &v["errors"]["Unauthorized"];
        assert_eq!(e["count"], 15);
        assert_eq!(e["clients"].as_array().unwrap().len(), CLIENTS_PER_ERROR);
        assert_eq!(e["example"], "client 0 refused");
    }

    /// A client that is never started (`Idle` for as long as the test looks); made on a
    /// runtime, as every client is.
    fn idle_client(hub: &Hub) -> Client {
        hub.client(pulselink::ClientConfig::new("http://127.0.0.1:9").unwrap())
            .unwrap()
    }

    #[tokio::test]
    async fn a_device_is_connected_from_joining_the_main_namespace_to_losing_its_link() {
        let hub = Hub::new().unwrap();
        let t = Tally::new(hub.clone(), "/", 10);
        t.enlist(7, 3, Instant::now(), idle_client(&hub));
        let gauges = |t: &Tally| {
            (
                get(&t.connected),
                get(&t.ever_connected),
                get(&t.reconnects),
                get(&t.disconnects),
            )
        };
        t.joined(7, "/chat");
        t.left(7);
        assert_eq!(
            gauges(&t),
            (0, 0, 0, 0),
            "another namespace, then a failed link"
        );
        t.joined(7, "/");
        t.joined(7, "/");
        assert_eq!(gauges(&t), (1, 1, 0, 0), "one connect, counted once");
        assert_eq!(t.to_json()["connect_time"]["count"], 1);
        t.left(7);
        t.left(7);
        assert_eq!(gauges(&t), (0, 1, 0, 1), "one loss, counted once");
        t.joined(7, "/");
        assert_eq!(
            gauges(&t),
            (1, 1, 1, 1),
            "back: a reconnect, not a first connect"
        );
        t.joined(8, "/");
        assert_eq!(gauges(&t), (1, 1, 1, 1), "a client of no device");
        assert_eq!(t.device(7), Some(3));
        // Its loss went unread: the client's state (not connected) settles it.
        assert_eq!(t.reconcile(), 0);
        assert_eq!(gauges(&t), (0, 1, 1, 2), "a missed loss counted once");
        assert_eq!(t.reconcile(), 0);
        assert_eq!(gauges(&t), (0, 1, 1, 2));
    }
}
