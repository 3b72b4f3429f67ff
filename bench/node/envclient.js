// A JSON-envelope client written directly on the `ws` package: the reference Pulselink's
// envelope rows are measured against, doing what such a hand-written client does — parse
// every message, give each one it sends an id and a timestamp, correlate answers by
// metadata.requestId — and nothing more (no outbox, no de-duplication, no reconnect).
// Usage: node envclient.js <env-in|env-out|env-ack> <ws url> <n>; output as pulselink-bench's.
"use strict";
const WebSocket = require("../../tests/node/node_modules/ws");

const { mode, url, n, EVENT, sample, now, reporter } = require("./peer");
const report = reporter("ws");

const prefix = `ref${process.pid}`;
let sent = 0;
const envelope = (type, data, requestId) =>
  JSON.stringify({
    id: `${prefix}-${++sent}`,
    type,
    timestamp: new Date().toISOString(),
    data,
    ...(requestId === undefined ? {} : { metadata: { requestId: String(requestId) } }),
  });

// Requests answered by metadata.requestId; every other message goes to `onEvent`.
const waiting = new Map();
let nextRequest = 0;
let onEvent = () => {};
function request(type, data) {
  const id = ++nextRequest;
  ws.send(envelope(type, data, id));
  return new Promise((resolve) => waiting.set(String(id), resolve));
}

const ws = new WebSocket(url);
ws.on("message", (raw) => {
  const msg = JSON.parse(raw);
  const requestId = msg.metadata && msg.metadata.requestId;
  if (requestId !== undefined && waiting.has(requestId)) {
    const resolve = waiting.get(requestId);
    waiting.delete(requestId);
    resolve(msg.data);
  } else if (msg.type === "auth_response") {
    if (!msg.success) throw new Error(`auth refused: ${JSON.stringify(msg)}`);
    run().catch((e) => {
      console.error(e);
      process.exit(1);
    });
  } else onEvent(msg);
});
ws.on("open", () => ws.send(JSON.stringify({ type: "auth", token: "good", userId: "u1", sessionId: "s1" })));
ws.on("error", (e) => {
  console.error(e);
  process.exit(1);
});

async function run() {
  if (mode === "env-in") {
    let seen = 0;
    const started = now();
    onEvent = (msg) => {
      if (msg.type === EVENT && ++seen === n) {
        const secs = now() - started;
        report({ events: n, secs, events_per_sec: n / secs });
        process.exit(0);
      }
    };
    await request("blast", n);
  } else if (mode === "env-out") {
    const started = now();
    // Yield to the event loop now and then so the socket can drain, as an app would.
    for (let i = 0; i < n; i++) {
      ws.send(envelope(EVENT, sample));
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    for (;;) {
      if ((await request("count?", null)) >= n) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const secs = now() - started;
    report({ events: n, secs, events_per_sec: n / secs });
    process.exit(0);
  } else if (mode === "env-ack") {
    const us = [];
    for (let i = 0; i < n + Math.floor(n / 10); i++) {
      const t = now();
      await request("quiz:answer_submit", i);
      if (i >= Math.floor(n / 10)) us.push((now() - t) * 1e6);
    }
    us.sort((a, b) => a - b);
    const p = (q) => us[Math.round((us.length - 1) * q)];
    report({ p50_us: p(0.5), p99_us: p(0.99), samples: us.length });
    process.exit(0);
  } else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
}
