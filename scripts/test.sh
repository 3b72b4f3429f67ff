#!/usr/bin/env bash
# Runs every check and test of Pulselink. Installs what it needs (npm packages for the real
# Socket.IO peers) and needs only cargo, node/npm and python3 with pytest on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

step() { printf '\n==> %s\n' "$*"; }

step "npm ci (official socket.io server and client used as test peers)"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

if ! python3 -c 'import pytest' 2>/dev/null; then
  step "pip install pytest"
  python3 -m pip install --quiet pytest
fi

step "rustfmt"
# rustfmt.toml's import grouping needs nightly rustfmt; stable checks everything else.
if cargo +nightly fmt --version >/dev/null 2>&1; then
  cargo +nightly fmt --all --check
else
  # Stable rustfmt skips the nightly-only options and says so on stderr; keep other errors.
  cargo fmt --all --check 2> >(grep -v 'only available in nightly' >&2)
fi

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit tests, integration tests against the Node server, CLI tests)"
cargo test --workspace --locked

step "UniFFI bindings for Python, Kotlin and Swift"
bash platforms/generate.sh

step "pytest (Python binding smoke test against the Node server)"
PULSELINK_PY_BINDINGS="$root/platforms/python/generated" python3 -m pytest -q platforms/python/tests

step "all checks passed"
