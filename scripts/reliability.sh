#!/usr/bin/env bash
# Runs the reliability suite (tests/tests/reliability.rs: the official Node Socket.IO server
# behind the fault proxy; lifecycle.rs: background, suspension, interface changes, the Low
# lane; secrets.rs: credentials in logs; tls.rs: certificate trust and
# pinning; soak.rs; cluster.rs: a Redis-backed Socket.IO cluster behind nginx; the SIGKILL storms of durability.rs) and the codec fuzzers, and writes
# their figures to tests/RELIABILITY.md. Every criterion in the report is printed by the test
# from the same constant it asserts.
#
#   scripts/reliability.sh           # the CI-sized run (a few minutes of tests, 1 min of fuzzing)
#   scripts/reliability.sh --long    # 5 min on the slow link, 500 half-open clients, a 10 min
#                                    # soak, 200 SIGKILLs, 10 min of fuzzing per codec
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--long" ]; then
  export PULSELINK_BAD_LINK_SECS=${PULSELINK_BAD_LINK_SECS:-300}
  export PULSELINK_HALF_OPEN_CLIENTS=${PULSELINK_HALF_OPEN_CLIENTS:-500}
  export PULSELINK_SOAK_SECS=${PULSELINK_SOAK_SECS:-600}
  export PULSELINK_SIGKILL_SEEDS=${PULSELINK_SIGKILL_SEEDS:-200}
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "reliability.sh: the fuzzers need a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked -p pulselink-tests --test reliability --test lifecycle --test secrets --test tls --test soak --test proxy --test signals --test presence --test cluster -- --nocapture --test-threads 1 | tee "$log"
cargo test --locked -p pulselink-tests --test durability every_emit_that_returned_ok_survives_sigkill_exactly_once -- --nocapture --exact | tee -a "$log"
cargo test --locked -p pulselink-tests --test durability every_unacknowledged_emit_that_returned_ok_survives_sigkill_exactly_once -- --nocapture --exact | tee -a "$log"
cargo test --locked -p pulselink-tests --test durability new_emits_go_live_once_the_backlog_is_replayed_and_order_holds -- --nocapture --exact | tee -a "$log"
fuzz_secs=15
[ "${1:-}" = "--long" ] && fuzz_secs=600
./scripts/fuzz.sh "$fuzz_secs" | tee -a "$log"
{
  echo "# Reliability report"
  echo
  echo "Produced by \`scripts/reliability.sh${1:+ $1}\` on $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -sm));"
  echo "every row is a test in \`tests/tests/reliability.rs\`, \`lifecycle.rs\`, \`secrets.rs\`, \`tls.rs\`, \`soak.rs\`, \`proxy.rs\`, \`signals.rs\`, \`presence.rs\`, \`cluster.rs\` or \`durability.rs\` that asserts"
  echo "its criterion (the criterion text is printed from the constant the test asserts), against the"
  echo "official Node socket.io server with \`tests/src/proxy.rs\` injecting the faults (and tinyproxy and Dante as the proxies of \`proxy.rs\`; three nodes with the Redis streams adapter behind nginx in \`cluster.rs\`). Commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core tests ':!tests/RELIABILITY.md' || echo ' plus uncommitted changes')."
  echo
  echo "| test | criterion | latest figure |"
  echo "|---|---|---|"
  grep -o 'RELIABILITY|.*' "$log" | awk -F'|' '{ print "| " $2 " | " $3 " | " $4 " |" }'
  echo
  echo "## Fuzzing"
  echo
  echo "libFuzzer through cargo-fuzz (\`scripts/fuzz.sh SECONDS\`, targets in \`fuzz/fuzz_targets/\`): any input"
  echo "decodes or fails with an error, never a panic, and every target asserts the round trip: what"
  echo "decodes re-encodes, and the re-encoding decodes to the same value."
  echo
  echo "| target | time | executions | crashes |"
  echo "|---|---|---|---|"
  grep -o 'FUZZ|.*' "$log" | awk -F'|' '{ print "| " $2 " | " $3 " | " $4 " | " $5 " |" }'
  cat <<'NOTES'

Also proven elsewhere in the suite (run by `scripts/test.sh`):

- dead link by heartbeat with the server frozen (SIGSTOP): `tests/tests/socketio.rs`
  `detects_a_silent_server_by_heartbeat`; envelope protocol (client pings, pong muted):
  `tests/tests/envelope.rs`;
- WebSocket black-holed by a proxy → polling within the connect timeout, and a black-holed
  upgrade probe leaving polling working: `tests/tests/polling.rs`;
- terminal auth failures stop retrying (`State::Unauthorized`): `tests/tests/socketio.rs`,
  `tests/tests/envelope.rs`;
- a full disk (a 1 MiB tmpfs under the store's WAL) fails `emit` with `DiskFull`, loses
  nothing stored and recovers when space returns; resend after `ack_timeout`, give-up after
  `max_sends` and TTL expiry against a server that never acks: `tests/tests/durability.rs`;
- oversized inbound messages refused before they are buffered: `tests/tests/socketio.rs`;
- an encrypted outbox leaves no readable payload in the database or its WAL, refuses to
  open without its key or with another, then delivers everything: `tests/tests/durability.rs`
  `an_encrypted_outbox_keeps_health_data_unreadable_and_delivers_it`;
- JSON nested 1,000 deep is dropped and counted (`invalid_dropped`), the connection kept:
  `tests/tests/socketio.rs`;
- a phone that slept (monotonic clock stood still, wall clock moved) sees its link stale:
  `core/src/engine/heartbeat.rs`.

Not covered: the platform trust stores (the Android and iOS system CAs): Pulselink trusts the
webpki roots plus the CAs an app passes.
NOTES
} > tests/RELIABILITY.md
echo "wrote tests/RELIABILITY.md"
