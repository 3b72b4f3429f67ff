#!/usr/bin/env bash
# Fuzzes Pulselink's codecs with libFuzzer (cargo-fuzz, nightly Rust): the Engine.IO, Socket.IO
# and JSON-envelope decoders and the long-polling payload parser. Prints executions and
# crashes per target; exits non-zero on any crash (the input is kept in fuzz/artifacts/).
#
#   scripts/fuzz.sh          # 20 s per target (scripts/test.sh runs 15 s)
#   scripts/fuzz.sh 3600     # an hour per target
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzzing needs nightly Rust (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}
# Built first, on its own: a build failure is reported as one, not as a crash.
if ! cargo +nightly fuzz build --sanitizer none --fuzz-dir fuzz; then
  echo "FUZZ|build failed: the fuzz targets do not compile (see above)" >&2
  exit 2
fi
status=0
for target in engineio socketio envelope polling; do
  corpus="$CARGO_TARGET_DIR/corpus/$target"   # grows across runs, never committed
  mkdir -p "$corpus"
  log=$(mktemp)
  # No sanitizer: the code under test is safe Rust (what we hunt is panics, overflows and
  # runaway allocation), and ASan-instrumenting SQLite and ring only slows the build.
  if cargo +nightly fuzz run --sanitizer none --fuzz-dir fuzz "$target" "$corpus" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  elif grep -q 'Test unit written to\|deadly signal\|panicked at' "$log"; then
    crashes=1
    status=1
    tail -40 "$log" >&2
  else
    echo "FUZZ|$target|the fuzzer did not run (not a crash):" >&2
    tail -40 "$log" >&2
    exit 2
  fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "FUZZ|$target|${secs} s|$runs executions|$crashes crashes"
  rm -f "$log"
done
exit $status
