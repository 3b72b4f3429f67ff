// A JSON-envelope WebSocket server (seed 002's protocol), scripted for Pulselink's tests.
//
// Usage: node envelope-server.js  (env: PORT=0, RATE_LIMIT: "tick" messages allowed per
//   RATE_WINDOW ms, 0 = no limit)
// Prints "listening <port>" on stdout once it accepts connections on ws://127.0.0.1:<port>/ws.
//
// Protocol: every message is {"id","type","timestamp","data","metadata"?}. The first client
// message must be {"type":"auth","token","userId","sessionId"}; tokens "bad" and "stale" are
// refused with auth_response success:false plus an AUTHENTICATION_FAILED error, and the socket
// is closed, as many servers do. A message carrying metadata.requestId gets a response with
// "success" and the same requestId. The client pings ({"type":"ping"}) and the server pongs.
//
// Test hooks (message types): echo, subscribe/unsubscribe {eventTypes}, publish {type,data},
// emit-to-me {type,data,id?} or {raw} (raw text frame), mute-pongs, fail {code,message},
// reject-me, tick (rate limited, recorded once per envelope id), stats? (counters).
// Benchmark hooks: blast N (that many pre-encoded "metric:recorded" events, written
// straight onto the socket so the client, not the server, is measured), count? (how many
// "metric:recorded" messages were received from this connection; they are counted only, not
// kept in the stats, which would grow through a benchmark's millions).
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");
const { wsFrame, pump } = require("./frames");

const port = Number(process.env.PORT || 0);
const rateLimit = Number(process.env.RATE_LIMIT || 0);
const rateWindow = Number(process.env.RATE_WINDOW || 1000);

const stats = {
  authAttempts: 0,
  authTokens: [],
  ticks: [],
  duplicateTicks: 0,
  refusedTicks: 0,
  subscribeCalls: 0,
  arrivals: [],
};
const seenTickIds = new Set();
const clients = new Set();
let counter = 0;

const now = () => new Date().toISOString();

// The benchmark's event: the Socket.IO benchmark's payload in an envelope. Each blast frame
// gets an id of its own (clients drop repeated ids), written over the template's zeros.
const BENCH_EVENT = "metric:recorded";
const BENCH_DATA = { sessionId: "s_42", metric: "heart_rate", value: 142, unit: "bpm", ts: 1732000000, src: "hr" };
const ID_DIGITS = 9;
let blasts = 0;

// `count` text frames of the benchmark event, ids `<prefix>-<n>` for n from `first`.
function blastFrames(prefix, first, count, timestamp) {
  const one = wsFrame(JSON.stringify({ id: `${prefix}-${"0".repeat(ID_DIGITS)}`, type: BENCH_EVENT, timestamp, data: BENCH_DATA }));
  const digits = one.indexOf(`-${"0".repeat(ID_DIGITS)}"`) + 1;
  const out = Buffer.allocUnsafe(one.length * count);
  for (let i = 0; i < count; i++) {
    const at = i * one.length;
    one.copy(out, at);
    out.write(String(first + i).padStart(ID_DIGITS, "0"), at + digits, "latin1");
  }
  return out;
}

// Writes `count` benchmark events onto the raw socket under `ws` (a fresh buffer per chunk:
// the ids differ, and a written one may still be queued).
function blast(ws, count) {
  const prefix = `b${process.pid}x${++blasts}`;
  const timestamp = now();
  pump(ws._socket, count, (first, n) => blastFrames(prefix, first, n, timestamp));
}
const nextId = () => `srv-${process.pid}-${++counter}`;

function send(ws, type, data, extra) {
  ws.send(JSON.stringify({ id: nextId(), type, timestamp: now(), data, ...extra }));
}

function respond(ws, msg, ok, data, error) {
  const requestId = msg.metadata && msg.metadata.requestId;
  if (requestId === undefined) return;
  const body = { id: nextId(), type: msg.type, timestamp: now(), success: ok, data, metadata: { requestId } };
  if (error) body.error = error;
  ws.send(JSON.stringify(body));
}

function onAuth(ws, state, msg) {
  stats.authAttempts += 1;
  stats.authTokens.push(msg.token);
  if (msg.token === "bad" || msg.token === "stale") {
    const error = { code: "AUTHENTICATION_FAILED", message: "Invalid token" };
    ws.send(JSON.stringify({ type: "auth_response", success: false, error }));
    ws.send(JSON.stringify({ type: "error", data: { ...error, timestamp: now() } }));
    // Closing: nothing more is read from this socket.
    state.closing = true;
    setTimeout(() => ws.close(4001, "unauthorized"), 20);
    return;
  }
  state.authed = true;
  state.userId = msg.userId;
  clients.add(ws);
  ws.send(JSON.stringify({ type: "auth_response", success: true, userId: msg.userId }));
}

