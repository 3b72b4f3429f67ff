// The official Node Socket.IO server, scripted for Pulselink's integration tests.
//
// Usage: node server.js  (env: PORT=0, PING_INTERVAL, PING_TIMEOUT, MAX_PAYLOAD,
//   RECOVERY_MS: enable connection state recovery with this window,
//   LEDGER: file where "tick" events are recorded, one line per unique idempotency key,
//   TRANSPORTS: comma-separated Engine.IO transports accepted, default "websocket,polling",
//   SUB_ACK_DELAY_MS: answer each "room:subscribe" this long after it arrived (default 0),
//   TLS_CERT, TLS_KEY: PEM files, or TLS_PFX (+ TLS_PASSPHRASE): a PKCS#12 file; when set
//   the server speaks HTTPS/WSS only,
//   REDIS_URL: join a cluster through @socket.io/redis-streams-adapter on this Redis (one node
//   of several; SIGTERM then shuts down gracefully so sessions persist for recovery),
//   NODE_NAME: this node's name, answered on "node?")
// Prints "listening <port>" on stdout once it accepts connections.
//
// Auth: a CONNECT whose auth.token is "bad", "stale" or "parity-<odd n>" is refused with
// "Authentication failed"; anything else is accepted. Namespaces "/" and "/rooms/<id>" exist.
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");
const { Server } = require("socket.io");
const { CHUNK, wsFrame, pump } = require("./frames");

const port = Number(process.env.PORT || 0);
const nodeName = process.env.NODE_NAME || "single";
const httpServer = process.env.TLS_CERT
  ? https.createServer({
      cert: fs.readFileSync(process.env.TLS_CERT),
      key: fs.readFileSync(process.env.TLS_KEY),
    })
  : process.env.TLS_PFX
    ? https.createServer({
        pfx: fs.readFileSync(process.env.TLS_PFX),
        passphrase: process.env.TLS_PASSPHRASE,
      })
    : http.createServer();
const io = new Server(httpServer, {
  pingInterval: Number(process.env.PING_INTERVAL || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT || 20000),
  maxHttpBufferSize: Number(process.env.MAX_PAYLOAD || 1e6),
  transports: (process.env.TRANSPORTS || "websocket,polling").split(","),
  // COOKIE: set a sticky-session cookie on the handshake, as a load balancer would.
  cookie: process.env.COOKIE ? { name: "stick", httpOnly: true, path: "/" } : false,
  connectionStateRecovery: process.env.RECOVERY_MS
    ? { maxDisconnectionDuration: Number(process.env.RECOVERY_MS), skipMiddlewares: true }
    : undefined,
});

// The ledger: what a server that drops repeated idempotency keys has accepted. Lines are
// "<key> <n>" for a first delivery and "dup <key> <n>" for a repeat; a room subscription is
// recorded as "room:<id> 0". It survives SIGKILL of
// this process (the kernel holds written bytes), so a restarted server still drops repeats.
const ledgerPath = process.env.LEDGER;
const seenKeys = new Set();
if (ledgerPath && fs.existsSync(ledgerPath)) {
  for (const line of fs.readFileSync(ledgerPath, "utf8").split("\n")) {
    const [key] = line.split(" ");
    if (key && key !== "dup") seenKeys.add(key);
  }
}

// Engine.IO connections this process accepted (every connection attempt that reached it),
// answered on "engine-connections?": a test counts what a client attempted meanwhile.
let engineConnections = 0;
io.engine.on("connection", () => engineConnections++);

// The last news items sent, replayed to every new connection: a server that repeats itself.
const NEWS_REPLAY = 20;

function authenticate(socket, next) {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  // "hang": a broken middleware that never answers the CONNECT.
  if (token === "hang") return;
  // "parity-<n>": refused when n is odd (half a swarm refused, for its report's test).
  const odd = typeof token === "string" && /^parity-\d*[13579]$/.test(token);
  if (token === "bad" || token === "stale" || odd) {
    const err = new Error("Authentication failed");
    err.data = { code: "AUTHENTICATION_FAILED" };
    return next(err);
  }
  next();
}

// A 116-byte event frame, pre-encoded once, for the throughput benchmark.
const BLAST_EVENT = '42["metric:recorded",{"sessionId":"s_42","metric":"heart_rate","value":142,"unit":"bpm","ts":1732000000,"src":"hr"}]';

