// The floor under any ack latency: a 1-byte TCP ping-pong between two Node processes on
// loopback (Nagle off). Prints {"p50_us","p99_us","samples"} like the benchmark clients.
"use strict";
const net = require("net");
const { spawn } = require("child_process");
const n = Number(process.argv[2] || 3000);

if (process.argv[3] === "client") {
  const c = net.connect(Number(process.argv[4]), "127.0.0.1");
  c.setNoDelay(true);
  const us = [];
  let t;
  c.on("connect", () => { t = process.hrtime.bigint(); c.write("x"); });
  c.on("data", () => {
    us.push(Number(process.hrtime.bigint() - t) / 1000);
    if (us.length < n) { t = process.hrtime.bigint(); c.write("x"); return; }
    us.sort((a, b) => a - b);
    const p = (q) => us[Math.round((us.length - 1) * q)];
    console.log(JSON.stringify({ mode: "ack", client: "tcp-floor", p50_us: p(0.5), p99_us: p(0.99), samples: n }));
    process.exit(0);
  });
} else {
  const srv = net.createServer((s) => { s.setNoDelay(true); s.on("data", (d) => s.write(d)); });
  srv.listen(0, "127.0.0.1", () => {
    const child = spawn(process.execPath, [__filename, String(n), "client", String(srv.address().port)], { stdio: "inherit" });
    child.on("exit", (code) => process.exit(code));
  });
}
