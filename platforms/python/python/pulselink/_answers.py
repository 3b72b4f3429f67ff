"""Acknowledgements and inbound events the event loop collects from a socket it watches.

Awaiting one of the core's async calls resumes the coroutine through a callback that a Rust
thread makes into Python, once per poll: a Python thread state made and torn down, the GIL,
and a write to the loop's self-pipe each time. An acknowledgement comes a network round trip
after its emit, so that bridge was most of what an ``emit_with_ack`` paid on top of the round
trip, and it was paid again by every batch of inbound events a stream waited for. Instead,
the core queues each answer under a token and writes a byte to a socket this module watches
with ``add_reader``; one call takes every answer that is ready.

An event loop that cannot watch a descriptor (the proactor loop on Windows), or a build of the
core without ``Answers`` (not Unix), keeps the async calls: :func:`for_running_loop` says which.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from . import _ffi
from ._errors import translate


T = TypeVar("T")


class Answers:
    """The answers of one event loop's calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = _ffi.Answers()  # type: ignore[no-untyped-call]
        self._waiting: Dict[int, "asyncio.Future[Any]"] = {}
        self._tokens = itertools.count(1)
        # The loop keeps this object (through the reader) and not the other way round, and a
        # cancelled wait forgets its token, so both go when the loop does.
        loop.add_reader(self.inner.fd(), self._collect)

    def start(self, call: Callable[[int], T]) -> Tuple[T, "asyncio.Future[Any]"]:
        """Makes ``call`` with a new token; returns what it returned and the future its answer
        resolves. Cancel that future when nobody will wait for it (the call answered at once).
        """
        token = next(self._tokens)
        # Registered after the call: answers are collected on this thread, by the loop, so
        # none can come in between, and a call that raises leaves nothing behind.
        result = call(token)
        answer: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._waiting[token] = answer
        # A cancelled wait lets go of its token at once: its answer may come after the loop
        # stopped collecting, and the waiting future would keep the loop alive.
        answer.add_done_callback(lambda f: self._waiting.pop(token, None) if f.cancelled() else None)
        return result, answer

    def _collect(self) -> None:
        # Every answer taken is settled here: no second wake-up comes for them.
        for a in self.inner.take():
            answer = self._waiting.pop(a.token, None)
            # Gone or done: the caller was cancelled, and the answer has nobody to go to.
            if answer is None or answer.done():
                continue
            outcome = a.outcome
            if isinstance(outcome, _ffi.Outcome.ACKED):
                answer.set_result(outcome.reply)
            elif isinstance(outcome, _ffi.Outcome.FAILED):
                answer.set_exception(translate(outcome.error))
            else:
                answer.set_result(None)  # READY: asking again takes what is ready


_BY_LOOP: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Optional[Answers]]" = (
    weakref.WeakKeyDictionary()
)


def for_running_loop() -> Optional[Answers]:
    """The running loop's answers, or ``None`` where it cannot watch a descriptor."""
    loop = asyncio.get_running_loop()
    try:
        return _BY_LOOP[loop]
    except KeyError:
        pass
    answers: Optional[Answers] = None
    if hasattr(_ffi, "Answers"):
        try:
            answers = Answers(loop)
        except NotImplementedError:
            answers = None
    _BY_LOOP[loop] = answers
    return answers
