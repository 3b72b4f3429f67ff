// socket.io-client (npm) as a benchmark peer; same modes and output as pulselink-bench.
// Usage: node sioclient.js <in|out|ack|reconnect|offline-rss|radio-idle|radio-low> <url> <n>
"use strict";
const { io } = require("../../tests/node/node_modules/socket.io-client");

const { mode, url, n, EVENT, sample, peakRssKib, now, reporter } = require("./peer");
const report = reporter("socket.io-client");

// offline-rss never connects: emits pile up in socket.io-client's in-memory send buffer.
const socket = mode === "offline-rss"
  ? io(url, { autoConnect: false })
  : io(url, {
    transports: mode === "in-emit-polling" ? ["polling"] : ["websocket"],
    reconnectionDelayMax: 5000,
  });

if (mode === "in-emit" || mode === "in-emit-polling") {
  let seen = 0;
  let started;
  socket.once("connect", () => {
    started = now();
    socket.emit("emit-many", n, () => {});
  });
  socket.on(EVENT, () => {
    if (++seen === n) {
      const secs = now() - started;
      report({ events: n, secs, events_per_sec: n / secs });
      process.exit(0);
    }
  });
} else if (mode === "in") {
  let seen = 0;
  let started;
  socket.once("connect", () => {
    started = now();
    socket.emit("blast", n, () => {});
  });
  socket.on(EVENT, () => {
    if (++seen === n) {
      const secs = now() - started;
      report({ events: n, secs, events_per_sec: n / secs });
      process.exit(0);
    }
  });
} else if (mode === "out") {
  socket.once("connect", async () => {
    const started = now();
    // Yield to the event loop now and then so the socket can drain, as an app would.
    for (let i = 0; i < n; i++) {
      socket.emit(EVENT, sample);
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    const poll = () =>
      socket.emit("count?", (count) => {
        if (count >= n) {
          const secs = now() - started;
          report({ events: n, secs, events_per_sec: n / secs });
          process.exit(0);
        } else setTimeout(poll, 5);
      });
    poll();
  });
} else if (mode === "ack") {
  socket.once("connect", async () => {
    const us = [];
    for (let i = 0; i < n + Math.floor(n / 10); i++) {
      const t = now();
      await socket.emitWithAck("quiz:answer_submit", i);
      if (i >= Math.floor(n / 10)) us.push((now() - t) * 1e6);
    }
    us.sort((a, b) => a - b);
    const p = (q) => us[Math.round((us.length - 1) * q)];
    report({ p50_us: p(0.5), p99_us: p(0.99), samples: us.length });
    process.exit(0);
  });
} else if (mode === "offline-rss") {
  for (let i = 0; i < 1000; i++) socket.emit(EVENT, sample);
  const before = peakRssKib();
  const started = now();
  for (let i = 0; i < n; i++) socket.emit(EVENT, { ...sample, i });
  const secs = now() - started;
  report({ events: n, secs, rss_before_kib: before, rss_growth_kib: peakRssKib() - before, buffered: socket.sendBuffer.length });
  process.exit(0);
} else if (mode === "radio-idle" || mode === "radio-low") {
  // Radio wake-ups over n seconds: every packet either way, counted as Pulselink counts them
  // (a packet after at least TAIL of silence wakes the radio; each keeps it awake TAIL).
  const TAIL = 2;
  let wakeups = 0, active = 0, last = -Infinity, awakeUntil = -Infinity;
  const traffic = () => {
    const t = now();
    if (t >= last + TAIL) wakeups++;
    active += Math.max(0, t + TAIL - Math.max(t, awakeUntil));
    awakeUntil = Math.max(awakeUntil, t + TAIL);
    last = t;
  };
  socket.io.on("open", () => {
    traffic();
    socket.io.engine.on("packet", traffic);
    socket.io.engine.on("packetCreate", traffic);
  });
  socket.on("connect", () => {
    const started = now();
    const timer = mode === "radio-low"
      ? setInterval(() => socket.emit("tick", { n: 0, low: true }), 1000)
      : null;
    setTimeout(() => {
      if (timer) clearInterval(timer);
      const secs = now() - started;
      active -= Math.max(0, awakeUntil - now());
      report({ secs, wakeups, wakeups_per_hour: wakeups * 3600 / secs, active_fraction: active / secs });
      process.exit(0);
    }, n * 1000);
  });
} else if (mode === "reconnect") {
  socket.on("connect", () => {
    console.log(`connected ${(performance.timeOrigin + performance.now()).toFixed(3)}`);
  });
  process.stdin.on("end", () => {
    report({});
    process.exit(0);
  });
  process.stdin.resume();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
