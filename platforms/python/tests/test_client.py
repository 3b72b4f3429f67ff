"""The Python package against the official Node Socket.IO server."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading
from typing import Any, List

import pytest

import pulselink
from pulselink import Event, EventStream, ReconnectConfig

FAST_RETRY = ReconnectConfig(initial_delay_ms=50, max_delay_ms=250)


async def next_named(stream: EventStream, name: str) -> Event:
    async for ev in stream:
        if ev.event == name:
            return ev
    raise AssertionError(f"stream ended before {name!r}")


async def test_connect_events_acks_and_close(server: Any) -> None:
    client = pulselink.Client(server.url, auth={"token": "t1"})
    events = client.events()
    await client.connect()
    assert client.state.is_connected()

    welcome = await next_named(events, "welcome")
    assert welcome.namespace == "/"
    assert welcome.args == [{"namespace": "/", "auth": {"token": "t1"}, "recovered": False}]

    reply = await client.emit_with_ack("quiz:answer_submit", {"answer": "A"}, timeout=5.0)
    # The outbox adds its idempotency key to the first object argument.
    assert reply[0]["ok"] and reply[0]["answer"]["answer"] == "A"
    assert reply[0]["answer"]["idempotencyKey"]

    # Binary arguments travel as attachments and come back as bytes, anywhere in the args.
    blob = bytes(range(256))
    await client.emit("echo", {"sample": blob, "n": 1}, b"\x00tail")
    echo = await next_named(events, "echo")
    sent, tail = echo.args
    assert (sent["sample"], sent["n"], tail) == (blob, 1, b"\x00tail")

    # The server asks us for an ack; our answer reaches it.
    await client.emit("ask", "ready?")
    question = await next_named(events, "server:question")
    assert question.wants_ack and question.args == ["ready?"]
    question.ack("yes", 42)
    got = await next_named(events, "server:got_ack")
    assert got.args == ["yes", 42]

    await client.close()
    assert client.state.is_closed()
    # Closing ends every stream.
    assert [ev async for ev in events] == []
    with pytest.raises(pulselink.ClientClosed):
        await client.emit("echo", 1)


async def test_refused_credentials_are_refreshed_once_then_unauthorized(server: Any) -> None:
    asked: List[pulselink.AuthRequest] = []

    def stale_then_fresh(request: pulselink.AuthRequest) -> dict[str, str]:
        asked.append(request)
        return {"token": "fresh" if request.refresh else "stale"}

    client = pulselink.Client(server.url, auth=stale_then_fresh)
    events = client.events()
    await client.connect()
    assert [r.refresh for r in asked] == [False, True]
    assert asked[1].message == "Authentication failed"
    assert (await next_named(events, "welcome")).args[0]["auth"] == {"token": "fresh"}
    await client.close()

    refused = pulselink.Client(server.url, auth=lambda: {"token": "bad"})
    with pytest.raises(pulselink.Unauthorized, match="Authentication failed"):
        await refused.connect()
    assert refused.state.is_unauthorized()
    await refused.close()


async def test_async_auth_provider_runs_on_the_event_loop(server: Any) -> None:
    loop_thread: List[threading.Thread] = []

    async def token() -> dict[str, str]:
        loop_thread.append(threading.current_thread())
        await asyncio.sleep(0)
        return {"token": "from-async"}

    async with pulselink.Client(server.url, auth=token) as client:
        assert loop_thread == [threading.current_thread()]
        reply = await client.emit_with_ack("quiz:answer_submit", "B", timeout=5.0)
        assert reply[0]["answer"] == "B"


async def test_reconnect_resubscribes_and_delivers_what_was_queued(server: Any, tmp_path: pathlib.Path) -> None:
    client = pulselink.Client(server.url, reconnect=FAST_RETRY, store_path=str(tmp_path / "o.db"))
    await client.connect()
    await client.subscribe("room:subscribe", {"roomId": "r1"}, unsubscribe="room:unsubscribe")
    # Answered after the subscription on the same connection: the server has it now.
    await client.emit_with_ack("log?")
    assert server.ledger_lines() == ["room:r1 0"]

    server.kill()
    states = client.states()
    async for state in states:
        if state.is_reconnecting():
            break
    for n in range(3):
        await client.emit("tick", {"n": n}, confirm=True)
    assert (await client.outbox.stats()).pending == 3

    notices = client.notices()
    server.restart()
    async for notice in notices:
        if notice.is_connected():
            break
    await client.outbox.drained()
    lines = server.ledger_lines()
    assert lines[0] == "room:r1 0" and lines[1] == "room:r1 0", lines
    assert [line.split()[1] for line in lines[2:]] == ["0", "1", "2"], lines
    metrics = await client.metrics()
    assert metrics.reconnects >= 1
    await client.close()


CHILD = """
import asyncio, sys, pulselink
async def main():
    client = pulselink.Client(sys.argv[1], store_path=sys.argv[2])
    for n in range(5):
        await client.emit("tick", {"n": n}, confirm=True)
    print("queued", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def test_outbox_survives_a_killed_process(server: Any, tmp_path: pathlib.Path) -> None:
    store = tmp_path / "outbox.db"
    # The first process queues emits while the server is unreachable and is killed.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "http://127.0.0.1:9", str(store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "queued"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    # The next process, same store: everything is delivered, in order, once.
    client = pulselink.Client(server.url, store_path=str(store))
    assert (await client.outbox.stats()).pending == 5
    await client.connect()
    await client.outbox.drained()
    assert [line.split()[1] for line in server.ledger_lines()] == ["0", "1", "2", "3", "4"]
    await client.close()


async def test_emits_done_in_place_and_emits_awaited_behind_an_fsync_alike(
    server: Any, tmp_path: pathlib.Path
) -> None:
    # With `NORMAL` the engine commits within microseconds and `emit` waits for it in place;
    # `FULL`'s fsync is awaited through the event loop. Either way: the entry's id, in order,
    # stored, then delivered once and in order.
    for durability in (pulselink.Durability.NORMAL, pulselink.Durability.FULL):
        client = pulselink.Client(
            server.url, store_path=str(tmp_path / f"{durability.name}.db"), durability=durability
        )
        ids = [await client.emit("tick", {"n": n}, confirm=True) for n in range(20)]
        assert ids == sorted(set(ids)), ids
        assert (await client.outbox.stats()).pending == 20
        await client.connect()
        await client.outbox.drained()
        await client.close()
    seen = [line.split()[1] for line in server.ledger_lines()]
    assert seen == [str(n) for n in range(20)] * 2, seen


async def test_cancelled_waits_lose_no_event(server: Any) -> None:
    client = pulselink.Client(server.url)
    events = client.events("tick:back")
    await client.connect()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(events.__anext__(), timeout=0.05)
    for n in range(100):
        await client.emit("emit-to-me", {"event": "tick:back", "args": [n]})
    got: List[int] = []
    async for batch in events.batches():
        got.extend(ev.args[0] for ev in batch)
        if len(got) == 100:
            break
    assert got == list(range(100))
    await client.close()


async def test_acks_in_flight_together_each_reach_their_own_caller(server: Any) -> None:
    """Acknowledgements come back through the loop's watched socket (``_answers``), in
    whatever order the server answers; each resolves the call that asked for it, a timeout and
    a cancelled wait included."""
    from pulselink import _answers

    client = pulselink.Client(server.url)
    await client.connect()
    assert _answers.for_running_loop() is not None, "this loop can watch a descriptor"

    async def answered(i: int) -> int:
        return int((await client.emit_with_ack("quiz:answer_submit", i))[0]["answer"])

    async def unanswered(i: int) -> str:
        with pytest.raises(pulselink.AckTimeout):
            await client.emit_with_ack("silent", {"i": i}, timeout=0.05)
        return "timed out"

    answers = _answers.for_running_loop()
    assert answers is not None
    # Never answered, so its timeout would complete it later: its wait is cancelled meanwhile.
    cancelled = asyncio.ensure_future(client.emit_with_ack("silent", {"i": -1}, timeout=0.2))
    await asyncio.sleep(0)
    assert len(answers._waiting) == 1, "the ack waits in the loop's answers"
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not answers._waiting, "a cancelled wait lets go of its token"
    calls = asyncio.gather(*(answered(i) if i % 5 else unanswered(i) for i in range(100)))
    await asyncio.sleep(0)
    assert len(answers._waiting) == 100
    assert await calls == [i if i % 5 else "timed out" for i in range(100)]
    assert not answers._waiting
    # The cancelled call's own timeout comes meanwhile, with nobody to go to.
    await asyncio.sleep(0.25)
    assert await answered(1000) == 1000
    await client.close()


async def test_a_stream_whose_wait_was_given_up_still_gets_the_next_events(server: Any) -> None:
    """A stream waits through the loop's watched socket (``_answers``); a wait given up
    (a timeout) leaves the core's wait running, and the next wait takes what it got."""
    from pulselink import _answers

    client = pulselink.Client(server.url)
    events = client.events("tick:back")
    await client.connect()
    answers = _answers.for_running_loop()
    assert answers is not None
    for n in range(3):
        waiting = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.02)
        assert len(answers._waiting) == 1, "the stream waits in the loop's answers"
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not answers._waiting
        await client.emit("emit-to-me", {"event": "tick:back", "args": [n]})
        got = await asyncio.wait_for(events.__anext__(), timeout=5)
        assert got.args == [n]
    # Both here before the stream asks (they precede the ack on the connection): taken in
    # place, in order.
    await client.emit("emit-to-me", {"event": "tick:back", "args": ["a"]})
    await client.emit("emit-to-me", {"event": "tick:back", "args": ["b"]})
    await client.emit_with_ack("echo", "after them")
    assert [(await events.__anext__()).args for _ in range(2)] == [["a"], ["b"]]
    events.close()
    assert [ev async for ev in events] == [], "a closed stream ends"
    await client.close()


