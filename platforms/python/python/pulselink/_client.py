"""The asyncio ``Client`` and ``Socket``: Python objects in, Python objects out."""

from __future__ import annotations

import asyncio
import atexit
import json
from typing import Any, AsyncIterator, List, Literal, Mapping, Optional, Sequence, Union, cast

from . import _answers, _args, _ffi
from ._errors import InvalidConfig, translated, translated_async
from ._auth import Auth, Provider
from ._events import EventStream, HubNoticeStream, NoticeStream


# The core's threads wake awaited calls, which enters Python from a Rust thread. A thread that
# takes the GIL once the interpreter is finalizing is ended with pthread_exit, whose forced
# unwind aborts the process ("FATAL: exception not rethrown") when it meets Rust's
# catch_unwind. atexit handlers run before finalization starts: stop the core's threads there,
# with the GIL released, so a wake-up under way finishes first.
atexit.register(_ffi.shutdown_runtime, 2000)


def _ms(seconds: Optional[float]) -> Optional[int]:
    return None if seconds is None else max(0, round(seconds * 1000))


def _protocol(name: str, ping_interval: Optional[float], ping_timeout: Optional[float]) -> Optional[_ffi.WireProtocol]:
    if name == "socketio":
        if ping_interval is not None or ping_timeout is not None:
            raise InvalidConfig(
                "ping_interval and ping_timeout are for the envelope protocol; Socket.IO servers set their own"
            )
        return None  # the core's default
    if name == "envelope":
        # UniFFI's variant classes are not subclasses of their enum for mypy.
        return cast(_ffi.WireProtocol, _ffi.WireProtocol.ENVELOPE(_ms(ping_interval), _ms(ping_timeout)))
    raise InvalidConfig(f"protocol: unknown {name!r}, expected 'socketio' or 'envelope'")


class Outbox:
    """The durable outbox of a client."""

    def __init__(self, inner: _ffi.Outbox) -> None:
        self._inner = inner

    @translated_async
    async def stats(self) -> _ffi.OutboxStats:
        """Entries and bytes waiting, and counters since the client was created."""
        return await self._inner.stats()

    @translated_async
    async def list(self, limit: int = 100) -> List[_ffi.PendingEmit]:
        """Up to ``limit`` waiting entries, oldest first."""
        return await self._inner.list(limit)

    @translated_async
    async def remove(self, entry_id: int) -> bool:
        """Withdraws an unsent entry; ``False`` when it is gone already."""
        return await self._inner.remove(entry_id)

    @translated_async
    async def clear(self) -> int:
        """Withdraws every unsent entry and returns how many."""
        return await self._inner.clear()

    @translated_async
    async def drained(self) -> None:
        """Returns once nothing is waiting (delivered, or acknowledged for ``confirm``)."""
        await self._inner.drained()


