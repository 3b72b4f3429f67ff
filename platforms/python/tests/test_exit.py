"""A process using Pulselink exits cleanly: no Rust thread may enter a finalizing interpreter.

Each script is the short program that used to die at exit with ``FATAL: exception not
rethrown`` (SIGABRT) in about 1 run in 12: drain a backlog while a task waits on the client,
close, cancel the task, return from ``asyncio.run``. Each runs ``RUNS`` times in a fresh
process; every run must exit 0 with nothing on stderr. (With the exit hook removed from
``pulselink/_client.py`` this fails within a few dozen runs.)
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

#: Runs per script; at the old abort rate, 50 clean runs by chance are under 2 %.
RUNS = 50

SEED = """
import asyncio, sys, pulselink
async def main():
    client = pulselink.Client("http://127.0.0.1:9", store_path=sys.argv[1])
    await asyncio.gather(*(client.emit("echo", {"n": n}) for n in range(1000)))
    await client.close()
asyncio.run(main())
"""

PRELUDE = """
import asyncio, sys, pulselink
URL, STORE = sys.argv[1], sys.argv[2]
"""

# The reported script: a task watching the states while the backlog drains.
STATES = PRELUDE + """
async def main():
    client = pulselink.Client(URL, auth=lambda: {"token": "t"}, store_path=STORE)
    async def watch():
        async for _ in client.states():
            pass
    task = asyncio.create_task(watch())
    client.start()
    await client.outbox.drained()
    await client.close()
    task.cancel()
asyncio.run(main())
"""

# The same with a cancelled `async for` over the events.
EVENTS = PRELUDE + """
async def main():
    client = pulselink.Client(URL, store_path=STORE)
    events = client.events()
    async def read():
        async for _ in events:
            pass
    task = asyncio.create_task(read())
    client.start()
    await client.outbox.drained()
    task.cancel()
    await client.close()
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A store holding 1,000 undelivered emits, made once."""
    store = tmp_path_factory.mktemp("seed") / "backlog.db"
    subprocess.run([sys.executable, "-c", SEED, str(store)], check=True, timeout=60)
    return store


@pytest.mark.parametrize("script", [STATES, EVENTS], ids=["states-watcher", "events-reader"])
def test_every_exit_is_clean(script: str, server: Any, backlog: pathlib.Path, tmp_path: pathlib.Path) -> None:
    store = tmp_path / "o.db"
    for run in range(RUNS):
        shutil.copyfile(backlog, store)
        done = subprocess.run(
            [sys.executable, "-c", script, server.url, str(store)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), f"run {run + 1} of {RUNS}"
