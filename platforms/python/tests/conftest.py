"""Fixtures for the Python package's tests: the official Node Socket.IO server, real sockets.

The package under test is the installed wheel (``scripts/test.sh`` builds and installs it in
a virtualenv). Coroutine tests run on a fresh event loop each, without a plugin.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import socket
import subprocess
import time
from typing import Iterator, Optional

import pytest
import trustme

ROOT = pathlib.Path(__file__).resolve().parents[3]
SERVER_JS = ROOT / "tests" / "node" / "server.js"
ENVELOPE_JS = ROOT / "tests" / "node" / "envelope-server.js"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    """Runs ``async def`` tests with ``asyncio.run``."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), timeout=60))
    return True


class NodeServer:
    """A Node test server (``tests/node/server.js`` unless ``script`` says otherwise) on
    loopback; ``kill`` and ``restart`` keep the port."""

    def __init__(self, ledger: pathlib.Path, script: pathlib.Path = SERVER_JS, **env: str) -> None:
        self.ledger = ledger
        self._script = script
        self._env = {**os.environ, "LEDGER": str(ledger), **env}
        self.port = 0
        self._proc: Optional[subprocess.Popen[str]] = None
        self.restart()

    @property
    def url(self) -> str:
        scheme = "https" if "TLS_CERT" in self._env else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def restart(self) -> None:
        self._proc = subprocess.Popen(
            ["node", str(self._script)],
            env={**self._env, "PORT": str(self.port)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        assert line.startswith("listening "), f"server did not start: {line!r}"
        self.port = int(line.split()[1])

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []


@pytest.fixture
def polling_server(tmp_path: pathlib.Path) -> Iterator[NodeServer]:
    """A server that refuses WebSocket: HTTP long-polling only."""
    s = NodeServer(tmp_path / "ledger.txt", TRANSPORTS="polling")
    yield s
    s.kill()


@pytest.fixture
def envelope_server(tmp_path: pathlib.Path) -> Iterator[NodeServer]:
    """The JSON-envelope server (``tests/node/envelope-server.js``); ``ws_url`` is its URL."""
    s = NodeServer(tmp_path / "ledger.txt", script=ENVELOPE_JS)
    yield s
    s.kill()


class TlsServer(NodeServer):
    """The Socket.IO server on HTTPS/WSS with a certificate from a CA made for the test."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1")
        self.cert_pem = cert.cert_chain_pems[0].bytes().decode()
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
        cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
        super().__init__(
            tmp_path / "ledger.txt",
            TLS_CERT=str(tmp_path / "cert.pem"),
            TLS_KEY=str(tmp_path / "key.pem"),
        )

    @property
    def ca_pem(self) -> str:
        return self.ca.cert_pem.bytes().decode()


@pytest.fixture
def tls_server(tmp_path: pathlib.Path) -> Iterator[TlsServer]:
    """A server on HTTPS/WSS whose certificate only a test CA vouches for."""
    s = TlsServer(tmp_path)
    yield s
    s.kill()


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[NodeServer]:
    """A fresh official Socket.IO server per test."""
    s = NodeServer(tmp_path / "ledger.txt")
    yield s
    s.kill()


class Tinyproxy:
    """tinyproxy (Debian package, installed by ``scripts/test.sh``) on a free loopback port,
    asking for ``user``/``password``; ``carried(port)`` counts the requests it forwarded or
    tunnelled to that port, from its log."""

    user = "ann"
    password = "py-pr0xy-s3cret"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._log = tmp_path / "tinyproxy.log"
        conf = tmp_path / "tinyproxy.conf"
        conf.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 600\n"
            f'LogLevel Connect\nLogFile "{self._log}"\nDisableViaHeader Yes\n'
            f"BasicAuth {self.user} {self.password}\n"
        )
        self._proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tinyproxy did not listen"
                assert self._proc.poll() is None, "tinyproxy exited"
                time.sleep(0.01)

    def url(self, password: Optional[str] = None) -> str:
        return f"http://{self.user}:{password or self.password}@127.0.0.1:{self.port}"

    def carried(self, port: int) -> int:
        text = self._log.read_text() if self._log.exists() else ""
        return sum(1 for l in text.splitlines() if "Request (file descriptor" in l and f"127.0.0.1:{port}" in l)

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()


@pytest.fixture
def tinyproxy(tmp_path: pathlib.Path) -> Iterator[Tinyproxy]:
    """An HTTP proxy asking for credentials."""
    p = Tinyproxy(tmp_path)
    yield p
    p.kill()
