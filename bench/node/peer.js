// What the Node benchmark peers share: their arguments, the benchmark's event and payload
// (those of pulselink-bench), the clock and the one JSON line each prints.
"use strict";

const [mode, url, nArg] = process.argv.slice(2);

/** Peak resident set size of this process, KiB. */
function peakRssKib() {
  const status = require("fs").readFileSync("/proc/self/status", "utf8");
  const m = status.match(/VmHWM:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

module.exports = {
  mode,
  url,
  n: Number(nArg),
  EVENT: "metric:recorded",
  sample: { sessionId: "s_42", metric: "heart_rate", value: 142, unit: "bpm", ts: 1732000000, src: "hr" },
  peakRssKib,
  /** Seconds, monotonic. */
  now: () => Number(process.hrtime.bigint()) / 1e9,
  /** A reporter printing `client`'s result line, as pulselink-bench prints its own. */
  reporter: (client) => (fields) =>
    console.log(JSON.stringify({ mode, client, peak_rss_kib: peakRssKib(), ...fields })),
};
