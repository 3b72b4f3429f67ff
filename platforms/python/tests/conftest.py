"""Fixtures for the Python binding tests: the generated module and a real Node server."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
GENERATED = os.environ.get("PULSELINK_PY_BINDINGS", str(ROOT / "platforms/python/generated"))
sys.path.insert(0, GENERATED)


@pytest.fixture
def server_url():
    """Starts tests/node/server.js (official socket.io) on a free port."""
    proc = subprocess.Popen(
        ["node", str(ROOT / "tests/node/server.js")],
        env={**os.environ, "PORT": "0"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening "), line
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        proc.kill()
        proc.wait()