// The TCP socket under a Socket.IO socket's WebSocket transport (null over polling), for
// handlers that write pre-encoded frames themselves.
function rawSocket(socket) {
  const ws = socket.conn.transport.socket;
  return ws ? ws._socket : null;
}

// Presence, as the seed platforms keep it: a user (auth.userId) is online in a room while one
// of its sockets is subscribed there; the others in the room hear presence:user_online and
// presence:user_offline, and presence:get_online answers {users: [{userId}]}.
const presence = new Map(); // roomId -> Map(userId -> sockets)
function presenceJoin(socket, roomId) {
  const user = socket.handshake.auth && socket.handshake.auth.userId;
  if (!user) return;
  socket.data.rooms = socket.data.rooms || new Set();
  if (socket.data.rooms.has(roomId)) return;
  socket.data.rooms.add(roomId);
  const users = presence.get(roomId) || new Map();
  presence.set(roomId, users);
  const n = users.get(user) || 0;
  users.set(user, n + 1);
  if (n === 0) socket.to(roomId).emit("presence:user_online", { roomId, userId: user });
}
function presenceLeave(socket, roomId) {
  const user = socket.handshake.auth && socket.handshake.auth.userId;
  if (!user || !socket.data.rooms || !socket.data.rooms.delete(roomId)) return;
  const users = presence.get(roomId);
  const n = users.get(user) - 1;
  if (n > 0) return users.set(user, n);
  users.delete(user);
  io.to(roomId).emit("presence:user_offline", { roomId, userId: user });
}

// What this node sent each recoverable session (by pid) of the payloads that carry a number
// `n` (the failover tests' room events): broadcast to its socket, or replayed to it on
// recovery. "sent?" answers the asking socket's, so a test can tell an event the client lost
// from one the cluster never sent it.
const sentTo = new Map();
function noteSent(pid, payload) {
  if (!pid || !payload || typeof payload.n !== "number") return;
  if (!sentTo.has(pid)) sentTo.set(pid, []);
  sentTo.get(pid).push(payload.n);
}