class Socket:
    """One namespace on a client's connection (``client.socket("/rooms/r1")``)."""

    def __init__(self, inner: _ffi.Socket) -> None:
        self._inner = inner

    @property
    def namespace(self) -> str:
        """The namespace, e.g. ``"/rooms/r1"``."""
        return self._inner.namespace()

    @translated_async
    async def emit(
        self,
        event: str,
        *args: Any,
        priority: Optional[_ffi.Priority] = None,
        ttl: Optional[float] = None,
        coalesce_key: Optional[str] = None,
        confirm: bool = False,
    ) -> int:
        """Queues ``event`` with ``args`` in the durable outbox and returns its entry id.

        Once this returns the emit survives a crash or an app kill; it is sent, in order, as
        soon as the connection allows (or it was sent already: written to a healthy connection
        before it needed storing). ``bytes`` arguments travel as binary attachments.
        ``ttl`` (seconds) drops it if still unsent by then, ``coalesce_key`` replaces an
        unsent emit with the same key, ``confirm`` keeps it until the server acknowledges.
        """
        # Started on this thread: the commit, made here (and, connected, handed to the core's
        # engine, which writes it), is done within microseconds, sooner than a round through
        # the event loop; what is not done in a millisecond (an fsync under FULL, a full
        # outbox) continues on the core's runtime and is awaited. A plain emit crosses as one
        # string, `[event, *args]`: lowering an options record, an empty attachment list or a
        # second string costs more than its commit.
        if not isinstance(event, str):
            raise TypeError(f"event must be str, not {type(event).__name__}")
        plain = priority is None and ttl is None and coalesce_key is None and not confirm
        event_json = _args.encode_plain([event, *args]) if plain else None
        if event_json is not None:
            started = self._inner.emit_start_event(event_json)
        else:
            # Plain but refused by the encoder: binary is among the arguments.
            text, blobs = _args.encode(args, binary=plain)
            options = _ffi.EmitOptions(
                priority=priority, ttl_ms=_ms(ttl), coalesce_key=coalesce_key, confirm=confirm
            )
            started = self._inner.emit_start(event, text, options, blobs)
        if isinstance(started, _ffi.EmitStart.DONE):
            return started.entry_id
        return await cast(_ffi.EmitStart.RUNNING, started).rest.wait()

    @translated_async
    async def emit_with_ack(self, event: str, *args: Any, timeout: float = 10.0) -> List[Any]:
        """Emits durably and returns the server's acknowledgement arguments.

        Raises :class:`AckTimeout` (a ``TimeoutError``) after ``timeout`` seconds; the emit itself stays
        queued and is still delivered.
        """
        text, blobs = _args.encode(args)
        answers = _answers.for_running_loop()
        if answers is None:
            reply = await self._inner.emit_with_ack(event, text, _ms(timeout) or 0, blobs)
        else:
            # Handed over here, answered through the loop's watched socket (see _answers).
            ms, queue = _ms(timeout) or 0, answers.inner
            _, answer = answers.start(
                lambda token: self._inner.emit_with_ack_start(event, text, ms, queue, token, blobs)
            )
            reply = await answer
        return _args.decode(reply.args_json, reply.attachments)

    @translated
    def emit_volatile(self, event: str, *args: Any) -> bool:
        """Sends only if connected right now (telemetry that is stale a second later);
        ``False`` when dropped."""
        text, blobs = _args.encode(args)
        return self._inner.emit_volatile(event, text, blobs)

    @translated_async
    async def subscribe(self, event: str, *args: Any, unsubscribe: Optional[str] = None) -> None:
        """Declares a subscription (``room:subscribe``), sent and acknowledged on every
        (re)connect before queued emits flow, and remembered across restarts.
        ``unsubscribe`` names the event that undoes it. Subscriptions carry JSON only:
        ``bytes`` arguments raise :class:`InvalidArgs`."""
        text, blobs = _args.encode(args)
        await self._inner.subscribe(event, text, unsubscribe, blobs)

    @translated_async
    async def unsubscribe(self, event: str, *args: Any) -> None:
        """Forgets the subscription made with the same ``event`` and ``args`` and sends its
        ``unsubscribe`` counterpart."""
        text, blobs = _args.encode(args)
        await self._inner.unsubscribe(event, text, blobs)

    def events(self, event: str) -> EventStream:
        """Events named ``event`` on this namespace, from now on."""
        return EventStream(self._inner.events_named(event))

    @translated
    def leave(self) -> None:
        """Leaves the namespace and stops rejoining it."""
        self._inner.leave()

    def presence(self, room: str, **names: str) -> "Presence":
        """Who is online in ``room``, kept current from the server's presence events and
        re-fetched after every (re)connect. ``names`` override the seed platforms' names:
        ``online_event``, ``offline_event``, ``get_online``, ``room_field``, ``user_field``,
        ``list_field``. Subscribe to the room as usual: the view only watches."""
        return Presence(self._inner.presence(_ffi.PresenceConfig(room=room, **names)))


