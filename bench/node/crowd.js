// socket.io-client holding many connections in one process: the peer of `pulselink swarm`'s
// crowd rows. Each socket is its own connection (forceNew), WebSocket only, subscribed to room
// r1; sockets start evenly spread over RAMP_MS, and HOLD_MS after the last one is subscribed
// the process reports what it holds.
// Usage: node crowd.js <url> <clients> <ramp_ms> <hold_ms>
// Prints one JSON line: clients, connected, rss_before_kib, rss_connected_kib,
// rss_per_client_kib (per connected socket), threads, connect_time {p50_ms, p99_ms}.
"use strict";
const fs = require("fs");
const { io } = require("../../tests/node/node_modules/socket.io-client");

const [url, nArg, rampArg, holdArg] = process.argv.slice(2);
const n = Number(nArg);
const ramp = Number(rampArg);
const hold = Number(holdArg);

function status(field) {
  const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp(`${field}:\\s+(\\d+)`));
  return m ? Number(m[1]) : null;
}
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] : null;
};

const rssBefore = status("VmRSS");
const sockets = [];
const connectMs = [];
let subscribed = 0;
let done = false;
function finish() {
  if (done) return;
  done = true;
  const rss = status("VmRSS");
  const connected = sockets.filter((s) => s.connected).length;
  console.log(JSON.stringify({
    client: "socket.io-client", clients: n, connected,
    rss_before_kib: rssBefore, rss_connected_kib: rss,
    rss_per_client_kib: connected ? (rss - rssBefore) / connected : null,
    threads: status("Threads"),
    connect_time: { p50_ms: pct(connectMs, 0.5), p99_ms: pct(connectMs, 0.99) },
  }));
  process.exit(0);
}
for (let i = 0; i < n; i++) {
  setTimeout(() => {
    const started = now();
    const s = io(url, { transports: ["websocket"], forceNew: true });
    sockets.push(s);
    s.once("connect", () => {
      s.emit("room:subscribe", { roomId: "r1" }, () => {
        connectMs.push(now() - started);
        if (++subscribed === n) setTimeout(finish, hold);
      });
    });
  }, (ramp * i) / n);
}
// Whatever happens, a report: the ramp, a minute to connect, the hold.
setTimeout(finish, ramp + 60000 + hold);