function handlers(socket) {
  socket.onAnyOutgoing((event, payload) => noteSent(socket.pid, payload));
  socket.on("sent?", (...args) => args[args.length - 1](sentTo.get(socket.pid) || []));
  socket.on("presence:get_online", (p, ack) => {
    const users = [...(presence.get(p && p.roomId) || new Map()).keys()].map((userId) => ({ userId }));
    if (typeof ack === "function") ack({ users });
  });
  socket.on("disconnect", () => {
    for (const roomId of [...(socket.data.rooms || [])]) presenceLeave(socket, roomId);
  });
  const ns = socket.nsp.name;
  socket.emit("welcome", { namespace: ns, auth: socket.handshake.auth, recovered: socket.recovered });
  socket.on("node?", (...args) => args[args.length - 1](nodeName));
  // publish {roomId, event, count, rate}: `count` room events {n, node} at `rate` per second
  // from this node (across the cluster through the adapter, stored for recovery); acknowledged
  // at once, then "published" {count} to the caller when the last one went out.
  socket.on("publish", ({ roomId, event, count, rate }, ack) => {
    if (typeof ack === "function") ack();
    const start = Date.now();
    let n = 0;
    const timer = setInterval(() => {
      const due = Math.min(count, Math.floor(((Date.now() - start) * rate) / 1000) + 1);
      for (; n < due; ) io.of(ns).to(roomId).emit(event, { n: ++n, node: nodeName });
      if (n >= count) {
        clearInterval(timer);
        socket.emit("published", { count });
      }
    }, 2);
  });
  // What credentials reached the server: the auth object, the URL query and the
  // Authorization header of the handshake (for the secrets test: sent, yet never logged).
  socket.on("handshake?", (ack) =>
    ack({
      auth: socket.handshake.auth,
      query: socket.handshake.query,
      authorization: socket.handshake.headers.authorization || null,
      transport: socket.conn.transport.name,
    }),
  );
  socket.on("engine-connections?", (ack) => ack(engineConnections));
  // Which Engine.IO transport carries this session now; "upgraded" when it moves to WebSocket.
  socket.on("transport?", (ack) => ack(socket.conn.transport.name));
  socket.conn.once("upgrade", (t) => socket.emit("upgraded", t.name));

  // Echo every argument back, binary attachments included.
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    socket.emit("echo", ...args);
    if (ack) ack(...args);
  });

  // socket.io-client style ack: the server answers the client's callback.
  socket.on("quiz:answer_submit", (answer, ack) => {
    if (typeof ack === "function") ack({ ok: true, answer, namespace: ns });
  });

  // The server asks the client for an ack, then reports what the client answered.
  socket.on("ask", (question) => {
    socket.emit("server:question", question, (...reply) => {
      socket.emit("server:got_ack", ...reply);
    });
  });

  // "silent": recorded (its idempotency key) and never acknowledged, for resend and give-up
  // tests; "silent?" answers the keys received, in order, resends included.
  const silent = [];
  socket.on("silent", (p) => silent.push(p && p.idempotencyKey));
  socket.on("silent?", (ack) => ack(silent));

  socket.on("emit-to-me", ({ event, args }) => socket.emit(event, ...args));
  // Broadcasts are what connection state recovery stores and replays.
  socket.on("broadcast", ({ event, args }, ack) => {
    io.of(ns).emit(event, ...args);
    if (typeof ack === "function") ack();
  });

  // Every event this connection received, in order, for "what came first" assertions; and a
  // timeline of [what, ms] on this process's monotonic clock: "in:<event>" when an event
  // arrived, "acked:<event>" when its acknowledgement was sent.
  const log = [];
  const timeline = [];
  const now = () => Number(process.hrtime.bigint() / 1000n) / 1000;
  socket.onAny((event) => {
    log.push(event);
    timeline.push([`in:${event}`, now()]);
  });
  socket.on("log?", (ack) => ack(log));
  socket.on("timeline?", (ack) => ack(timeline));

  const subAckDelay = Number(process.env.SUB_ACK_DELAY_MS || 0);
  socket.on("room:subscribe", (p, ack) => {
    socket.join(p.roomId);
    presenceJoin(socket, p.roomId);
    if (ledgerPath) fs.appendFileSync(ledgerPath, `room:${p.roomId} 0\n`);
    const answer = () => {
      if (typeof ack !== "function") return;
      timeline.push(["acked:room:subscribe", now()]);
      ack({ ok: true, roomId: p.roomId });
    };
    if (subAckDelay > 0) setTimeout(answer, subAckDelay);
    else answer();
  });
  socket.on("room:unsubscribe", (p, ack) => {
    socket.leave(p.roomId);
    presenceLeave(socket, p.roomId);
    if (typeof ack === "function") ack({ ok: true });
  });

  // Durable delivery: record each key once, ack after it is written. Ticks on this
  // connection are also counted, with how many came out of `n` order ("ticks?" answers).
  let ticks = 0;
  let outOfOrder = 0;
  let lastN = -Infinity;
  // "stall": holds this process's event loop for `ms`, so that what the client sends
  // meanwhile is read in one chunk afterwards (tests of what a server reading late sees).
  socket.on("stall", (ms) => {
    const until = Date.now() + Math.min(Number(ms) || 0, 2000);
    while (Date.now() < until) {}
  });
  socket.on("ticks?", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack({ ticks, outOfOrder });
  });
  socket.on("tick", (p, ack) => {
    p = p || {};
    ticks++;
    if (typeof p.n === "number") {
      if (p.n <= lastN) outOfOrder++;
      lastN = p.n;
    }
    const key = p.idempotencyKey;
    const record = (dup) => {
      fs.appendFileSync(ledgerPath, `${dup ? "dup " : ""}${key} ${p.n}\n`);
      // "holdAckOnce": record the first delivery but never acknowledge it, so the client
      // keeps the entry and must send it again (same key) after a restart.
      if (p.holdAckOnce && !dup) return;
      if (typeof ack === "function") ack();
    };
    if (!ledgerPath) {
      if (typeof ack === "function") ack();
    } else if (redis) {
      // A cluster drops repeats where every node sees them: one key per tick in Redis.
      redis.set(`tick:${key}`, "1", { NX: true }).then((fresh) => record(fresh === null));
    } else {
      const dup = seenKeys.has(key);
      seenKeys.add(key);
      record(dup);
    }
  });

  // Inbound duplicates: the same news ids on every connection.
  if (socket.handshake.auth && socket.handshake.auth.news) {
    for (let id = 1; id <= NEWS_REPLAY; id++) socket.emit("news", { id, title: `item ${id}` });
  }
  // The seed platforms' application signals (pulselink::ServerSignals::seed_platforms):
  // an app heartbeat ("ping" answered by "pong", until "mute-pong"), "error" events with a
  // code on request, a per-connection limit on "client:tick" that refuses what exceeds it
  // with RATE_LIMIT_EXCEEDED and announces its quota each period, and an adaptive rate.
  let pongs = true;
  let pings = 0;
  socket.on("ping", () => {
    pings++;
    if (pongs) socket.emit("pong");
  });
  // Queries take any arguments: the acknowledgement is the last one.
  const last = (args) => args[args.length - 1];
  socket.on("mute-pong", (...args) => {
    pongs = false;
    last(args)();
  });
  socket.on("pings?", (...args) => last(args)(pings));
  socket.on("error-me", (code, ...rest) => {
    socket.emit("error", { code, message: `test ${code}`, details: {} });
    const ack = rest.pop();
    if (typeof ack === "function") ack();
  });
  // quota-me {limit, window, announce}: at most `limit` client:tick per fixed window of
  // `window` ms, counted by this process's clock; with `announce`, the quota on "limits" at
  // the start and at each new period.
  let quota = null;
  let quotaTimer = null;
  const roll = () => {
    const now = Date.now();
    while (now >= quota.end) {
      quota.end += quota.window;
      quota.count = 0;
    }
  };
  const tell = () => {
    roll();
    socket.emit("limits", {
      quota: { "messages-sent": quota.count, "messages-limit": quota.limit, "reset-time": quota.end },
    });
  };
  socket.on("quota-me", ({ limit, window, announce }, ack) => {
    quota = { limit, window, end: Date.now() + window, count: 0, exceeded: 0, seen: [] };
    if (announce) {
      tell();
      const next = () => {
        quotaTimer = setTimeout(() => {
          tell();
          next();
        }, Math.max(1, quota.end - Date.now() + 1));
      };
      next();
    }
    ack();
  });
  socket.on("client:tick", (p, ack) => {
    roll();
    if (quota.count >= quota.limit) {
      quota.exceeded++;
      socket.emit("error", {
        code: "RATE_LIMIT_EXCEEDED",
        message: `${quota.limit} per ${quota.window} ms`,
        details: { resetTime: quota.end },
      });
      return;
    }
    quota.count++;
    quota.seen.push(p && p.n);
    if (typeof ack === "function") ack();
  });
  socket.on("limited?", (...args) =>
    last(args)({ seen: quota ? quota.seen : [], exceeded: quota ? quota.exceeded : 0 }),
  );
  socket.on("disconnect", () => clearTimeout(quotaTimer));
  // adapt-me R: announce an adaptive limit of R requests per second; "paced" events record
  // their arrival times, "paced?" answers them.
  const paced = [];
  socket.on("adapt-me", (rate, ack) => {
    socket.emit("limits", { adaptive: { "requests-per-second": rate } });
    ack();
  });
  socket.on("paced", () => paced.push(Date.now()));
  socket.on("paced?", (...args) => last(args)(paced));
  socket.on("kick-me", () => socket.disconnect(true));
  // An event nested `depth` arrays deep, then a marker: hostile JSON for the client's parser.
  socket.on("nest-me", (depth) => {
    let v = 1;
    for (let i = 0; i < depth; i++) v = [v];
    socket.emit("deep", v);
    socket.emit("after-deep", 1);
  });
  // The seed's rate-limit signal, with the time sending may resume.
  socket.on("limit-me", (ms) => {
    const resetTime = new Date(Date.now() + ms).toISOString();
    socket.emit("rate_limit_exceeded", { limit: 10, window: 1000, resetTime });
  });
  socket.on("expire-me", () => socket.emit("token:expired", { reason: "test" }));

  // Count events, for client->server throughput; answers with the count on "count?".
  let received = 0;
  socket.on("metric:recorded", () => { received++; });
  socket.on("count?", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(received);
  });

  // Emits `count` events through socket.io's normal path (any transport), a chunk per tick so
  // the transport can drain: the benchmark's polling-versus-WebSocket comparison.
  socket.on("emit-many", (count, ack) => {
    if (typeof ack === "function") ack();
    const payload = { sessionId: "s_42", metric: "heart_rate", value: 142, unit: "bpm", ts: 1732000000, src: "hr" };
    let left = count;
    const pump = () => {
      for (let i = 0; i < 1000 && left > 0; i++, left--) socket.emit("metric:recorded", payload);
      if (left > 0) setImmediate(pump);
    };
    pump();
  });

  // Writes `count` pre-encoded event frames onto the WebSocket one at a time, `gapMicros`
  // apart (a busy wait between writes, 20 per tick so the event loop still runs): a steady
  // stream the server pushes, each frame its own segment, slower than any reader but with
  // gaps far shorter than a wake-up — a firehose as read pacing sees it. (socket.emit would
  // not do: engine.io queues the emits made while a write is under way and sends them as
  // one burst.)
  socket.on("trickle", (count, gapMicros, ack) => {
    if (typeof ack !== "function") ack = () => {};
    const raw = rawSocket(socket);
    if (!raw) return ack({ error: "not a websocket" });
    const one = wsFrame(BLAST_EVENT);
    const gap = BigInt(gapMicros) * 1000n;
    let left = count;
    const pump = () => {
      for (let i = 0; i < 20 && left > 0; i++, left--) {
        const until = process.hrtime.bigint() + gap;
        raw.write(one);
        while (process.hrtime.bigint() < until);
      }
      if (left > 0) setImmediate(pump);
    };
    ack({});
    pump();
  });

  // Acknowledges after `ms` milliseconds.
  socket.on("ack-later", (ms, ack) => setTimeout(() => ack("later"), ms));

  // Writes `count` pre-encoded event frames straight onto the WebSocket, so the benchmark
  // measures the client, not the server's per-emit cost.
  socket.on("blast", (count, ack) => {
    if (typeof ack !== "function") ack = () => {};
    const raw = rawSocket(socket);
    if (!raw) return ack({ error: "not a websocket" });
    const one = wsFrame(BLAST_EVENT);
    // Every frame is the same, so one chunk serves every write (a queued one is never changed).
    const chunk = Buffer.concat(Array(Math.min(count, CHUNK)).fill(one));
    ack({ bytes: one.length, frameBytes: BLAST_EVENT.length });
    pump(raw, count, (_, n) => chunk.subarray(0, n * one.length));
  });
}