class Presence:
    """A room's online users: ``presence.users`` now, ``async for change in
    presence.changes()`` as they come and go (``change.user_id``, ``change.online``)."""

    def __init__(self, inner: _ffi.Presence) -> None:
        self._inner = inner

    @property
    def users(self) -> List[str]:
        """The users online now, sorted."""
        return self._inner.users()

    async def changes(self) -> AsyncIterator[_ffi.PresenceChange]:
        """The changes since the view was made (up to 256 buffered), until :meth:`close` or the
        client is closed. One reader at a time: two would split the changes."""
        while True:
            change = await self._inner.next_change()
            if change is None:
                return
            yield change

    def close(self) -> None:
        """Stops keeping the view."""
        self._inner.cancel()


class Hub:
    """Many clients in one process: a gateway forwarding for many devices, each with its own
    identity and outbox. Clients made with ``Client(..., hub=hub)`` share the hub's one store
    thread instead of a thread each; each keeps its own connection, store (``store_path``
    must differ between them) and order.

        hub = pulselink.Hub()
        devices = [pulselink.Client(url, auth={"token": t}, hub=hub) for t in tokens]
    """

    @translated
    def __init__(self) -> None:
        # The generated constructor takes no parameters, so it carries no annotation at all.
        self._hub = _ffi.Hub()  # type: ignore[no-untyped-call]

    def stats(self) -> _ffi.HubStats:
        """Totals across every client made with this hub (``events_received``,
        ``events_sent``), counted as they happen: no listener on each client needed."""
        return self._hub.stats()

    def notices(self) -> HubNoticeStream:
        """Every client's notices from now on, on one stream: a fleet is watched once, not
        once per client. Each names its client by :attr:`Client.hub_index`."""
        return HubNoticeStream(self._hub.notices())


