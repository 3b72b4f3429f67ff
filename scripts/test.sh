#!/usr/bin/env bash
# Runs every check and test of Pulselink. Installs what it needs (npm packages for the real
# Socket.IO peers, a Python virtualenv with maturin/pytest/mypy, Maven dependencies) and needs
# only cargo, node/npm, python3 and a JDK 17 with Maven on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

step() { printf '\n==> %s\n' "$*"; }

step "npm ci (official socket.io server and client used as test peers)"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

step "rustfmt"
# rustfmt.toml's import grouping needs nightly rustfmt; stable checks everything else.
if cargo +nightly fmt --version >/dev/null 2>&1; then
  cargo +nightly fmt --all --check
else
  # Stable rustfmt skips the nightly-only options and says so on stderr; keep other errors.
  cargo fmt --all --check 2> >(grep -v 'only available in nightly' >&2)
fi

step "module graph: every dependency between modules runs one way (scripts/modules.py)"
python3 scripts/modules.py

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit tests, integration tests against the Node server, CLI tests)"
cargo test --workspace --locked

step "Python: wheel (maturin), type check (mypy --strict), pytest against the Node server"
venv="$target/py-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet maturin==1.16.0 pytest==9.2.0 mypy==2.4.1 trustme==1.2.1
rm -rf "$target/wheels"
(cd platforms/python && "$venv/bin/maturin" build --release --quiet --out "$target/wheels")
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$target"/wheels/pulselink-*.whl
(cd platforms/python && "$venv/bin/python" -m mypy --strict python/pulselink tests)
"$venv/bin/python" -m pytest -q -p no:cacheprovider platforms/python/tests

step "UniFFI bindings for Kotlin and Swift"
bash platforms/generate.sh

step "Kotlin: compile the generated bindings and the coroutine wrapper, JUnit against the Node server"
# Maven downloads its plugins and dependencies on the first run (into ~/.m2).
mvn -B -q -f platforms/kotlin/pom.xml test -Dpulselink.lib.dir="$target/debug"
grep -h "Tests run" platforms/kotlin/target/surefire-reports/*.txt

step "Swift: the generated bindings declare everything the Swift wrapper calls (no Swift compiler here)"
python3 platforms/swift/check_api.py platforms/swift/generated/Pulselink.swift

step "Fuzzing: each codec under libFuzzer for 15 s (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 3600)"
if cargo +nightly --version >/dev/null 2>&1; then
  ./scripts/fuzz.sh 15
else
  echo "skipped: fuzzing needs a nightly toolchain (rustup toolchain install nightly)"
fi

step "all checks passed"