// What the HTTP requests of established sessions carried (polling GETs/POSTs and the
// upgrade), for the sticky-session and header pass-through tests.
const seen = { sessionRequests: 0, withCookie: 0, withApiKey: 0 };
httpServer.on("request", (req) => {
  if (!req.url.includes("sid=")) return;
  seen.sessionRequests++;
  if ((req.headers.cookie || "").includes("stick=")) seen.withCookie++;
  if (req.headers["x-api-key"] === "k1") seen.withApiKey++;
});
io.on("connection", (socket) => socket.on("requests?", (ack) => ack(seen)));

io.use(authenticate);
io.on("connection", handlers);
const rooms = io.of(/^\/rooms\/[\w-]+$/);
rooms.use(authenticate);
rooms.on("connection", handlers);

let redis = null;
async function main() {
  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-streams-adapter");
    redis = createClient({ url: process.env.REDIS_URL });
    // The client reconnects by itself; an unhandled "error" would end the node instead.
    redis.on("error", (e) => console.error(`redis: ${e.message}`));
    await redis.connect();
    io.adapter(createAdapter(redis));
    // Replays on recovery count as sent to the session (see "sent?").
    const adapter = io.of("/").adapter;
    const restore = adapter.restoreSession.bind(adapter);
    adapter.restoreSession = async (pid, offset) => {
      const session = await restore(pid, offset);
      for (const data of session.missedPackets) noteSent(pid, data[1]);
      return session;
    };
  }
  httpServer.listen(port, "127.0.0.1", () => {
    process.stdout.write(`listening ${httpServer.address().port}\n`);
  });
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// SIGTERM: a cluster node shuts down as a deploy does: every socket is closed with "server
// shutting down" (which persists its session in Redis for recovery on another node), the
// writes reach Redis, then the process exits. A lone server just exits.
process.on("SIGTERM", async () => {
  if (!redis) process.exit(0);
  // However the shutdown goes, the node is gone within 5 s.
  setTimeout(() => process.exit(0), 5000).unref();
  await io.close();
  await redis.quit().catch(() => {});
  process.exit(0);
});
