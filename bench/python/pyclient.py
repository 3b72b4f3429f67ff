"""Python benchmark clients: the pulselink wheel's asyncio API and python-socketio's AsyncClient.

Usage: python pyclient.py <in-py|ack-py|out-py|offline-py> <pulselink-py|python-socketio> <url> <n>
Prints one JSON line, like the other benchmark clients.

`out-py`: `await emit(...)` in a loop while connected, then the server's count (Pulselink's
emits durable in a store file, python-socketio's in memory). `offline-py` (Pulselink only):
the same loop before connecting, every emit committed to the store file.
"""

import asyncio
import json
import re
import os
import statistics
import sys
import tempfile
import time

EVENT = "metric:recorded"
SAMPLE = {"sessionId": "s_42", "metric": "heart_rate", "value": 142, "unit": "bpm",
          "ts": 1732000000, "src": "hr"}


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        m = re.search(r"VmHWM:\s+(\d+)", f.read())
    return int(m.group(1)) if m else 0


def report(mode: str, client: str, **fields: object) -> None:
    print(json.dumps({"mode": mode, "client": client, "peak_rss_kib": peak_rss_kib(), **fields}))


def ack_figures(us: list) -> dict:
    us = sorted(us[len(us) // 10 :])  # 10 % warm-up
    return {"p50_us": statistics.median(us), "p99_us": us[int(len(us) * 0.99) - 1]}


async def pulselink_py(mode: str, url: str, n: int) -> None:
    import pulselink

    if mode in ("out-py", "offline-py"):
        with tempfile.TemporaryDirectory() as scratch:
            await pulselink_emits(pulselink, mode, url, n, os.path.join(scratch, "outbox.db"))
        return
    client = pulselink.Client(url)
    events = client.events(EVENT)
    await client.connect()
    if mode == "in-py":
        seen = 0
        started = time.perf_counter()
        await client.emit("blast", n)
        # The normal API: every event decoded into Python objects (ev.args).
        async for ev in events:
            assert ev.args[0]["metric"] == "heart_rate"
            seen += 1
            if seen == n:
                break
        secs = time.perf_counter() - started
        report(mode, "pulselink-py", events=n, secs=secs, events_per_sec=n / secs)
    else:
        us = []
        for i in range(n):
            t = time.perf_counter()
            await client.emit_with_ack("quiz:answer_submit", i)
            us.append((time.perf_counter() - t) * 1e6)
        report(mode, "pulselink-py", **ack_figures(us))
    await client.close()


async def pulselink_emits(pulselink, mode: str, url: str, n: int, store: str) -> None:
    client = pulselink.Client(url, store_path=store)
    if mode == "out-py":
        await client.connect()
    started = time.perf_counter()
    for _ in range(n):
        await client.emit(EVENT, SAMPLE)
    if mode == "out-py":
        while (await client.emit_with_ack("count?"))[0] < n:
            await asyncio.sleep(0.005)
    secs = time.perf_counter() - started
    report(mode, "pulselink-py", events=n, secs=secs, events_per_sec=n / secs)
    await client.close()


async def python_socketio(mode: str, url: str, n: int) -> None:
    import socketio

    sio = socketio.AsyncClient(reconnection=False)
    done = asyncio.Event()
    seen = 0

    @sio.on(EVENT)
    async def on_metric(data: dict) -> None:
        nonlocal seen
        assert data["metric"] == "heart_rate"
        seen += 1
        if seen == n:
            done.set()

    await sio.connect(url, transports=["websocket"])
    if mode == "in-py":
        started = time.perf_counter()
        await sio.emit("blast", n)
        await done.wait()
        secs = time.perf_counter() - started
        report(mode, "python-socketio", events=n, secs=secs, events_per_sec=n / secs)
    elif mode == "out-py":
        started = time.perf_counter()
        for _ in range(n):
            await sio.emit(EVENT, SAMPLE)
        while (await sio.call("count?", timeout=30)) < n:
            await asyncio.sleep(0.005)
        secs = time.perf_counter() - started
        report(mode, "python-socketio", events=n, secs=secs, events_per_sec=n / secs)
    else:
        us = []
        for i in range(n):
            t = time.perf_counter()
            await sio.call("quiz:answer_submit", i, timeout=10)
            us.append((time.perf_counter() - t) * 1e6)
        report(mode, "python-socketio", **ack_figures(us))
    await sio.disconnect()


def main() -> None:
    mode, client, url, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = pulselink_py if client == "pulselink-py" else python_socketio
    asyncio.run(run(mode, url, n))


if __name__ == "__main__":
    main()
