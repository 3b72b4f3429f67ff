"""Inbound events as Python objects, and the async iterators that deliver them."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Generic, List, Optional, Protocol, TypeVar

from . import _answers, _args, _ffi
from ._errors import translated

#: Events fetched from the core per call: one crossing of the boundary serves many events.
BATCH = 512


class Event:
    """One inbound event."""

    __slots__ = ("namespace", "event", "args", "id", "_ack")

    def __init__(
        self,
        namespace: str,
        event: str,
        args: List[Any],
        id: Optional[str] = None,
        ack: Optional[_ffi.AckResponder] = None,
    ) -> None:
        #: Namespace it arrived on, e.g. ``"/"``.
        self.namespace = namespace
        #: Event name, e.g. ``"metric:recorded"``.
        self.event = event
        #: Arguments as Python objects; binary attachments are ``bytes``.
        self.args = args
        #: The event's unique id when the protocol carries one: the server's
        #: connection-state-recovery offset (Socket.IO) or the envelope ``id``.
        self.id = id
        self._ack = ack

    def __repr__(self) -> str:
        return f"Event(namespace={self.namespace!r}, event={self.event!r}, args={self.args!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        mine = (self.namespace, self.event, self.args, self.id)
        return mine == (other.namespace, other.event, other.args, other.id)

    __hash__ = None  # type: ignore[assignment]  # args are mutable lists

    @property
    def wants_ack(self) -> bool:
        """True when the server waits for an acknowledgement: answer with :meth:`ack`."""
        return self._ack is not None

    @translated
    def ack(self, *args: Any) -> None:
        """Answers the server's acknowledgement request with ``args`` (``bytes`` travel as
        binary attachments)."""
        if self._ack is None:
            raise ValueError(f"event {self.event!r} did not ask for an acknowledgement")
        text, blobs = _args.encode(args)
        self._ack.send(text, blobs)


def unpack(packed: _ffi.PackedEvents) -> List[Event]:
    """The events of a packed batch: one ``json.loads`` for the whole batch."""
    rows = json.loads(packed.rows_json)
    events = [Event(ns, name, args, id) for ns, name, args, id in rows]
    for extra in packed.extras:
        ev = events[extra.row]
        if extra.attachments:
            ev.args = _args.resolve(ev.args, extra.attachments)
        ev._ack = extra.ack
    return events


T = TypeVar("T")


class _BatchReceiver(Protocol[T]):
    """A core receiver of notices (``NoticeReceiver``, ``HubNoticeReceiver``)."""

    async def next_batch(self, max: int) -> List[T]: ...

    def cancel(self) -> None: ...


class _Stream(Generic[T]):
    """Async iterator over batches pulled from a core receiver; ends when the client closes."""

    def __init__(self) -> None:
        self._buffer: List[T] = []
        self._pos = 0
        self._done = False

    async def _fetch(self) -> List[T]:
        raise NotImplementedError

    def __aiter__(self) -> "_Stream[T]":
        return self

    async def __anext__(self) -> T:
        if self._pos == len(self._buffer):
            if self._done:
                raise StopAsyncIteration
            # Cancelling this await (task cancelled, timeout) loses nothing: the core keeps
            # undelivered events for the next call.
            self._buffer, self._pos = await self._fetch(), 0
            if not self._buffer:
                self._done = True
                raise StopAsyncIteration
        item = self._buffer[self._pos]
        self._pos += 1
        return item


class EventStream(_Stream[Event]):
    """Inbound events for one consumer, from the moment it was created.

    Create it before ``connect()`` to see the first events. Iterate with ``async for``; use
    ``async with`` (or :meth:`close`) to unregister it: a stream nobody reads holds the
    connection back once its buffer is full (backpressure, never loss).
    """

    def __init__(self, receiver: _ffi.EventReceiver) -> None:
        super().__init__()
        self._receiver = receiver

    async def _fetch(self) -> List[Event]:
        answers = _answers.for_running_loop()
        if answers is None:
            return unpack(await self._receiver.next_packed(BATCH))
        # Taken here when events are ready; otherwise the loop's watched socket says when
        # they are (see _answers), and asking again takes them.
        receiver, queue = self._receiver, answers.inner
        while True:
            packed, ready = answers.start(
                lambda token: receiver.next_packed_start(BATCH, queue, token)
            )
            if packed is not None:
                ready.cancel()
                return unpack(packed)
            await ready

    async def batches(self) -> AsyncIterator[List[Event]]:
        """Yields events a batch at a time: cheaper for high-rate telemetry."""
        while True:
            batch = self._buffer[self._pos :] or await self._fetch()
            self._buffer, self._pos = [], 0
            if not batch:
                return
            yield batch

    def close(self) -> None:
        """Stops receiving; an ``async for`` waiting on this stream ends."""
        self._receiver.cancel()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Batches(_Stream[T]):
    """A stream over a receiver that hands out batches and can be cancelled."""

    def __init__(self, receiver: _BatchReceiver[T]) -> None:
        super().__init__()
        self._receiver = receiver

    async def _fetch(self) -> List[T]:
        return await self._receiver.next_batch(64)

    def close(self) -> None:
        """Stops receiving; an ``async for`` waiting on this stream ends."""
        self._receiver.cancel()


class NoticeStream(_Batches[_ffi.Notice]):
    """Lifecycle notices (connected, recovered, disconnected, emit failed, ...)."""


class HubNoticeStream(_Batches[_ffi.HubNotice]):
    """Every notice of a hub's clients, each with its client's number (``notice.client``,
    which is :attr:`Client.hub_index`) and the notice itself (``notice.notice``). It has no
    end while the hub lives: :meth:`close` it when done."""
