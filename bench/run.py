#!/usr/bin/env python3
"""Runs every benchmark of Pulselink and its peers against one Node socket.io 4.8 server.

One command: `python3 bench/run.py` (add `--quick` for a short smoke run). Builds the
benchmark clients, starts the official server from tests/node, runs each client in its own
process several times, and prints a Markdown table of medians with ratios to Pulselink.

A full run keeps its raw results as bench/results/<date>-<commit>.json (committed with the
tables they produce) and rewrites the figures section of bench/README.md from them, prose
figures included; `--render FILE` rewrites that section from a kept results file. Every run
also writes bench/results/latest.{json,md} (not committed).
"""
import argparse
import json
import os
import pathlib
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_DIR = ROOT / "tests" / "node"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", BENCH / "target"))
BIN = TARGET / "release" / "pulselink-bench"
CLI = TARGET / "release" / "pulselink"
# The same CLI built with the workspace's size-optimised profile, as for a gateway device.
CLI_DEVICE = TARGET / "release-mobile" / "pulselink"
PEER_BIN = TARGET / "release" / "peer-bench"
PY_VENV = TARGET / "py-venv"
PY = PY_VENV / "bin" / "python"
PY_CLIENTS = ("pulselink-py", "python-socketio")


class Server:
    """tests/node/server.js (or another of its test servers, `script`, which prints the same
    "listening PORT" line), killable and restartable on the same port."""

    def __init__(self, script="server.js"):
        self.script = script
        self.proc = None
        self.port = 0

    def start(self):
        env = {**os.environ, "PORT": str(self.port)}
        for _ in range(100):
            self.proc = subprocess.Popen(
                ["node", str(NODE_DIR / self.script)], env=env, stdout=subprocess.PIPE, text=True
            )
            line = self.proc.stdout.readline()
            if line.startswith("listening "):
                self.port = int(line.split()[1])
                return time.time() * 1000.0
            self.proc.wait()
            time.sleep(0.05)
        sys.exit("node server did not start")

    def kill(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def pin(self, cpus):
        """Runs every thread of the server on `cpus` (a set of CPU numbers)."""
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            os.sched_setaffinity(int(tid), cpus)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        """The envelope server's endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws"


RADIO = [("radio-idle", "pulselink"), ("radio-idle", "socket.io-client"), ("radio-low", "pulselink"),
         ("radio-low", "pulselink-schedule-off"), ("radio-low", "socket.io-client")]


def client_command(client, mode, url, n):
    if client == "socket.io-client":
        return ["node", str(BENCH / "node" / "sioclient.js"), mode, url, str(n)]
    return [str(BIN), mode, client, url, str(n)]


def start_radio(url, secs):
    """The radio rows run beside everything else: mostly idle clients, so they cost the other
    rows nothing, and their counts depend on the server's heartbeat, not on the CPU."""
    return [(mode, client, subprocess.Popen(client_command(client, mode, url, secs),
                                            stdout=subprocess.PIPE, text=True))
            for mode, client in RADIO]


def finish_radio(procs):
    runs = []
    for mode, client, proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            sys.exit(f"{client} {mode} failed")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return runs


def run_client(client, mode, url, n, runtime="single", proxy=None, cpu=None, server=None):
    """One run of one client. `runtime="multi"` runs the Rust clients on tokio's default
    multi-threaded runtime (what an app on `#[tokio::main]` gets); its rows are kept under
    the mode's name with `@mt` appended. With `proxy` (a URL), Pulselink goes through it.
    With `cpu`, the client process runs on that CPU only. With `server` (a `Server`), the
    CPU time the server spent during the run is recorded too."""
    env = {**os.environ, "BENCH_RUNTIME": runtime}
    if proxy:
        env["BENCH_PROXY"] = proxy
    r = run_client_on(client, mode, url, n, env, cpu, server.proc.pid if server else None)
    if runtime == "multi":
        r["mode"] += "@mt"
    return r


class Tinyproxy:
    """tinyproxy (the Debian package scripts/test.sh installs) on a free loopback port: the
    proxy of the proxy-hop rows."""

    def __init__(self, workdir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = pathlib.Path(workdir) / "tinyproxy.conf"
        conf.write_text(f"Port {self.port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 600\n"
                        f"MaxClients 100\nLogLevel Error\nDisableViaHeader Yes\n")
        self.proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        sys.exit("tinyproxy did not start (apt-get install tinyproxy)")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Cluster:
    """The test suite's cluster (tests/src/cluster.rs) for the many-clients rows: redis-server,
    three tests/node/server.js nodes joined by the Redis streams adapter, nginx round robin in
    front (the Debian packages scripts/test.sh installs)."""

    def __init__(self, workdir):
        self.procs = []
        try:
            self.start(workdir)
        except BaseException:
            self.kill()
            raise

    def start(self, workdir):
        os.chmod(workdir, 0o777)  # nginx's workers may run unprivileged
        redis_port = free_port()
        self.spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                    "--appendonly", "no", "--dir", workdir], ready="Ready to accept connections")
        nodes = []
        for i in range(3):
            env = {**os.environ, "PORT": "0", "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
                   "NODE_NAME": f"n{i}", "RECOVERY_MS": "120000"}
            proc = subprocess.Popen(["node", str(NODE_DIR / "server.js")], env=env,
                                    stdout=subprocess.PIPE, text=True)
            self.procs.append(proc)
            line = proc.stdout.readline()
            if not line.startswith("listening "):
                sys.exit(f"cluster node {i} did not start: {line!r}")
            nodes.append(int(line.split()[1]))
        self.port = free_port()
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in nodes)
        conf = pathlib.Path(workdir) / "nginx.conf"
        conf.write_text(
            # Four workers: 10,000 clients are 20,000 sockets, more than one process may hold
            # here (the descriptor limit is 20,000 and cannot be raised in this container).
            f"worker_processes 4;\npid {workdir}/nginx.pid;\nerror_log stderr notice;\n"
            f"events {{ worker_connections 60000; }}\nhttp {{\n  access_log off;\n"
            + "".join(f"  {t}_temp_path {workdir}/{t};\n"
                      for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
            + "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
            f"  upstream round {{\n{servers}  }}\n"
            f"  server {{\n    listen 127.0.0.1:{self.port} backlog=4096;\n    location / {{\n"
            "      proxy_pass http://round;\n      proxy_http_version 1.1;\n"
            "      proxy_set_header Upgrade $http_upgrade;\n"
            "      proxy_set_header Connection $connection_upgrade;\n"
            "      proxy_read_timeout 3600s;\n    }\n  }\n}\n")
        self.spawn(["nginx", "-p", workdir, "-c", str(conf), "-g", "daemon off;"],
                   ready="start worker process", stream="stderr")

    def spawn(self, cmd, ready, stream="stdout"):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
                                stderr=subprocess.PIPE if stream == "stderr" else None, text=True)
        self.procs.append(proc)
        out = proc.stdout if stream == "stdout" else proc.stderr
        for line in out:
            if ready in line:
                # Keep draining: a full pipe would block the process.
                threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
                return
        sys.exit(f"{cmd[0]} did not start (apt-get install redis-server nginx)")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def kill(self):
        # Last started, first stopped (Redis outlives the nodes); SIGTERM: nginx's master stops
        # its workers before it exits.
        for p in reversed(self.procs):
            p.terminate()
            p.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_crowd(client, url, n, ramp_s, hold_s):
    """`n` idle connections in one process, each subscribed to a room: memory per client,
    threads, connect time."""
    if client == "socket.io-client":
        cmd = ["node", str(BENCH / "node" / "crowd.js"), url, str(n), str(int(ramp_s * 1000)),
               str(int(hold_s * 1000))]
    else:
        cmd = [str(CLI), "swarm", url, "--proxy", "none", "--clients", str(n), "--ramp", str(ramp_s),
               "--duration", str(hold_s), "--subscribe", 'room:subscribe={"roomId":"r1"}']
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if client == "socket.io-client":
        if not out.stdout.strip():
            sys.exit(f"crowd.js of {n} printed nothing: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        # Exit 3 (not every device connected) is a result too: the table shows how many did.
        if out.returncode not in (0, 3):
            sys.exit(f"swarm of {n} failed: {out.stderr[-2000:]}")
        rep = json.loads(out.stdout)
        r = {"clients": n, "connected": rep["connected_at_end"], **rep["process"],
             "connect_time": {k: rep["connect_time"][k] for k in ("p50_ms", "p99_ms")}}
    r.update({"mode": f"crowd-{n}", "client": client,
              "connect_p50_ms": r["connect_time"]["p50_ms"],
              "connect_p99_ms": r["connect_time"]["p99_ms"]})
    return r


def run_swarm_acks(url, n, secs):
    """`pulselink swarm`: `n` devices each emitting one acknowledged tick a second."""
    out = subprocess.run([str(CLI), "swarm", url, "--proxy", "none", "--clients", str(n), "--ramp", "5",
                          "--duration", str(secs), "--subscribe", 'room:subscribe={"roomId":"r1"}',
                          "--emit", 'tick={"device":"{i}"}', "--rate", "1", "--ack"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode not in (0, 3):
        sys.exit(f"swarm of {n} failed: {out.stderr[-2000:]}")
    rep = json.loads(out.stdout)
    return {"mode": f"swarm-ack-{n}", "client": "pulselink", "exit": out.returncode,
            "acked": rep["acked"], "ack_failed": rep["ack_failed"],
            "connected": rep["connected_at_end"], "p50_ms": rep["ack_latency"]["p50_ms"],
            "p99_ms": rep["ack_latency"]["p99_ms"], "max_ms": rep["ack_latency"]["max_ms"]}


def cpu_seconds(pid):
    """User + system CPU a running process has used, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name (which may hold spaces): utime and stime are 14th
        # and 15th of the whole line, in clock ticks.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client_on(client, mode, url, n, env, cpu=None, server_pid=None):
    """Runs one client process to its end; its JSON report, with the CPU the process used
    (`client_cpu_s`, start to exit: its start-up included) and, given `server_pid`, the CPU
    the server used meanwhile (`server_cpu_s`)."""
    if client == "socket.io-client":
        cmd = ["node", str(BENCH / "node" / "sioclient.js"), mode, url, str(n)]
    elif client == "ws":
        cmd = ["node", str(BENCH / "node" / "envclient.js"), mode, url, str(n)]
    elif client == "tcp-floor":
        cmd = ["node", str(BENCH / "node" / "tcpfloor.js"), str(n)]
    elif client in PY_CLIENTS:
        cmd = [str(PY), str(BENCH / "python" / "pyclient.py"), mode, client, url, str(n)]
    elif client == "rust_socketio":
        cmd = [str(PEER_BIN), mode, client, url, str(n)]
    else:
        cmd = [str(BIN), mode, client, url, str(n)]
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    # Children reaped meanwhile: only this one (the benchmark runs one client at a time).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(server_pid) if server_pid else None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                         preexec_fn=pin)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"{client} {mode} failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if server_pid:
        r["server_cpu_s"] = cpu_seconds(server_pid) - server_before
    return r


def reconnect_latencies(client, server, cycles, down_s):
    """Kills the server, keeps it down `down_s`, restarts it; measures restart → connected."""
    if client == "socket.io-client":
        cmd = ["node", str(BENCH / "node" / "sioclient.js"), "reconnect", server.url, "0"]
    else:
        cmd = [str(BIN), "reconnect", client, server.url, "0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("connected")
    latencies = []
    for _ in range(cycles):
        server.kill()
        time.sleep(down_s)
        up = server.start()
        line = proc.stdout.readline()
        assert line.startswith("connected"), line
        latencies.append(float(line.split()[1]) - up)
    proc.stdin.close()
    rss = json.loads(proc.stdout.readlines()[-1])["peak_rss_kib"]
    proc.wait()
    return latencies, rss


def run_gateway(url, n, rate, device=False):
    """Feeds `n` tick lines to `pulselink gateway` (at `rate` lines/s, or as fast as it reads
    when None), closes stdin, and waits for the exit: every reading stored, sent and acked.
    With `device`, the `release-mobile` build runs (its rows' modes say `device`)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [str(CLI_DEVICE if device else CLI), "gateway", url, "--store", f"{tmp}/gw.db",
             "--json-status"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        chunk = 100
        for base in range(0, n, chunk):
            lines = "".join(f'{{"event":"tick","data":{{"n":{i},"bpm":142}}}}\n'
                            for i in range(base, min(base + chunk, n)))
            proc.stdin.write(lines.encode())
            if rate:
                ahead = started + (base + chunk) / rate - time.monotonic()
                if ahead > 0:
                    proc.stdin.flush()
                    time.sleep(ahead)
        proc.stdin.close()
        out = proc.stdout.read().decode().strip().splitlines()
        proc.wait()
        secs = time.monotonic() - started
        final = json.loads(out[-1])
        assert final["delivered"] == n and final["queued"] == 0, final
        mode = ("gateway-device" if device else "gateway") + ("-max" if rate is None else "-10k")
        return {"mode": mode, "client": "pulselink", "events": n, "secs": secs,
                "events_per_sec": n / secs, "peak_rss_kib": final["peak_rss_kib"]}


def run_listen(url, n):
    """`pulselink listen` into a file, as `pulselink listen URL > events.jsonl` runs: the
    subscription asks the server for `n` events; the time is the command's, start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "events.jsonl"
        started = time.monotonic()
        with open(path, "wb") as out:
            subprocess.run([str(CLI), "listen", url, "--subscribe", f"blast={n}",
                            "--count", str(n)], stdout=out, stderr=subprocess.DEVNULL,
                           check=True, timeout=600)
        secs = time.monotonic() - started
        with open(path, "rb") as f:
            lines = sum(1 for _ in f)
        assert lines == n, f"listen wrote {lines} lines, expected {n}"
        return {"mode": "listen-file", "client": "pulselink", "events": n, "secs": secs,
                "events_per_sec": n / secs}


def setup_python():
    """A virtualenv with python-socketio and the pulselink wheel (maturin, release build)."""
    if not PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PY_VENV)], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "maturin==1.16.0",
                    "python-socketio[asyncio-client]==5.18.1"], check=True)
    wheels = TARGET / "wheels"
    for old in wheels.glob("pulselink-*.whl"):
        old.unlink()
    subprocess.run([str(PY_VENV / "bin" / "maturin"), "build", "--release", "--quiet", "--out",
                    str(wheels)], check=True, cwd=ROOT / "platforms" / "python",
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
                    *map(str, wheels.glob("pulselink-*.whl"))], check=True)


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def git(*args):
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def measure(quick, reps):
    """Runs every benchmark; returns the raw results (every run, plus what was measured)."""
    n_in = 200_000 if quick else 1_000_000
    n_out = 50_000 if quick else 200_000
    n_ack = 500 if quick else 3_000
    n_py = 50_000 if quick else 200_000
    n_emit = 50_000 if quick else 200_000
    cycles = 3 if quick else 20

    subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                    "--loglevel=error"], check=True)
    # From the repository, wherever this script is started: cargo reads .cargo/config.toml
    # (the SQLite build) from the directory it runs in.
    subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path",
                    str(BENCH / "Cargo.toml")], check=True, cwd=ROOT,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    for profile in ["release", "release-mobile"]:
        subprocess.run(["cargo", "build", "--profile", profile, "--locked", "-p", "pulselink-cli",
                        "--manifest-path", str(ROOT / "Cargo.toml")], check=True, cwd=ROOT,
                       env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    setup_python()

    server = Server()
    server.start()
    radio_secs = 30 if quick else 600
    radio = start_radio(server.url, radio_secs)
    n_gw = 20_000 if quick else 100_000
    n_gw_rate = 10_000 if quick else 50_000
    results = {
        "config": {"n_in": n_in, "n_out": n_out, "n_ack": n_ack, "n_py": n_py,
                   "n_emit": n_emit, "n_py_emit": n_py // 10, "n_offline": 50_000 if quick else 300_000,
                   "n_drain": 10_000 if quick else 50_000, "n_gateway": n_gw, "reps": reps,
                   "reconnect_cycles": cycles, "cpus": os.cpu_count(), "quick": quick,
                   "radio_secs": radio_secs},
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "core", "bench", "cli", "tests/node",
                          "platforms/python")),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "runs": [],
    }
    c = results["config"]
    plan = [
        ("in", ["pulselink", "pulselink-serde", "socket.io-client", "rust_socketio", "raw"], n_in),
        # Python clients take longer per event: fewer events, same server, same packets.
        ("in-py", PY_CLIENTS, n_py),
        # The server's own socket.emit path, over WebSocket and over HTTP long-polling.
        # `pulselink-unheld`: read pacing off (`read_hold` zero), its A/B.
        ("in-emit", ["pulselink", "pulselink-unheld", "socket.io-client"], n_emit),
        ("in-emit-polling", ["pulselink", "socket.io-client"], n_emit),
        ("ack-py", PY_CLIENTS, n_ack),
        # `await client.emit(...)` in a loop: Pulselink's durable (store file), connected and
        # offline; python-socketio's in memory, connected.
        ("out-py", PY_CLIENTS, n_py // 10),
        ("offline-py", ["pulselink-py"], n_py // 10),
        ("out", ["pulselink", "socket.io-client", "rust_socketio"], n_out),
        ("out-seq", ["pulselink"], n_out // 10),
        ("ack", ["pulselink", "socket.io-client", "rust_socketio", "tcp-floor"], n_ack),
        # Durability: commit rates into a store file, memory while offline, backlog drain.
        ("commit-full-1", ["pulselink"], 500 if quick else 2_000),
        # Plain and encrypted alternate within each repetition, so their ratio is fair.
        ("commit-full-batch", ["pulselink"], 20_000 if quick else 100_000),
        ("commit-full-batch-encrypted", ["pulselink"], 20_000 if quick else 100_000),
        ("commit-normal-1", ["pulselink"], 2_000 if quick else 10_000),
        ("commit-normal-batch", ["pulselink"], 50_000 if quick else 300_000),
        ("offline-rss", ["pulselink", "socket.io-client"], c["n_offline"]),
        ("drain", ["pulselink"], c["n_drain"]),
        ("resubscribe", ["pulselink"], 100),
    ]
    # Modes measured in one interleaved group, so a pair's ratio compares like with like.
    groups = []
    for mode, clients, n in plan:
        if mode == "commit-full-batch-encrypted":
            groups[-1].append((mode, clients, n))
        else:
            groups.append([(mode, clients, n)])
    for group in groups:
        for rep in range(reps):
            # Interleave clients within a repetition so drift hits everyone alike.
            for mode, clients, n in group:
                for client in clients:
                    r = run_client(client, mode, server.url, n, server=server)
                    results["runs"].append(r)
                    print(f"  {mode:4} {client:17} {json.dumps(r)}", file=sys.stderr)

    # An app on tokio's default multi-threaded runtime, the public API as a new user calls
    # it, one interleaved group: inbound, `emit(..).await` in a loop with a store file
    # against rust_socketio's sequential emits (in main's body, and in a spawned task), 256 in
    # flight, ack round trips.
    mt_plan = [
        ("in", ["pulselink", "rust_socketio", "raw"], n_in),
        ("out-seq-file", ["pulselink"], n_out // 10),
        ("out", ["rust_socketio"], n_out // 10),
        ("out-seq-file-task", ["pulselink"], n_out // 10),
        ("out-task", ["rust_socketio"], n_out // 10),
        ("out-file", ["pulselink"], n_out),
        ("ack", ["pulselink", "rust_socketio"], n_ack),
    ]
    for rep in range(reps):
        for mode, clients, n in mt_plan:
            for client in clients:
                r = run_client(client, mode, server.url, n, runtime="multi", server=server)
                results["runs"].append(r)
                print(f"  {r['mode']:4} {client:17} {json.dumps(r)}", file=sys.stderr)

    # JSON envelopes over a plain WebSocket, against the envelope test server, beside a client
    # written directly on the `ws` package: one interleaved group, the clients' order
    # alternating from one repetition to the next (the first run meets a colder server).
    envelope = Server("envelope-server.js")
    envelope.start()
    try:
        for rep in range(reps):
            for mode, n in [("env-in", n_in), ("env-out", n_out), ("env-ack", n_ack)]:
                for client in ["pulselink", "ws"][::1 if rep % 2 == 0 else -1]:
                    r = run_client(client, mode, envelope.ws_url, n, server=envelope)
                    results["runs"].append(r)
                    print(f"  {mode:7} {client:17} {json.dumps(r)}", file=sys.stderr)
    finally:
        envelope.kill()

    # Where the client runs relative to the server: a round trip wakes a thread on each side,
    # and waking one on the other CPU of this virtual machine costs tens of microseconds
    # where waking one on the same CPU costs a context switch. Unpinned, the scheduler
    # decides which a run gets. The server on CPU 0, each client on CPU 0 and on CPU 1.
    if os.cpu_count() >= 2:
        server.pin({0})
        try:
            for rep in range(reps):
                for where, cpu in [("same-cpu", 0), ("other-cpu", 1)]:
                    for client in ["pulselink", "rust_socketio", "socket.io-client"]:
                        r = run_client(client, "ack", server.url, n_ack, cpu=cpu)
                        r["mode"] += f"@{where}"
                        results["runs"].append(r)
                        print(f"  {r['mode']:11} {client:17} {json.dumps(r)}", file=sys.stderr)
        finally:
            server.pin(set(range(os.cpu_count())))

    # The proxy hop: `in` and `ack` direct and through tinyproxy (a CONNECT tunnel), one
    # interleaved group, so the ratio compares like with like.
    with tempfile.TemporaryDirectory() as workdir:
        proxy = Tinyproxy(workdir)
        try:
            for rep in range(reps):
                for mode, n in [("in", n_in), ("ack", n_ack)]:
                    for via, url in [("direct", None), ("proxy", proxy.url)]:
                        r = run_client("pulselink", mode, server.url, n, proxy=url)
                        r["mode"] += f"@{via}"
                        results["runs"].append(r)
                        print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)
        finally:
            proxy.kill()

    for rep in range(reps):
        r = run_listen(server.url, n_in)
        results["runs"].append(r)
        print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)

    for rep in range(reps):
        for device in [False, True]:
            for rate, n in [(None, n_gw), (10_000, n_gw_rate)]:
                r = run_gateway(server.url, n, rate, device)
                results["runs"].append(r)
                print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)

    # Before the reconnect rows, which kill the server.
    for r in finish_radio(radio):
        results["runs"].append(r)
        print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)

    # Many clients in one process, through nginx in front of the three-node cluster: idle
    # memory per connected client against socket.io-client's, and a swarm's acknowledged
    # telemetry. Sockets beyond the default descriptor limit need a higher one.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    crowds = [200] if quick else [1_000, 10_000]
    c["crowds"] = crowds
    c["swarm_ack"] = [200, 10] if quick else [1_000, 30]
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(workdir)
        try:
            for rep in range(reps):
                for n in crowds:
                    for client in ["pulselink", "socket.io-client"]:
                        # 500 new connections a second: what the cluster on 2 CPUs takes.
                        r = run_crowd(client, cluster.url, n, ramp_s=max(2.0, n / 500), hold_s=5.0)
                        results["runs"].append(r)
                        print(f"  {r['mode']:11} {client:17} {json.dumps(r)}", file=sys.stderr)
                r = run_swarm_acks(cluster.url, *c["swarm_ack"])
                results["runs"].append(r)
                print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)
        finally:
            cluster.kill()

    reconnect = {}
    for client in ["pulselink", "socket.io-client"]:
        lat, rss = reconnect_latencies(client, server, cycles, 1.0)
        reconnect[client] = {"latencies_ms": lat, "median_ms": statistics.median(lat),
                             "max_ms": max(lat), "peak_rss_kib": rss}
        print(f"  reconnect {client}: {reconnect[client]}", file=sys.stderr)
    results["reconnect"] = reconnect
    server.kill()
    return results


def render(results):
    """The tables and the figures quoted in the prose, all from one results file."""
    c = results["config"]
    table = {}
    for r in results["runs"]:
        table.setdefault((r["mode"], r["client"]), []).append(r)

    def m(mode, client, key):
        return median(table.get((mode, client), []), key)

    def fmt(v, f="{:,.0f}"):
        return "–" if v is None else f.format(v)

    def ratio(v, b, f="{:.2f}×"):
        return "–" if v is None or not b else f.format(v / b)

    def per_k(mode, client, key):
        """Median CPU microseconds per event of `key` over a mode's runs."""
        v = [r[key] * 1e6 / r["events"] for r in table.get((mode, client), []) if key in r]
        return statistics.median(v) if v else None

    def mib(kib):
        return "–" if kib is None else f"{kib / 1024:.1f} MiB"

    def pair(mode, a, b, f="{:,.0f}"):
        return lambda client: ("–" if m(mode, client, a) is None
                               else f"{f.format(m(mode, client, a))} / {f.format(m(mode, client, b))}")

    reps, cpus = c["reps"], c["cpus"]
    base_in = m("in", "pulselink", "events_per_sec")
    base_out = m("out", "pulselink", "events_per_sec")
    lines = [
        f"Node socket.io 4.8 server on loopback, {cpus} CPUs; 116-byte event packets; "
        f"medians of {reps} runs (in: {c['n_in']:,} events, out: {c['n_out']:,}, ack: "
        f"{c['n_ack']:,} sequential).",
        "",
        "| client | in events/s | vs Pulselink | out events/s | vs Pulselink | ack p50 µs "
        "| ack p99 µs | peak RSS MiB (in) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client in ["pulselink", "pulselink-serde", "socket.io-client", "rust_socketio", "raw",
                   "tcp-floor"]:
        ein, eout = m("in", client, "events_per_sec"), m("out", client, "events_per_sec")
        p50, p99 = m("ack", client, "p50_us"), m("ack", client, "p99_us")
        rss = m("in", client, "peak_rss_kib")
        lines.append(
            f"| {client} | {fmt(ein)} | {ratio(ein, base_in)} | {fmt(eout)} | "
            f"{ratio(eout, base_out)} | {fmt(p50, '{:.0f}')} | {fmt(p99, '{:.0f}')} | "
            f"{fmt(rss and rss / 1024, '{:.1f}')} |"
        )
    reconnect = results["reconnect"]
    lines += [
        "",
        f"Reconnect after the server is down 1 s ({c['reconnect_cycles']} cycles): time from the "
        "server listening again to the client connected.",
        "",
        "| client | median ms | max ms |",
        "|---|---:|---:|",
    ]
    for client, r in reconnect.items():
        lines.append(f"| {client} | {r['median_ms']:.0f} | {r['max_ms']:.0f} |")

    def rate(mode):
        return fmt(m(mode, "pulselink", "events_per_sec"))

    single = m("commit-full-1", "pulselink", "events_per_sec")
    grouped = m("commit-full-batch", "pulselink", "events_per_sec")
    sealed = m("commit-full-batch-encrypted", "pulselink", "events_per_sec")
    drains = table.get(("drain", "pulselink"), [])
    disorder = sum(r.get("out_of_order", 0) for r in drains)
    checked = drains and all("out_of_order" in r for r in drains)
    order = ("in order (checked by the server)" if checked and not disorder
             else f"{disorder} out of order" if checked else "order not checked")
    drain_rate = m("drain", "pulselink", "acked_per_sec")
    drain_secs = m("drain", "pulselink", "secs")
    resub = m("resubscribe", "pulselink", "ms")
    if ("ack@same-cpu", "pulselink") in table:
        lines += [
            "",
            "Ack round trips by where the client runs: the server pinned to CPU 0, each client "
            "pinned to the same CPU or to the other one (a thread woken on the other CPU of "
            "this virtual machine takes tens of microseconds to run; unpinned, as in the "
            "table above, the scheduler decides which a run gets).",
            "",
            "| client | same CPU p50 / p99 µs | other CPU p50 / p99 µs |",
            "|---|---:|---:|",
        ]
        for client in ["pulselink", "rust_socketio", "socket.io-client"]:
            cells = [f"{fmt(m(f'ack@{w}', client, 'p50_us'), '{:.0f}')} / "
                     f"{fmt(m(f'ack@{w}', client, 'p99_us'), '{:.0f}')}"
                     for w in ("same-cpu", "other-cpu")]
            lines.append(f"| {client} | {cells[0]} | {cells[1]} |")
    if ("in@proxy", "pulselink") in table:
        lines += [
            "",
            "The proxy hop: Pulselink direct and through tinyproxy on loopback (a `CONNECT` "
            "tunnel), interleaved in one group.",
            "",
            "| measure | direct | through tinyproxy | ratio |",
            "|---|---:|---:|---:|",
        ]
        for label, mode, key, f in [("inbound events/s", "in", "events_per_sec", "{:,.0f}"),
                                     ("ack round trip p50 µs", "ack", "p50_us", "{:.0f}"),
                                     ("ack round trip p99 µs", "ack", "p99_us", "{:.0f}")]:
            d, p_ = m(f"{mode}@direct", "pulselink", key), m(f"{mode}@proxy", "pulselink", key)
            lines.append(f"| {label} | {fmt(d, f)} | {fmt(p_, f)} | {ratio(p_, d)} |")
    for n in c.get("crowds", []):
        if n == c["crowds"][0]:
            lines += [
                "",
                "Many clients in one process, through nginx in front of three Socket.IO nodes "
                "joined by the Redis streams adapter: each client its own connection, subscribed "
                "to a room, idle; Pulselink's are `pulselink swarm` devices (one `Hub`: one store "
                "thread, each device its outbox in memory), socket.io-client's are "
                "`forceNew` sockets in one Node process (`bench/node/crowd.js`). RSS per client: "
                "the process's RSS with every client connected, less its RSS before the first.",
                "",
                "| clients | client | connected | RSS per client, KiB | Pulselink / socket.io-client "
                "| threads | connect p50 / p99 ms |",
                "|---:|---|---:|---:|---:|---:|---:|",
            ]
        mode = f"crowd-{n}"
        base = m(mode, "socket.io-client", "rss_per_client_kib")
        for client in ["pulselink", "socket.io-client"]:
            per = m(mode, client, "rss_per_client_kib")
            lines.append(
                f"| {n:,} | {client} | {fmt(m(mode, client, 'connected'))} | {fmt(per, '{:.0f}')} | "
                f"{ratio(per, base) if client == 'pulselink' else ''} | "
                f"{fmt(m(mode, client, 'threads'))} | "
                f"{pair(mode, 'connect_p50_ms', 'connect_p99_ms', '{:.0f}')(client)} |")
    if "swarm_ack" in c:
        n, secs = c["swarm_ack"]
        mode = f"swarm-ack-{n}"
        lines += [
            "",
            f"`pulselink swarm` with {n:,} devices through the same cluster, each emitting one "
            f"acknowledged tick a second for {secs} s after a 5 s ramp.",
            "",
            "| acknowledged | failed | connected at the end | ack p50 / p99 / max ms |",
            "|---:|---:|---:|---:|",
            f"| {fmt(m(mode, 'pulselink', 'acked'))} | {fmt(m(mode, 'pulselink', 'ack_failed'))} | "
            f"{fmt(m(mode, 'pulselink', 'connected'))} of {n:,} | "
            f"{fmt(m(mode, 'pulselink', 'p50_ms'), '{:.1f}')} / {fmt(m(mode, 'pulselink', 'p99_ms'), '{:.1f}')} / "
            f"{fmt(m(mode, 'pulselink', 'max_ms'), '{:.1f}')} |",
        ]
    lines += [
        "",
        "Durability (store file on this machine's disk; commit rows: emits of pre-encoded "
        "arguments while offline).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| commits/s, `Full`, one emit at a time (single-row commit rate) | {rate('commit-full-1')} |",
        f"| emits/s, `Full`, 1,024 in flight (group commit) | {rate('commit-full-batch')} "
        f"({ratio(grouped, single, '{:.0f}× single')}) |",
        f"| emits/s, `Full`, 1,024 in flight, payloads encrypted (`encryption_key`) "
        f"| {rate('commit-full-batch-encrypted')} ({ratio(sealed, grouped)} the plain rate) |",
        f"| emits/s, `Normal`, one at a time | {rate('commit-normal-1')} |",
        f"| emits/s, `Normal`, 1,024 in flight | {rate('commit-normal-batch')} |",
        f"| emits/s while connected, one at a time (awaiting each commit) | {rate('out-seq')} |",
    ]
    for client in ["pulselink", "socket.io-client"]:
        lines.append(f"| RSS growth holding {c['n_offline']:,} offline emits, {client} | "
                     f"{mib(m('offline-rss', client, 'rss_growth_kib'))} |")
    lines += [
        f"| `pulselink listen URL > file`, {c['n_in']:,} events: events/s (the library: "
        f"{fmt(base_in)}; rust_socketio: {fmt(m('in', 'rust_socketio', 'events_per_sec'))}) "
        f"| {rate('listen-file')} |",
        f"| gateway, stdin → server, each reading stored (`Full`), sent and acked: readings/s "
        f"| {rate('gateway-max')} |",
        f"| gateway peak RSS fed 10,000 readings/s | "
        f"{mib(m('gateway-10k', 'pulselink', 'peak_rss_kib'))} |",
        f"| the same, built for a device (`--profile release-mobile`): readings/s | "
        f"{rate('gateway-device-max')} |",
        f"| the same, built for a device: peak RSS fed 10,000 readings/s | "
        f"{mib(m('gateway-device-10k', 'pulselink', 'peak_rss_kib'))} |",
        f"| backlog of {c['n_drain']:,} confirmed emits: connect → all acked | "
        f"{'–' if drain_secs is None else f'{drain_secs:.2f} s ({drain_rate:,.0f} acked/s, {order})'} |",
        f"| 100 subscriptions: connect → replayed, acked, first outbox entry acked | "
        f"{fmt(resub, '{:.0f} ms')} |",
    ]
    lines += [
        "",
        f"Transports ({c['n_emit']:,} events the server sends with `socket.emit`, so the "
        "server's per-emit cost bounds every row; polling payloads batch many packets per GET). "
        "CPU per event: the client process's (start to exit) and the Node server's during the "
        "run. Reads: how often the engine read the link (`Metrics::inbound_reads`), held: after "
        "a hold (read pacing; `pulselink-unheld` runs with `read_hold` zero).",
        "",
        "| client | WebSocket events/s | CPU µs per event, client / server | events per read "
        "(held reads) | long-polling events/s | polling / WebSocket |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for client in ["pulselink", "pulselink-unheld", "socket.io-client"]:
        ws = m("in-emit", client, "events_per_sec")
        lp = m("in-emit-polling", client, "events_per_sec")
        us = lambda key: fmt(per_k("in-emit", client, key), "{:.1f}")
        reads = m("in-emit", client, "inbound_reads")
        per_read = (f"{fmt(c['n_emit'] / reads, '{:.0f}')} ({fmt(m('in-emit', client, 'held_reads'))})"
                    if reads else "–")
        lines.append(f"| {client} | {fmt(ws)} | {us('client_cpu_s')} / {us('server_cpu_s')} | "
                     f"{per_read} | {fmt(lp)} | {ratio(lp, ws, '{:.2f}')} |")
    if ("env-in", "pulselink") in table:
        lines += [
            "",
            "JSON envelopes over a plain WebSocket, against the envelope test server "
            "(`tests/node/envelope-server.js`, the `ws` package): Pulselink beside a client "
            "written directly on `ws` (`bench/node/envclient.js`: it parses every message, gives "
            "each it sends an id and a timestamp, correlates responses by `requestId`; no outbox, "
            "no de-duplication). in: the server writes pre-encoded envelopes, each with an id of "
            "its own (Pulselink de-duplicates by it); out: Pulselink's emits 256 in flight, "
            "committed to its in-memory outbox; ack: a request and its response. CPU per event: "
            "the client process's (start to exit).",
            "",
            "| client | in events/s | out events/s | CPU µs per event (in / out), client "
            "| ack p50 / p99 µs | peak RSS MiB (in) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for client in ["pulselink", "ws"]:
            us = lambda mode: fmt(per_k(mode, client, "client_cpu_s"), "{:.1f}")
            rss = m("env-in", client, "peak_rss_kib")
            lines.append(
                f"| {client} | {fmt(m('env-in', client, 'events_per_sec'))} | "
                f"{fmt(m('env-out', client, 'events_per_sec'))} | {us('env-in')} / {us('env-out')} | "
                f"{pair('env-ack', 'p50_us', 'p99_us', '{:.0f}')(client)} | "
                f"{fmt(rss and rss / 1024, '{:.1f}')} |")
        ratios = [ratio(m(mode, "pulselink", key), m(mode, "ws", key))
                  for mode, key in [("env-in", "events_per_sec"), ("env-out", "events_per_sec"),
                                    ("env-ack", "p50_us"), ("env-ack", "p99_us")]]
        # For events/s above 1× is faster; for the round trip's µs, below 1× is.
        lines.append(f"| Pulselink / ws | {ratios[0]} | {ratios[1]} | | {ratios[2]} / {ratios[3]} | |")
    if ("radio-idle", "pulselink") in table:
        secs = c["radio_secs"]
        heartbeat = 3600 / 25  # one wake-up per default pingInterval (25 s)
        goal = heartbeat + 3600 / 60  # plus one per low_max_delay (60 s)
        lines += [
            "",
            f"Radio wake-ups ({secs // 60} min connected at the server's default heartbeat, 25 s; a "
            "wake-up is traffic after ≥ 2 s of silence, each burst keeping the radio awake 2 s; "
            f"goal with the Low schedule on: ≤ {goal:.0f}/hour, the heartbeat's {heartbeat:.0f} "
            "plus one per `low_max_delay`).",
            "",
            "| client | traffic | wake-ups/hour | radio awake |",
            "|---|---|---:|---:|",
        ]
        for mode, client in RADIO:
            what = "idle" if mode == "radio-idle" else "1 `Low` emit/s" if client == "pulselink" else \
                "1 `Low` emit/s, schedule off" if client.startswith("pulselink") else "1 emit/s"
            lines.append(f"| {client.replace('-schedule-off', '')} | {what} | "
                         f"{fmt(m(mode, client, 'wakeups_per_hour'), '{:.0f}')} | "
                         f"{fmt(m(mode, client, 'active_fraction') and 100 * m(mode, client, 'active_fraction'), '{:.0f} %')} |")
    if ("in@mt", "pulselink") in table:
        raw_mt = m("in@mt", "raw", "events_per_sec")
        raw_st = m("in", "raw", "events_per_sec")
        rs_seq = m("out@mt", "rust_socketio", "events_per_sec")
        lines += [
            "",
            "On tokio's default multi-threaded runtime (`#[tokio::main]`, what every binding runs "
            "on), the public API as an app calls it; Pulselink's emits go to a store file "
            "(`Durability::Normal`) and `emit` returns once committed, or once delivered when "
            "its frame was flushed before its commit (no row is written then); rust_socketio's "
            "are in memory. `#[tokio::main]`'s body runs on the main thread, outside the "
            "runtime's workers: each `emit(..).await` there hands the emit to the engine's task "
            "on a worker and waits for its answer, two thread wake-ups per emit; the same loop "
            "in a task of its own runs beside the engine on one worker.",
            "",
            "| measure | Pulselink | rust_socketio | bare WebSocket reader | Pulselink / reference |",
            "|---|---:|---:|---:|---:|",
            f"| inbound events/s | {fmt(m('in@mt', 'pulselink', 'events_per_sec'))} | "
            f"{fmt(m('in@mt', 'rust_socketio', 'events_per_sec'))} | {fmt(raw_mt)} | "
            f"{ratio(m('in@mt', 'pulselink', 'events_per_sec'), raw_mt)} the reader "
            f"(single-threaded: {ratio(base_in, raw_st)}) |",
            f"| `emit(..).await` in a loop, events/s | "
            f"{fmt(m('out-seq-file@mt', 'pulselink', 'events_per_sec'))} | {fmt(rs_seq)} | – | "
            f"{ratio(m('out-seq-file@mt', 'pulselink', 'events_per_sec'), rs_seq)} |",
            f"| the same loop in a task of its own (`tokio::spawn`), events/s | "
            f"{fmt(m('out-seq-file-task@mt', 'pulselink', 'events_per_sec'))} | "
            f"{fmt(m('out-task@mt', 'rust_socketio', 'events_per_sec'))} | – | "
            f"{ratio(m('out-seq-file-task@mt', 'pulselink', 'events_per_sec'), m('out-task@mt', 'rust_socketio', 'events_per_sec'))} |",
            f"| 256 emits in flight, events/s | "
            f"{fmt(m('out-file@mt', 'pulselink', 'events_per_sec'))} | {fmt(rs_seq)} (sequential) "
            f"| – | {ratio(m('out-file@mt', 'pulselink', 'events_per_sec'), rs_seq)} |",
            f"| ack round trip p50 / p99 µs | "
            f"{pair('ack@mt', 'p50_us', 'p99_us', '{:.0f}')('pulselink')} | "
            f"{pair('ack@mt', 'p50_us', 'p99_us', '{:.0f}')('rust_socketio')} | – | "
            f"{ratio(m('ack@mt', 'pulselink', 'p50_us'), m('ack@mt', 'rust_socketio', 'p50_us'))} (p50) |",
        ]
    if any("server_cpu_s" in r for r in results["runs"]):
        def cpu(mode, client):
            a, b = per_k(mode, client, "client_cpu_s"), per_k(mode, client, "server_cpu_s")
            return "–" if a is None else f"{a:.1f} / {b:.1f}"

        def cpu_ratio(mode, ref_mode):
            return (f"{ratio(per_k(mode, 'pulselink', 'client_cpu_s'), per_k(ref_mode, 'rust_socketio', 'client_cpu_s'))}"
                    f" / {ratio(per_k(mode, 'pulselink', 'server_cpu_s'), per_k(ref_mode, 'rust_socketio', 'server_cpu_s'))}")

        lines += [
            "",
            "CPU per emit, µs: the client process's (start to exit, its start-up "
            "included) and the Node server's during the same run. Pulselink's emits are "
            "durable, rust_socketio's and socket.io-client's in memory.",
            "",
            "| emits | Pulselink client / server | rust_socketio client / server | "
            "socket.io-client client / server | Pulselink / rust_socketio (client / server) |",
            "|---|---:|---:|---:|---:|",
            f"| 256 in flight, single-threaded runtime (out, {c['n_out']:,} emits) | "
            f"{cpu('out', 'pulselink')} | {cpu('out', 'rust_socketio')} | "
            f"{cpu('out', 'socket.io-client')} | {cpu_ratio('out', 'out')} |",
            f"| `emit(..).await` in a loop, multi-threaded runtime (store file; rust_socketio "
            f"sequential, {c['n_out'] // 10:,} emits) | {cpu('out-seq-file@mt', 'pulselink')} | "
            f"{cpu('out@mt', 'rust_socketio')} | – | {cpu_ratio('out-seq-file@mt', 'out@mt')} |",
        ]
    py_base = m("in-py", "python-socketio", "events_per_sec")
    lines += [
        "",
        f"Python (the `pulselink` wheel's asyncio API, `async for ev in client.events(...)` with "
        f"`ev.args` decoded, against python-socketio's `AsyncClient` handlers; in: "
        f"{c['n_py']:,} events, ack: {c['n_ack']:,} sequential; emit loops: "
        f"{c.get('n_py_emit', 0):,} emits, Pulselink's into a store file, python-socketio's in "
        f"memory).",
        "",
        "| client | in events/s | vs python-socketio | ack p50 µs | ack p99 µs | peak RSS MiB (in) "
        "| `await emit` loop, events/s | same, offline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client in PY_CLIENTS:
        ein = m("in-py", client, "events_per_sec")
        p50, p99 = m("ack-py", client, "p50_us"), m("ack-py", client, "p99_us")
        rss = m("in-py", client, "peak_rss_kib")
        lines.append(f"| {client} | {fmt(ein)} | {ratio(ein, py_base, '{:.1f}×')} | "
                     f"{fmt(p50, '{:.0f}')} | {fmt(p99, '{:.0f}')} | "
                     f"{fmt(rss and rss / 1024, '{:.1f}')} | "
                     f"{fmt(m('out-py', client, 'events_per_sec'))} | "
                     f"{fmt(m('offline-py', client, 'events_per_sec'))} |")

    # The prose beside the tables quotes them: every figure below is computed here.
    sio_in, rs_in = m("in", "socket.io-client", "events_per_sec"), m("in", "rust_socketio", "events_per_sec")
    sio_out, rs_out = m("out", "socket.io-client", "events_per_sec"), m("out", "rust_socketio", "events_per_sec")
    ack = lambda client, q="p50_us": m("ack", client, q)
    py_in = m("in-py", "pulselink-py", "events_per_sec")
    crowd_n = c.get("crowds", [0])[-1]
    swarm_n = c.get("swarm_ack", [0])[0]
    crowd = lambda client: m(f"crowd-{crowd_n}", client, "rss_per_client_kib")
    reading = [
        f"- **In:** Pulselink hands the app {fmt(base_in)} fully decoded events/s, "
        f"{ratio(base_in, sio_in, '{:.1f}×')} socket.io-client and {ratio(base_in, rs_in, '{:.1f}×')} "
        f"rust_socketio; deserializing each into a struct as well runs at "
        f"{fmt(m('in', 'pulselink-serde', 'events_per_sec'))}/s.",
        f"- **Out:** durable emits, 256 in flight, reach {fmt(base_out)}/s against "
        f"{fmt(sio_out)}/s (socket.io-client) and {fmt(rs_out)}/s (rust_socketio) for in-memory "
        f"emits; awaiting each emit gives {rate('out-seq')}/s.",
        f"- **Ack round trip:** p50 {fmt(ack('pulselink'), '{:.0f}')} µs (p99 "
        f"{fmt(ack('pulselink', 'p99_us'), '{:.0f}')} µs) against {fmt(ack('socket.io-client'), '{:.0f}')} µs "
        f"for socket.io-client, {fmt(ack('rust_socketio'), '{:.0f}')} µs for rust_socketio and a "
        f"TCP floor of {fmt(ack('tcp-floor'), '{:.0f}')} µs.",
        *([f"- **JSON envelopes:** Pulselink receives "
           f"{fmt(m('env-in', 'pulselink', 'events_per_sec'))} events/s "
           f"({ratio(m('env-in', 'pulselink', 'events_per_sec'), m('env-in', 'ws', 'events_per_sec'))} "
           f"the client written directly on `ws`), sends {fmt(m('env-out', 'pulselink', 'events_per_sec'))}/s "
           f"({ratio(m('env-out', 'pulselink', 'events_per_sec'), m('env-out', 'ws', 'events_per_sec'))}) "
           f"and has a request answered in {fmt(m('env-ack', 'pulselink', 'p50_us'), '{:.0f}')} µs at the "
           f"median (the `ws` client: {fmt(m('env-ack', 'ws', 'p50_us'), '{:.0f}')} µs)."]
          if ("env-in", "pulselink") in table else []),
        f"- **Python:** {fmt(py_in)} events/s through the wheel's asyncio API, "
        f"{ratio(py_in, py_base, '{:.1f}×')} python-socketio; ack p50 "
        f"{fmt(m('ack-py', 'pulselink-py', 'p50_us'), '{:.0f}')} µs against "
        f"{fmt(m('ack-py', 'python-socketio', 'p50_us'), '{:.0f}')} µs.",
        f"- **Durability:** group commit turns {rate('commit-full-1')} fsync'd commits/s into "
        f"{rate('commit-full-batch')} emits/s at `Full` ({ratio(grouped, single, '{:.0f}×')}); "
        f"with payloads encrypted it runs at {ratio(sealed, grouped, '{:.2f}×')} that rate; "
        f"{c['n_offline']:,} offline emits cost {mib(m('offline-rss', 'pulselink', 'rss_growth_kib'))} "
        f"of RSS against {mib(m('offline-rss', 'socket.io-client', 'rss_growth_kib'))} for "
        f"socket.io-client's buffer.",
        *([f"- **Radio:** idle at the default heartbeat Pulselink wakes the radio "
            f"{fmt(m('radio-idle', 'pulselink', 'wakeups_per_hour'), '{:.0f}')} times an hour "
            f"(socket.io-client {fmt(m('radio-idle', 'socket.io-client', 'wakeups_per_hour'), '{:.0f}')}); "
            f"with one `Low` emit a second the schedule keeps it to "
            f"{fmt(m('radio-low', 'pulselink', 'wakeups_per_hour'), '{:.0f}')} and the radio awake "
            f"{fmt(m('radio-low', 'pulselink', 'active_fraction') and 100 * m('radio-low', 'pulselink', 'active_fraction'), '{:.0f} %')} "
            f"of the time, against "
            f"{fmt(m('radio-low', 'pulselink-schedule-off', 'active_fraction') and 100 * m('radio-low', 'pulselink-schedule-off', 'active_fraction'), '{:.0f} %')} "
            f"without it (each emit keeps the radio up)."]
          if ("radio-idle", "pulselink") in table else []),
        *([f"- **The server's emit path:** over WebSocket Pulselink reads the server's "
           f"`socket.emit`s at {fmt(m('in-emit', 'pulselink', 'events_per_sec'))}/s against "
           f"socket.io-client's {fmt(m('in-emit', 'socket.io-client', 'events_per_sec'))}/s "
           f"({ratio(m('in-emit', 'pulselink', 'events_per_sec'), m('in-emit', 'socket.io-client', 'events_per_sec'))}), "
           f"the server spending {fmt(per_k('in-emit', 'pulselink', 'server_cpu_s'), '{:.1f}')} µs of CPU per event "
           f"against {fmt(per_k('in-emit', 'socket.io-client', 'server_cpu_s'), '{:.1f}')}; with read pacing off "
           f"(`pulselink-unheld`) {fmt(m('in-emit', 'pulselink-unheld', 'events_per_sec'))}/s "
           f"and {fmt(per_k('in-emit', 'pulselink-unheld', 'server_cpu_s'), '{:.1f}')} µs."]
          if ("in-emit", "pulselink-unheld") in table else []),
        *([f"- **Proxy hop:** through tinyproxy inbound runs at "
            f"{ratio(m('in@proxy', 'pulselink', 'events_per_sec'), m('in@direct', 'pulselink', 'events_per_sec'))} "
            f"the direct rate ({fmt(m('in@proxy', 'pulselink', 'events_per_sec'))} against "
            f"{fmt(m('in@direct', 'pulselink', 'events_per_sec'))} events/s) and the ack round trip "
            f"p50 is {fmt(m('ack@proxy', 'pulselink', 'p50_us'), '{:.0f}')} µs against "
            f"{fmt(m('ack@direct', 'pulselink', 'p50_us'), '{:.0f}')} µs "
            f"({ratio(m('ack@proxy', 'pulselink', 'p50_us'), m('ack@direct', 'pulselink', 'p50_us'))})."]
          if ("in@proxy", "pulselink") in table else []),
        *([f"- **Many clients:** with {crowd_n:,} idle clients connected through the cluster, "
           f"Pulselink holds {fmt(crowd('pulselink'), '{:.0f}')} KiB per client on "
           f"{fmt(m(f'crowd-{crowd_n}', 'pulselink', 'threads'))} threads against socket.io-client's "
           f"{fmt(crowd('socket.io-client'), '{:.0f}')} KiB "
           f"({ratio(crowd('pulselink'), crowd('socket.io-client'))}); a swarm of {swarm_n:,} devices "
           f"emitting one acknowledged tick a second left "
           f"{fmt(m(f'swarm-ack-{swarm_n}', 'pulselink', 'ack_failed'))} unanswered, ack p99 "
           f"{fmt(m(f'swarm-ack-{swarm_n}', 'pulselink', 'p99_ms'), '{:.1f}')} ms."]
          if c.get("crowds") else []),
        f"- **Reconnect:** median {reconnect['pulselink']['median_ms']:.0f} ms after the server is "
        f"listening again (max {reconnect['pulselink']['max_ms']:.0f}), socket.io-client "
        f"{reconnect['socket.io-client']['median_ms']:.0f} ms (max "
        f"{reconnect['socket.io-client']['max_ms']:.0f}).",
    ]
    # The project README's summary: the headline rows, from the same medians.
    def row(label, key_fn, bold=False):
        cells = [key_fn(client) for client in ("pulselink", "socket.io-client", "rust_socketio")]
        if bold and cells[0] != "–":
            cells[0] = f"**{cells[0]}**"
        return f"| {label} | " + " | ".join(cells) + " |"

    def rec(client):
        r = reconnect.get(client)
        return "–" if r is None else f"{r['median_ms']:.0f} / {r['max_ms']:.0f}"

    summary = [
        f"Medians of {reps} runs on the project's {cpus}-CPU machine.",
        "",
        "| | Pulselink | socket.io-client | rust_socketio |",
        "|---|---:|---:|---:|",
        row("server → client events/s (fully decoded, normal event API)",
            lambda cl: fmt(m("in", cl, "events_per_sec")), bold=True),
        row("client → server events/s (Pulselink's are durable: committed, or delivered, before `emit` returns)",
            lambda cl: fmt(m("out", cl, "events_per_sec"))),
        row(f"ack round trip p50 / p99 µs (TCP floor here: "
            f"{pair('ack', 'p50_us', 'p99_us', '{:.0f}')('tcp-floor')})",
            pair("ack", "p50_us", "p99_us", "{:.0f}")),
        row("peak RSS while receiving, MiB", lambda cl: fmt(m("in", cl, "peak_rss_kib") and
                                                         m("in", cl, "peak_rss_kib") / 1024, "{:.1f}")),
        row(f"RSS growth holding {c['n_offline']:,} offline emits, MiB",
            lambda cl: fmt(m("offline-rss", cl, "rss_growth_kib") and
                           m("offline-rss", cl, "rss_growth_kib") / 1024, "{:.1f}"), bold=True),
        row("reconnect after a 1 s outage, median / max ms", rec),
        row("server `socket.emit` → client over WebSocket, events/s",
            lambda cl: fmt(m("in-emit", cl, "events_per_sec"))),
        row("server `socket.emit` → client over HTTP long-polling, events/s",
            lambda cl: fmt(m("in-emit-polling", cl, "events_per_sec"))),
        "",
        f"From Python, the `pulselink` wheel receives {fmt(py_in)} decoded events/s against "
        f"python-socketio's {fmt(py_base)} ({ratio(py_in, py_base, '{:.1f}×')}). The durable outbox "
        f"commits {rate('commit-full-batch')} emits/s at `Durability::Full` with group commit "
        f"({ratio(grouped, single, '{:.0f}×')} the {rate('commit-full-1')}/s single-row commit rate); "
        f"the gateway forwards {rate('gateway-max')} readings/s end to end (stored with `Full`, "
        f"sent, acked) and peaks at {mib(m('gateway-10k', 'pulselink', 'peak_rss_kib'))} fed "
        f"10,000 readings/s ({mib(m('gateway-device-10k', 'pulselink', 'peak_rss_kib'))} built "
        f"for a device with `--profile release-mobile`, which forwards "
        f"{rate('gateway-device-max')} readings/s).",
    ]
    return "\n".join(lines), "\n".join(reading), "\n".join(summary)


BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"


def splice(path, section):
    """Replaces what lies between the markers in `path` with `section`."""
    text = path.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    path.write_text(f"{head}{BEGIN}\n{section}{END}{tail}")


def publish(results, results_file):
    """Writes the tables into bench/README.md and the summary into README.md, between their
    markers, naming the raw results they come from."""
    tables, reading, summary = render(results)
    rel = results_file.relative_to(ROOT)
    section = (
        f"Measured {results['date']} at commit `{results['commit']}`"
        f"{' (with uncommitted changes)' if results.get('dirty') else ''} on the project's "
        f"{results['config']['cpus']}-CPU machine by `python3 bench/run.py`; raw results: "
        f"[`{rel}`]({rel.relative_to('bench')}).\n\n{tables}\n\nReading it (figures from the "
        f"tables above):\n\n{reading}\n"
    )
    splice(BENCH / "README.md", section)
    splice(ROOT / "README.md", f"{summary}\nRaw results: [`{rel}`]({rel}).\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="small counts, one repetition; does not touch bench/README.md")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="re-render bench/README.md from committed raw results, measuring nothing")
    args = ap.parse_args()
    out_dir = BENCH / "results"
    if args.render:
        path = pathlib.Path(args.render).resolve()
        publish(json.loads(path.read_text()), path)
        return
    results = measure(args.quick, 1 if args.quick else args.reps)
    out_dir.mkdir(exist_ok=True)
    tables, _, _ = render(results)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.md").write_text(tables + "\n")
    if not args.quick:
        # Kept and committed: the run behind the published tables.
        path = out_dir / f"{results['date']}-{results['commit']}.json"
        path.write_text(json.dumps(results, indent=2))
        publish(results, path)
    print(tables)


if __name__ == "__main__":
    main()