class Client(Socket):
    """A connection to a realtime server that loses nothing.

    Emits go through a durable outbox (SQLite at ``store_path``, in memory without one), the
    connection is kept with heartbeats and reconnects with backoff, subscriptions are
    replayed, and inbound duplicates are dropped. The emit and subscribe methods act on the
    main namespace; :meth:`socket` gives the others.

    ``auth`` is the Socket.IO auth object, or a callable (plain or ``async``) returning it;
    a callable is asked again with ``request.refresh`` true after the server refuses the
    token or says it expired. It runs on the event loop the client was created in (create
    the client inside ``async`` code when ``auth`` is a callable): an ``async`` one may
    await a token refresh, a plain one should return at once. Durations are in seconds.

    ``read_hold`` (seconds; 0.001 by default, at most 0.01, rounded up to the runtime's 1 ms
    timer tick; 0 turns it off) is how long the frames of a stream the server pushes may
    gather between reads once the reader keeps finding them waiting: such a stream is read
    about once per hold rather than every few events. No hold starts while an answer is
    awaited (an ack, a subscription's, a namespace's CONNECT), and a write ends one.

    ``store_path`` keeps the outbox, subscriptions, seen ids and recovery sessions in a
    SQLite file (in memory without one); ``durability`` says what a commit survives and
    ``encryption_key`` (:func:`outbox_key`) seals outbox payloads in the file.

    ``protocol`` is ``"socketio"`` (Socket.IO v4, the default) or ``"envelope"`` for servers
    that speak JSON envelopes (``{"id","type","timestamp","data"}``) over a plain WebSocket at
    ``url``. With envelopes the client pings every ``ping_interval`` seconds (25 by default)
    and counts the link dead when a pong takes over ``ping_timeout`` (10); ``auth`` keys
    ``token``, ``userId`` and ``sessionId`` go into the first ``auth`` message, events are
    named by their ``type``, and a failed response raises :class:`Rejected`.

    ``tls`` chooses whom ``wss://`` and ``https://`` trust (verification is always on):
    ``TlsConfig(ca_pem=[company_ca_pem])`` adds a CA, ``builtin_roots=False`` trusts only
    those, and ``pins=certificate_pins(server_cert_pem)`` pins the server's key.

    ``proxy`` reaches the server through a proxy: a URL (``"http://user:password@host:3128"``,
    ``"socks5://host:1080"``, ``"socks5h://..."`` to let the proxy resolve names), or a
    :class:`ProxyConfig` (``ProxyConfig(from_environment=True)`` reads ``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``; ``no_proxy=[...]`` lists hosts reached
    directly). TLS stays end to end through the proxy. A refusing proxy raises
    :class:`ProxyError`, naming the proxy but never its password.

    ``hub`` (a :class:`Hub`) runs this client's store on the hub's thread, shared with its
    other clients.

    ``signals`` says what the server's application signals mean: ``ServerSignals(seed_preset=True)``
    for the seed platforms (a ``ping``/``pong`` app heartbeat, ``error`` codes that refresh
    credentials, pause the outbox or reconnect, announced quotas and rates, per-event budgets),
    with any field overridden.
    """

    @translated
    def __init__(
        self,
        url: str,
        *,
        auth: Optional[Auth] = None,
        store_path: Optional[str] = None,
        namespaces: Sequence[str] = (),
        path: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        transports: Optional[_ffi.Transports] = None,
        protocol: Literal["socketio", "envelope"] = "socketio",
        ping_interval: Optional[float] = None,
        ping_timeout: Optional[float] = None,
        reconnect: Optional[_ffi.ReconnectConfig] = None,
        background: Optional[_ffi.BackgroundPolicy] = None,
        connect_timeout: Optional[float] = None,
        connect_wait: Optional[float] = None,
        outbox: Optional[_ffi.OutboxConfig] = None,
        dedup: Optional[_ffi.DedupConfig] = None,
        durability: Optional[_ffi.Durability] = None,
        encryption_key: Optional[_ffi.OutboxKey] = None,
        subscription_ack_timeout: Optional[float] = None,
        max_event_age: Optional[float] = None,
        max_inbound_bytes: Optional[int] = None,
        read_hold: Optional[float] = None,
        token_expired_event: Optional[str] = None,
        tls: Optional[_ffi.TlsConfig] = None,
        proxy: Union[None, str, _ffi.ProxyConfig] = None,
        signals: Optional[_ffi.ServerSignals] = None,
        hub: Optional[Hub] = None,
    ) -> None:
        provider = None
        auth_json = None
        if callable(auth):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise InvalidConfig(
                    "auth: a callable provider runs on the client's event loop; create the Client inside async code"
                ) from None
            provider = Provider(auth, loop)
        elif auth is not None:
            auth_json = json.dumps(dict(auth))
        store = None
        if store_path is not None or durability is not None or encryption_key is not None:
            store = _ffi.StoreConfig(path=store_path, durability=durability, encryption_key=encryption_key)
        config = _ffi.ClientConfig(
            url=url,
            namespaces=list(namespaces),
            auth_json=auth_json,
            store=store,
            path=path,
            headers=dict(headers or {}),
            transports=transports,
            protocol=_protocol(protocol, ping_interval, ping_timeout),
            reconnect=reconnect,
            background=background,
            connect_timeout_ms=_ms(connect_timeout),
            connect_wait_ms=_ms(connect_wait),
            subscription_ack_timeout_ms=_ms(subscription_ack_timeout),
            outbox=outbox,
            dedup=dedup,
            max_event_age_ms=_ms(max_event_age),
            max_inbound_bytes=max_inbound_bytes,
            token_expired_event=token_expired_event,
            tls=tls,
            proxy=_ffi.ProxyConfig(url=proxy) if isinstance(proxy, str) else proxy,
            signals=signals,
            read_hold_us=None if read_hold is None else max(0, round(read_hold * 1_000_000)),
        )
        self._provider = provider
        self._client = _ffi.Client(config, provider) if hub is None else hub._hub.client(config, provider)
        super().__init__(self._client.main_socket())

    @translated_async
    async def connect(self) -> None:
        """Connects and returns once the main namespace is joined.

        Raises :class:`Unauthorized` when the credentials are refused (also after a fresh
        token), or :class:`ConnectionFailed` if not connected within
        ``connect_wait`` while retries go on in the background.
        """
        await self._client.connect()

    @translated
    def start(self) -> None:
        """Starts connecting in the background and returns at once."""
        self._client.start()

    @translated
    def disconnect(self) -> None:
        """Disconnects and stops retrying until :meth:`connect`; queued emits stay queued."""
        self._client.disconnect()

    @translated_async
    async def close(self) -> None:
        """Closes for good: sends what the connection can still take, ends every stream."""
        await self._client.shutdown()
        if self._provider is not None:
            self._provider.retire()

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def hub_index(self) -> Optional[int]:
        """The number its :class:`Hub` gave it, which hub notices name; ``None`` without a
        hub."""
        return self._client.hub_index()

    @property
    def state(self) -> _ffi.State:
        """The connection state now (``state.is_connected()``, ``State.RECONNECTING``...)."""
        return self._client.state()

    async def states(self) -> AsyncIterator[_ffi.State]:
        """Yields the current state, then every change, until the client is closed."""
        state = self._client.state()
        yield state
        while not state.is_closed():
            state = await self._client.next_state(state)
            yield state

    @translated
    def set_network_available(self, available: bool) -> None:
        """Reachability hint: ``False`` stops retrying (state ``OFFLINE``), ``True``
        reconnects at once."""
        self._client.set_network_available(available)

    @translated_async
    async def enter_background(self, deadline: float) -> _ffi.BackgroundFlush:
        """The app (or the gateway's host) is going to the background: flushes the outbox
        for up to ``deadline`` seconds, then applies the ``background`` policy
        (``BackgroundPolicy.DISCONNECT`` by default: the link closes and nothing is attempted
        until :meth:`enter_foreground`; emits are still stored). Returns how many entries
        were sent and how many remain. Raises :class:`ClientClosed` on a closed client."""
        return await self._client.enter_background(_ms(deadline) or 0)

    @translated
    def enter_foreground(self) -> None:
        """Back in the foreground: connects at once when a connection is wanted."""
        self._client.enter_foreground()

    @translated
    def network_changed(
        self,
        available: bool,
        interface: _ffi.Interface = _ffi.Interface.OTHER,
        *,
        expensive: bool = False,
        constrained: bool = False,
    ) -> None:
        """The network path changed (a gateway on a cellular modem reports its modem's
        state): unavailable stops attempts, a new interface replaces the link at once, an
        expensive or constrained path may hold ``Priority.LOW`` emits (see
        ``OutboxConfig.low_lane_hold``)."""
        path = _ffi.NetworkPath(
            available=available, interface=interface, expensive=expensive, constrained=constrained
        )
        self._client.network_changed(path)

    @translated
    def socket(self, namespace: str) -> Socket:
        """The socket of ``namespace``, joined now and on every reconnect."""
        return Socket(self._client.socket(namespace))

    def events(self, event: Optional[str] = None) -> EventStream:
        """Inbound events from now on: every event on every namespace, or the main
        namespace's events named ``event``."""
        if event is not None:
            return super().events(event)
        return EventStream(self._client.events())

    def notices(self) -> NoticeStream:
        """Lifecycle notices from now on."""
        return NoticeStream(self._client.notices())

    @property
    def outbox(self) -> Outbox:
        """The durable outbox: what is waiting, and tools to inspect or drop it."""
        return Outbox(self._client.outbox())

    @translated_async
    async def metrics(self) -> _ffi.Metrics:
        """Counters, outbox size and latency figures now."""
        return await self._client.metrics()

