// Pre-encoded WebSocket frames for the test servers' benchmark hooks: written straight onto
// the TCP socket, so a benchmark measures the client rather than the server's cost per message.
"use strict";

/** Frames written per chunk. */
const CHUNK = 4096;

/** An unmasked text frame (server to client) carrying `text`, up to 64 KiB. */
function wsFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  if (n > 0xffff) throw new Error("benchmark frame must stay under 64 KiB");
  const head = n < 126 ? [0x81, n] : [0x81, 126, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from(head), payload]);
}

/**
 * Writes `count` frames onto `raw`, `CHUNK` at a time, `chunk(first, n)` giving the bytes of
 * frames `first` to `first + n`; waits for the socket to drain whenever a write fills it.
 */
function pump(raw, count, chunk) {
  let sent = 0;
  const next = () => {
    while (sent < count) {
      const n = Math.min(CHUNK, count - sent);
      const ok = raw.write(chunk(sent, n));
      sent += n;
      if (!ok) return raw.once("drain", next);
    }
  };
  next();
}

module.exports = { CHUNK, wsFrame, pump };
