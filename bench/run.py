#!/usr/bin/env python3
"""Runs every benchmark of Pulselink and its peers against one Node socket.io 4.8 server.

One command: `python3 bench/run.py` (add `--quick` for a short smoke run). Builds the
benchmark clients, starts the official server from tests/node, runs each client in its own
process several times, and prints a Markdown table of medians with ratios to Pulselink. Raw
results go to bench/results/latest.json, the table to bench/results/latest.md.
"""
import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_DIR = ROOT / "tests" / "node"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", BENCH / "target"))
BIN = TARGET / "release" / "pulselink-bench"
CLI = TARGET / "release" / "pulselink"
PEER_BIN = TARGET / "release" / "peer-bench"
PY_VENV = TARGET / "py-venv"
PY = PY_VENV / "bin" / "python"
PY_CLIENTS = ("pulselink-py", "python-socketio")


class Server:
    """tests/node/server.js, killable and restartable on the same port."""

    def __init__(self):
        self.proc = None
        self.port = 0

    def start(self):
        env = {**os.environ, "PORT": str(self.port)}
        for _ in range(100):
            self.proc = subprocess.Popen(
                ["node", str(NODE_DIR / "server.js")], env=env, stdout=subprocess.PIPE, text=True
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

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def run_client(client, mode, url, n):
    if client == "socket.io-client":
        cmd = ["node", str(BENCH / "node" / "sioclient.js"), mode, url, str(n)]
    elif client == "tcp-floor":
        cmd = ["node", str(BENCH / "node" / "tcpfloor.js"), str(n)]
    elif client in PY_CLIENTS:
        cmd = [str(PY), str(BENCH / "python" / "pyclient.py"), mode, client, url, str(n)]
    elif client == "rust_socketio":
        cmd = [str(PEER_BIN), mode, client, url, str(n)]
    else:
        cmd = [str(BIN), mode, client, url, str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{client} {mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def run_gateway(url, n, rate):
    """Feeds `n` tick lines to `pulselink gateway` (at `rate` lines/s, or as fast as it reads
    when None), closes stdin, and waits for the exit: every reading stored, sent and acked."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [str(CLI), "gateway", url, "--store", f"{tmp}/gw.db", "--json-status"],
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
        mode = "gateway-max" if rate is None else "gateway-10k"
        return {"mode": mode, "client": "pulselink", "events": n, "secs": secs,
                "events_per_sec": n / secs, "peak_rss_kib": final["peak_rss_kib"]}


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
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts, one repetition")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    n_in = 200_000 if args.quick else 1_000_000
    n_out = 50_000 if args.quick else 200_000
    n_ack = 500 if args.quick else 3_000
    n_py = 50_000 if args.quick else 200_000
    n_emit = 50_000 if args.quick else 200_000
    cycles = 3 if args.quick else 20

    subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                    "--loglevel=error"], check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path",
                    str(BENCH / "Cargo.toml")], check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "pulselink-cli",
                    "--manifest-path", str(ROOT / "Cargo.toml")], check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    setup_python()

    server = Server()
    server.start()
    results = {"config": {"n_in": n_in, "n_out": n_out, "n_ack": n_ack, "reps": reps,
                          "reconnect_cycles": cycles, "cpus": os.cpu_count()}, "runs": []}
    plan = [
        ("in", ["pulselink", "pulselink-serde", "socket.io-client", "rust_socketio", "raw"], n_in),
        # Python clients take longer per event: fewer events, same server, same packets.
        ("in-py", PY_CLIENTS, n_py),
        # The server's own socket.emit path, over WebSocket and over HTTP long-polling.
        ("in-emit", ["pulselink", "socket.io-client"], n_emit),
        ("in-emit-polling", ["pulselink", "socket.io-client"], n_emit),
        ("ack-py", PY_CLIENTS, n_ack),
        ("out", ["pulselink", "socket.io-client", "rust_socketio"], n_out),
        ("out-seq", ["pulselink"], n_out // 10),
        ("ack", ["pulselink", "socket.io-client", "rust_socketio", "tcp-floor"], n_ack),
        # Durability: commit rates into a store file, memory while offline, backlog drain.
        ("commit-full-1", ["pulselink"], 500 if args.quick else 2_000),
        ("commit-full-batch", ["pulselink"], 20_000 if args.quick else 100_000),
        ("commit-full-batch-encrypted", ["pulselink"], 20_000 if args.quick else 100_000),
        ("commit-normal-1", ["pulselink"], 2_000 if args.quick else 10_000),
        ("commit-normal-batch", ["pulselink"], 50_000 if args.quick else 300_000),
        ("offline-rss", ["pulselink", "socket.io-client"], 50_000 if args.quick else 300_000),
        ("drain", ["pulselink"], 10_000 if args.quick else 50_000),
        ("resubscribe", ["pulselink"], 100),
    ]
    table = {}
    for mode, clients, n in plan:
        for rep in range(reps):
            # Interleave clients within a repetition so drift hits everyone alike.
            for client in clients:
                r = run_client(client, mode, server.url, n)
                results["runs"].append(r)
                print(f"  {mode:4} {client:17} {json.dumps(r)}", file=sys.stderr)
                table.setdefault((mode, client), []).append(r)

    n_gw = 20_000 if args.quick else 100_000
    for rep in range(reps):
        for rate, n in [(None, n_gw), (10_000, 10_000 if args.quick else 50_000)]:
            r = run_gateway(server.url, n, rate)
            results["runs"].append(r)
            print(f"  {r['mode']:11} {json.dumps(r)}", file=sys.stderr)
            table.setdefault((r["mode"], "pulselink"), []).append(r)

    reconnect = {}
    for client in ["pulselink", "socket.io-client"]:
        lat, rss = reconnect_latencies(client, server, cycles, 1.0)
        reconnect[client] = {"latencies_ms": lat, "median_ms": statistics.median(lat),
                             "max_ms": max(lat), "peak_rss_kib": rss}
        print(f"  reconnect {client}: {reconnect[client]}", file=sys.stderr)
    results["reconnect"] = reconnect
    server.kill()

    def m(mode, client, key):
        return median(table.get((mode, client), []), key)

    base_in = m("in", "pulselink", "events_per_sec")
    base_out = m("out", "pulselink", "events_per_sec")
    lines = [
        f"Node socket.io 4.8 server on loopback, {os.cpu_count()} CPUs; 116-byte event packets; "
        f"medians of {reps} runs (in: {n_in:,} events, out: {n_out:,}, ack: {n_ack:,} sequential).",
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
        fmt = lambda v, f="{:,.0f}": "–" if v is None else f.format(v)
        ratio = lambda v, b: "–" if v is None or not b else f"{v / b:.2f}×"
        lines.append(
            f"| {client} | {fmt(ein)} | {ratio(ein, base_in)} | {fmt(eout)} | {ratio(eout, base_out)} "
            f"| {fmt(p50, '{:.0f}')} | {fmt(p99, '{:.0f}')} | {fmt(rss and rss / 1024, '{:.1f}')} |"
        )
    lines += [
        "",
        f"Reconnect after the server is down 1 s ({cycles} cycles): time from the server listening "
        "again to the client connected.",
        "",
        "| client | median ms | max ms |",
        "|---|---:|---:|",
    ]
    for client, r in reconnect.items():
        lines.append(f"| {client} | {r['median_ms']:.0f} | {r['max_ms']:.0f} |")

    def rate(mode):
        v = m(mode, "pulselink", "events_per_sec")
        return "–" if v is None else f"{v:,.0f}"

    single, grouped = (m("commit-full-1", "pulselink", "events_per_sec"),
                       m("commit-full-batch", "pulselink", "events_per_sec"))
    growth = lambda c: m("offline-rss", c, "rss_growth_kib")
    lines += [
        "",
        "Durability (store file on this machine's disk; commit rows: emits of pre-encoded "
        "arguments while offline).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| commits/s, `Full`, one emit at a time (single-row commit rate) | {rate('commit-full-1')} |",
        f"| emits/s, `Full`, 1,024 in flight (group commit) | {rate('commit-full-batch')} "
        f"({'–' if not single else f'{grouped / single:.0f}× single'}) |",
        f"| emits/s, `Full`, 1,024 in flight, payloads encrypted (`encryption_key`) "
        f"| {rate('commit-full-batch-encrypted')} |",
        f"| emits/s, `Normal`, one at a time | {rate('commit-normal-1')} |",
        f"| emits/s, `Normal`, 1,024 in flight | {rate('commit-normal-batch')} |",
        f"| emits/s while connected, one at a time (awaiting each commit) | {rate('out-seq')} |",
    ]
    for c in ["pulselink", "socket.io-client"]:
        g = growth(c)
        n_off = 50_000 if args.quick else 300_000
        lines.append(f"| RSS growth holding {n_off:,} offline emits, {c} | "
                     f"{'–' if g is None else f'{g / 1024:.1f} MiB'} |")
    drain_rate = m("drain", "pulselink", "acked_per_sec")
    drain_secs = m("drain", "pulselink", "secs")
    resub = m("resubscribe", "pulselink", "ms")
    n_drain = 10_000 if args.quick else 50_000
    gw_rss = m("gateway-10k", "pulselink", "peak_rss_kib")
    lines += [
        f"| gateway, stdin → server, each reading stored (`Full`), sent and acked: readings/s "
        f"| {rate('gateway-max')} |",
        f"| gateway peak RSS fed 10,000 readings/s | "
        f"{'–' if gw_rss is None else f'{gw_rss / 1024:.1f} MiB'} |",
    ]
    lines += [
        f"| backlog of {n_drain:,} confirmed emits: connect → all acked | "
        f"{'–' if drain_secs is None else f'{drain_secs:.2f} s ({drain_rate:,.0f} acked/s, in order)'} |",
        f"| 100 subscriptions: connect → replayed, acked, first outbox entry acked | "
        f"{'–' if resub is None else f'{resub:.0f} ms'} |",
    ]
    lines += [
        "",
        f"Transports ({n_emit:,} events the server sends with `socket.emit`, so the server's "
        "per-emit cost bounds every row; polling payloads batch many packets per GET).",
        "",
        "| client | WebSocket events/s | long-polling events/s | polling / WebSocket |",
        "|---|---:|---:|---:|",
    ]
    for client in ["pulselink", "socket.io-client"]:
        ws, lp = m("in-emit", client, "events_per_sec"), m("in-emit-polling", client, "events_per_sec")
        ratio = "–" if not ws or lp is None else f"{lp / ws:.2f}"
        lines.append(f"| {client} | {ws:,.0f} | {lp:,.0f} | {ratio} |")
    py_base = m("in-py", "python-socketio", "events_per_sec")
    lines += [
        "",
        f"Python (the `pulselink` wheel's asyncio API, `async for ev in client.events(...)` with "
        f"`ev.args` decoded, against python-socketio's `AsyncClient` handlers; in: {n_py:,} "
        f"events, ack: {n_ack:,} sequential).",
        "",
        "| client | in events/s | vs python-socketio | ack p50 µs | ack p99 µs | peak RSS MiB (in) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for client in PY_CLIENTS:
        ein = m("in-py", client, "events_per_sec")
        p50, p99 = m("ack-py", client, "p50_us"), m("ack-py", client, "p99_us")
        rss = m("in-py", client, "peak_rss_kib")
        ratio = "–" if ein is None or not py_base else f"{ein / py_base:.1f}×"
        lines.append(f"| {client} | {ein:,.0f} | {ratio} | {p50:.0f} | {p99:.0f} | {rss / 1024:.1f} |")
    text = "\n".join(lines)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