async def test_readers_waiting_together_on_a_stream_are_each_told_and_end_on_close(server: Any) -> None:
    """Two readers of one stream wait at once (``batches()`` twice): each is told when events
    come, so both get theirs, and ``close()`` ends a wait under way."""
    client = pulselink.Client(server.url)
    events = client.events("tick:back")
    await client.connect()
    first = asyncio.ensure_future(events.batches().__anext__())
    second = asyncio.ensure_future(events.batches().__anext__())
    await asyncio.sleep(0.02)
    await client.emit("emit-to-me", {"event": "tick:back", "args": [1]})
    done, _ = await asyncio.wait([first, second], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    await client.emit("emit-to-me", {"event": "tick:back", "args": [2]})
    batches = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert sorted(ev.args[0] for batch in batches for ev in batch) == [1, 2]
    waiting = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.02)
    events.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, timeout=5)
    await client.close()


async def test_an_event_loop_that_cannot_watch_a_descriptor_awaits_the_core_instead(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for asyncio's proactor loop (Windows): the core's async calls."""
    from pulselink import _answers

    monkeypatch.setattr(_answers, "for_running_loop", lambda: None)
    client = pulselink.Client(server.url)
    await client.connect()
    replies = await asyncio.gather(*(client.emit_with_ack("quiz:answer_submit", i) for i in range(20)))
    assert [r[0]["answer"] for r in replies] == list(range(20))
    with pytest.raises(pulselink.AckTimeout):
        await client.emit_with_ack("silent", {}, timeout=0.05)
    # Streams await the core's async call too.
    events = client.events("tick:back")
    await client.emit("emit-to-me", {"event": "tick:back", "args": [7]})
    assert (await asyncio.wait_for(events.__anext__(), timeout=5)).args == [7]
    await client.close()


async def test_namespaces_and_volatile_emits(server: Any) -> None:
    client = pulselink.Client(server.url)
    await client.connect()
    room = client.socket("/rooms/r7")
    welcomes = room.events("welcome")
    assert (await next_named(welcomes, "welcome")).args[0]["namespace"] == "/rooms/r7"
    reply = await room.emit_with_ack("quiz:answer_submit", "C")
    assert reply[0]["namespace"] == "/rooms/r7"
    assert client.emit_volatile("metric:recorded", {"bpm": 120}) is True
    await client.close()


async def test_bad_input_raises_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(pulselink.InvalidConfig, match="url"):
        pulselink.Client("not a url")
    with pytest.raises(pulselink.InvalidConfig, match="namespace"):
        pulselink.Client("http://127.0.0.1:9", namespaces=["no-slash"])
    with pytest.raises(pulselink.InvalidConfig, match="read_hold"):
        pulselink.Client("http://127.0.0.1:9", read_hold=0.011)
    pulselink.Client("http://127.0.0.1:9", read_hold=0)
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(pulselink.StorageError):
        pulselink.Client("http://127.0.0.1:9", store_path=str(tmp_path / "dir.db"))
    client = pulselink.Client("http://127.0.0.1:9")
    with pytest.raises(TypeError):
        await client.emit("x", object())
    with pytest.raises(TypeError, match="event must be str"):
        await client.emit(123, "x")  # type: ignore[arg-type]
    with pytest.raises(pulselink.AckTimeout):
        await client.emit_with_ack("x", 1, timeout=0.05)
    # The errors are Python's own kinds too.
    with pytest.raises(TimeoutError):
        await client.emit_with_ack("x", 2, timeout=0.05)
    await client.close()


async def test_default_settings_fall_back_to_long_polling_when_websocket_is_refused(polling_server: Any) -> None:
    client = pulselink.Client(polling_server.url)
    events = client.events()
    await client.connect()
    assert (await next_named(events, "welcome")).args[0]["namespace"] == "/"
    assert await client.emit_with_ack("transport?") == ["polling"]
    reply = await client.emit_with_ack("quiz:answer_submit", "D")
    assert reply[0]["answer"] == "D"
    await client.close()


async def test_through_an_http_proxy_and_its_refusal(server: Any, tinyproxy: Any) -> None:
    client = pulselink.Client(server.url, proxy=tinyproxy.url())
    await client.connect()
    assert (await client.emit_with_ack("echo", {"via": "proxy"}))[0]["via"] == "proxy"
    assert await client.emit_with_ack("transport?") == ["websocket"]
    await client.close()
    assert tinyproxy.carried(server.port) > 0, "the session did not go through the proxy"

    wrong = "Wr0ng-py-pa55"
    refused = pulselink.Client(
        server.url,
        proxy=pulselink.ProxyConfig(url=tinyproxy.url(wrong)),
        reconnect=ReconnectConfig(enabled=False),
        transports=pulselink.Transports.WEB_SOCKET,
    )
    with pytest.raises(pulselink.ProxyError) as caught:
        await refused.connect()
    assert "refused the credentials" in str(caught.value)
    assert f"127.0.0.1:{tinyproxy.port}" in str(caught.value) and wrong not in str(caught.value)
    # A ProxyError is a ConnectionFailed: code that handles connection failures handles it.
    assert isinstance(caught.value, pulselink.ConnectionFailed)
    await refused.close()


async def test_seed_signals_an_unanswered_app_heartbeat_reconnects(server: Any) -> None:
    signals = pulselink.ServerSignals(
        seed_preset=True,
        heartbeat=pulselink.AppHeartbeat(event="ping", reply="pong", interval_ms=300, timeout_ms=200),
    )
    client = pulselink.Client(server.url, signals=signals, reconnect=FAST_RETRY)
    pongs = client.events("pong")
    await client.connect()
    await next_named(pongs, "pong")
    notices = client.notices()
    await client.emit_with_ack("mute-pong")
    async for notice in notices:
        if isinstance(notice, pulselink.Notice.DISCONNECTED):
            assert notice.reason.is_app_ping_timeout(), notice
            break
    async for notice in notices:
        if notice.is_connected():
            break
    pongs.close()
    await client.close()


async def test_presence_follows_a_member_who_drops_and_returns(server: Any) -> None:
    async def member(user: str) -> Any:
        client = pulselink.Client(server.url, auth={"userId": user}, reconnect=FAST_RETRY)
        await client.subscribe("room:subscribe", {"roomId": "r1"}, unsubscribe="room:unsubscribe")
        presence = client.presence("r1")
        await client.connect()
        return client, presence

    async def shows(presence: Any, want: List[str]) -> None:
        changes = presence.changes()
        while presence.users != want:
            await asyncio.wait_for(changes.__anext__(), timeout=20)

    ann, ann_view = await member("ann")
    bob, bob_view = await member("bob")
    await shows(ann_view, ["ann", "bob"])
    bob.set_network_available(False)
    await shows(ann_view, ["ann"])
    bob.set_network_available(True)
    await shows(ann_view, ["ann", "bob"])
    await shows(bob_view, ["ann", "bob"])
    ann_view.close()
    bob_view.close()
    await ann.close()
    await bob.close()


async def test_envelope_protocol_events_requests_and_rejections(envelope_server: Any) -> None:
    client = pulselink.Client(
        envelope_server.ws_url,
        auth={"token": "py", "userId": "u1"},
        protocol="envelope",
    )
    async with client:
        await client.subscribe("subscribe", {"eventTypes": ["winner:selected"]})
        winners = client.events("winner:selected")
        reply = await client.emit_with_ack("publish", {"type": "winner:selected", "data": {"user": "u1"}})
        assert reply == [{"delivered": 1}]
        ev = await asyncio.wait_for(winners.__anext__(), 5)
        assert (ev.event, ev.args) == ("winner:selected", [{"user": "u1"}])
        with pytest.raises(pulselink.Rejected, match="INVALID_MESSAGE_FORMAT"):
            await client.emit_with_ack("reject-me", {})
    with pytest.raises(pulselink.InvalidConfig, match="namespace"):
        pulselink.Client(envelope_server.ws_url, namespaces=["/", "/rooms"], protocol="envelope")
    with pytest.raises(pulselink.InvalidConfig, match="ping_interval"):
        pulselink.Client(envelope_server.ws_url, protocol="envelope", ping_interval=0)
    with pytest.raises(pulselink.InvalidConfig, match="protocol"):
        pulselink.Client(envelope_server.ws_url, protocol="mqtt")  # type: ignore[arg-type]


async def first_connect_error(client: pulselink.Client) -> str:
    """Starts ``client``, which must not connect, and returns its first connect error."""
    notices = client.notices()
    client.start()
    try:
        async for notice in notices:
            assert not notice.is_connected(), "connected to a server it must not trust"
            if isinstance(notice, pulselink.Notice.CONNECT_FAILED):
                return notice.error
        raise AssertionError("notices ended")
    finally:
        await client.close()


async def test_tls_trusts_a_private_ca_and_checks_pins(tls_server: Any) -> None:
    # The default trust (webpki roots) refuses a certificate from an unknown CA, and says why.
    assert "UnknownIssuer" in await first_connect_error(pulselink.Client(tls_server.url, reconnect=FAST_RETRY))

    pins = pulselink.certificate_pins(tls_server.cert_pem)
    assert len(pins) == 1 and pins[0].startswith("sha256/")
    trusted = pulselink.TlsConfig(ca_pem=[tls_server.ca_pem], pins=pins)
    for transports, name in (
        (pulselink.Transports.WEB_SOCKET, "websocket"),
        (pulselink.Transports.POLLING, "polling"),
    ):
        async with pulselink.Client(tls_server.url, tls=trusted, transports=transports) as client:
            assert await client.emit_with_ack("transport?") == [name]

    # A valid certificate from the same CA but another key does not match the pin.
    other = tls_server.ca.issue_cert("127.0.0.1").cert_chain_pems[0].bytes().decode()
    wrong = pulselink.TlsConfig(ca_pem=[tls_server.ca_pem], pins=pulselink.certificate_pins(other))
    assert "pin mismatch" in await first_connect_error(pulselink.Client(tls_server.url, tls=wrong, reconnect=FAST_RETRY))

    with pytest.raises(pulselink.InvalidConfig, match="no trust anchors"):
        pulselink.Client(tls_server.url, tls=pulselink.TlsConfig(builtin_roots=False))
    with pytest.raises(pulselink.InvalidArgs):
        pulselink.certificate_pins("not a certificate")


async def test_encrypted_outbox_is_unreadable_on_disk_and_needs_its_key(server: Any, tmp_path: pathlib.Path) -> None:
    store = str(tmp_path / "outbox.db")
    key = pulselink.generate_outbox_key()
    server.kill()
    client = pulselink.Client(server.url, store_path=store, encryption_key=key)
    client.start()
    await client.emit("tick", {"n": 0, "note": "private-glucose-reading"}, confirm=True)
    await client.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("outbox.db"))
    assert b"private-glucose-reading" not in on_disk

    with pytest.raises(pulselink.InvalidConfig, match="encrypt"):
        pulselink.Client(server.url, store_path=store)
    with pytest.raises(pulselink.InvalidConfig, match="key"):
        pulselink.outbox_key("too short")

    server.restart()
    same_key = pulselink.outbox_key(key.to_base64())
    async with pulselink.Client(server.url, store_path=store, encryption_key=same_key) as client:
        await client.outbox.drained()
    assert [line.split()[1] for line in server.ledger_lines()] == ["0"]


# Seconds the background test stays in the background.
STAY_S = 0.05


async def test_background_foreground_and_network_path(server: Any) -> None:
    """A gateway host going to sleep and back, and its modem changing paths."""
    client = pulselink.Client(server.url, reconnect=FAST_RETRY)
    await client.connect()
    client.network_changed(True, pulselink.Interface.CELLULAR, expensive=True)
    for n in range(20):
        await client.emit("tick", {"n": n})
    flush = await client.enter_background(2.0)
    assert flush.remaining == 0
    async for state in client.states():
        if state.is_background():
            break
    # Stored while in the background, sent after the foreground.
    await client.emit("tick", {"n": 20})
    assert (await client.outbox.stats()).pending == 1
    # Time in the background is what the metric measures: spend a known amount there.
    await asyncio.sleep(STAY_S)
    client.enter_foreground()
    async for state in client.states():
        if state.is_connected():
            break
    await asyncio.wait_for(client.outbox.drained(), 10)
    metrics = await client.metrics()
    assert metrics.radio_wakeups >= 1
    assert metrics.inbound_reads >= 1
    assert metrics.state_times.background_ms >= STAY_S * 1000
    await client.close()
    with pytest.raises(pulselink.ClientClosed):
        client.enter_foreground()
    with pytest.raises(pulselink.ClientClosed):
        await client.enter_background(0.01)


async def _drain(stream: Any) -> List[Any]:
    return [n async for n in stream]


async def test_clients_of_a_hub_share_its_store_thread_and_keep_their_own_outboxes(
    server: Any, tmp_path: pathlib.Path
) -> None:
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    hub = pulselink.Hub()
    warm = pulselink.Client(server.url, hub=hub)
    await warm.connect()
    before = threads()
    devices = [
        pulselink.Client(server.url, auth={"token": f"dev-{i}"}, store_path=str(tmp_path / f"d{i}.db"), hub=hub)
        for i in range(20)
    ]
    await asyncio.gather(*(d.connect() for d in devices))
    # No thread per client: the hub's store thread serves them all.
    assert threads() - before <= 1
    replies = await asyncio.gather(*(d.emit_with_ack("echo", {"d": i}, timeout=5.0) for i, d in enumerate(devices)))
    assert [r[0]["d"] for r in replies] == list(range(20))
    # Each device has its own identity: its own idempotency-key prefix.
    prefixes = {r[0]["idempotencyKey"].rsplit("-", 1)[0] for r in replies}
    assert len(prefixes) == 20
    # Every client heard the server's welcome on connecting and sent its echo.
    stats = hub.stats()
    assert stats.events_received >= 21 and stats.events_sent >= 20, stats
    # Every client's notices on one stream, each naming its client.
    assert [d.hub_index for d in devices] == list(range(1, 21))
    fleet = hub.notices()
    refused = pulselink.Client(server.url, auth={"token": "bad"}, hub=hub)
    refused.start()
    notice = await asyncio.wait_for(fleet.__anext__(), 10)
    while not isinstance(notice.notice, pulselink.Notice.CONNECT_ERROR):
        notice = await asyncio.wait_for(fleet.__anext__(), 10)
    assert notice.client == refused.hub_index == 21
    # The hub lives on, so the stream ends only when closed.
    fleet.close()
    rest = await asyncio.wait_for(_drain(fleet), 5)
    assert all(isinstance(n, pulselink.HubNotice) for n in rest)
    single = pulselink.Client(server.url)
    assert single.hub_index is None
    for d in [warm, *devices, refused, single]:
        await d.close()
