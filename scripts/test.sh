#!/usr/bin/env bash
# Runs every check and test of Pulselink. Installs what it needs (npm packages for the real
# Socket.IO peers, a Python virtualenv with maturin/pytest/mypy, Maven dependencies, the
# tinyproxy , dante-server, redis-server and nginx Debian packages when run as root) and needs only cargo (stable
# and nightly), node/npm, python3, util-linux's unshare and a JDK 17 with Maven on the
# machine. Ends with a summary of every step; no step is ever skipped: a missing
# tool is a failure that says how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}

passed=()
current=""
summary() {
  local status=$?
  printf '\n==> summary\n'
  for s in "${passed[@]}"; do printf '  passed  %s\n' "$s"; done
  if [ -n "$current" ]; then
    printf '  FAILED  %s\n' "$current"
    printf '  (steps after it did not run)\n'
  fi
  if [ "$status" -eq 0 ] && [ -z "$current" ]; then
    printf 'all %d steps passed\n' "${#passed[@]}"
  fi
}
trap summary EXIT

# step NAME: the commands that follow, up to the next step, belong to NAME.
step() {
  if [ -n "$current" ]; then passed+=("$current"); fi
  current=$*
  printf '\n==> %s\n' "$current"
}
done_steps() {
  if [ -n "$current" ]; then passed+=("$current"); fi
  current=""
}

step "tools: nightly Rust (rustfmt options, fuzzing) and unshare (disk-full test)"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "nightly Rust is needed: rustup toolchain install nightly --component rustfmt" >&2
  exit 1
fi
if ! unshare --map-root-user --mount true 2>/dev/null; then
  echo "unshare --map-root-user --mount failed: install util-linux and allow user namespaces" >&2
  exit 1
fi

step "Debian packages for the proxy and cluster tests: tinyproxy (HTTP proxy), Dante (SOCKS5), redis-server and nginx (the Socket.IO cluster), and the SOCKS5 test user"
if ! command -v tinyproxy >/dev/null || ! command -v danted >/dev/null \
  || ! command -v redis-server >/dev/null || ! command -v nginx >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tinyproxy, danted, redis-server and nginx are needed: sudo apt-get install tinyproxy dante-server redis-server nginx" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    tinyproxy dante-server redis-server nginx >/dev/null
fi
# Dante checks SOCKS5 user/password against the system's users: a user with no shell and no
# home, password as in tests/src/proxies.rs (SOCKS_CREDENTIALS).
if ! id pl-proxy-test >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "the SOCKS5 test user is needed: sudo useradd -M -s /usr/sbin/nologin pl-proxy-test && echo 'pl-proxy-test:s0cks-s3cret' | sudo chpasswd" >&2
    exit 1
  fi
  useradd -M -s /usr/sbin/nologin pl-proxy-test
fi
if [ "$(id -u)" -eq 0 ]; then
  echo 'pl-proxy-test:s0cks-s3cret' | chpasswd
fi

step "npm ci (official socket.io server and client used as test peers)"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

step "rustfmt (nightly, for rustfmt.toml's import grouping)"
cargo +nightly fmt --all --check

step "module graph: every dependency between modules runs one way (scripts/modules.py)"
python3 scripts/modules.py

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo check of the benchmark workspace (it must not rot; fuzz/ is built by the fuzzing step)"
cargo check --locked --manifest-path bench/Cargo.toml --all-targets

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

step "Swift: the generated Swift declares every call the wrapper and its tests make (an API check, not a compile: no Swift toolchain here)"
python3 platforms/swift/check_api.py platforms/swift/generated/Pulselink.swift

step "Fuzzing: each codec under libFuzzer for 15 s, every input that decodes must round-trip (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 3600)"
./scripts/fuzz.sh 15

done_steps