// The fixed-window limiter for "tick": over the limit, one rate_limit_exceeded notice and an
// error response per refused request until the window resets.
const limiter = { windowStart: 0, count: 0, noticeSent: false };

function admitTick(ws, msg) {
  if (!rateLimit) return true;
  const t = Date.now();
  if (t - limiter.windowStart >= rateWindow) {
    limiter.windowStart = t;
    limiter.count = 0;
    limiter.noticeSent = false;
  }
  if (limiter.count < rateLimit) {
    limiter.count += 1;
    return true;
  }
  stats.refusedTicks += 1;
  const resetTime = new Date(limiter.windowStart + rateWindow).toISOString();
  if (!limiter.noticeSent) {
    limiter.noticeSent = true;
    send(ws, "rate_limit_exceeded", { limit: rateLimit, window: rateWindow, resetTime });
  }
  respond(ws, msg, false, { resetTime }, { code: "RATE_LIMIT_EXCEEDED", message: "slow down" });
  return false;
}

function onMessage(ws, state, msg) {
  const data = msg.data;
  if (msg.type !== BENCH_EVENT) stats.arrivals.push(msg.type);
  switch (msg.type) {
    case "ping":
      if (!state.muted) ws.send(JSON.stringify({ id: nextId(), type: "pong", timestamp: now() }));
      return;
    case "echo":
      send(ws, "echo", data);
      return respond(ws, msg, true, data);
    case "subscribe":
      stats.subscribeCalls += 1;
      for (const t of (data && data.eventTypes) || []) state.subscriptions.add(t);
      return respond(ws, msg, true, { subscribed: [...state.subscriptions] });
    case "unsubscribe":
      for (const t of (data && data.eventTypes) || []) state.subscriptions.delete(t);
      return respond(ws, msg, true, { subscribed: [...state.subscriptions] });
    case "publish": {
      let delivered = 0;
      for (const c of clients) {
        if (c.pl.subscriptions.has(data.type)) {
          send(c, data.type, data.data);
          delivered += 1;
        }
      }
      return respond(ws, msg, true, { delivered });
    }
    case "emit-to-me":
      if (data.raw !== undefined) ws.send(data.raw);
      else ws.send(JSON.stringify({ id: data.id || nextId(), type: data.type, timestamp: now(), data: data.data }));
      return respond(ws, msg, true, null);
    case "mute-pongs":
      state.muted = true;
      return respond(ws, msg, true, null);
    case "fail":
      return send(ws, "error", { code: data.code, message: data.message, timestamp: now() });
    case "reject-me":
      return respond(ws, msg, false, null, { code: "INVALID_MESSAGE_FORMAT", message: "missing field answer" });
    case "tick":
      if (!admitTick(ws, msg)) return;
      if (seenTickIds.has(msg.id)) stats.duplicateTicks += 1;
      else {
        seenTickIds.add(msg.id);
        stats.ticks.push(data && data.n);
      }
      return respond(ws, msg, true, { n: data && data.n });
    case "stats?":
      return respond(ws, msg, true, stats);
    case BENCH_EVENT:
      state.benchReceived += 1;
      return respond(ws, msg, true, null);
    case "count?":
      return respond(ws, msg, true, state.benchReceived);
    case "blast":
      respond(ws, msg, true, null);
      return blast(ws, Number(data));
    default:
      return respond(ws, msg, true, null);
  }
}

const server = http.createServer();
const wss = new WebSocketServer({ server, path: "/ws" });
wss.on("connection", (ws) => {
  const state = { authed: false, muted: false, subscriptions: new Set(), benchReceived: 0 };
  ws.pl = state;
  ws.on("message", (raw, isBinary) => {
    if (state.closing) return;
    let msg;
    try {
      msg = JSON.parse(isBinary ? raw.toString() : raw);
    } catch (_) {
      return send(ws, "error", { code: "INVALID_MESSAGE_FORMAT", message: "not JSON", timestamp: now() });
    }
    if (!state.authed) {
      if (msg.type === "auth") return onAuth(ws, state, msg);
      return send(ws, "error", { code: "AUTHENTICATION_FAILED", message: "authenticate first", timestamp: now() });
    }
    onMessage(ws, state, msg);
  });
  ws.on("close", () => clients.delete(ws));
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
