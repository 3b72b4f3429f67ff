"""Credentials from a Python callable, asked on every connect and after a refusal."""

from __future__ import annotations

import asyncio
import inspect
import json
import weakref
from typing import Any, Awaitable, Callable, Mapping, Optional, Union

from . import _ffi
from ._ffi import pulselink as _generated

#: What ``auth=`` returns: the Socket.IO auth object (``{"token": ...}``) or ``None``.
AuthObject = Optional[Mapping[str, Any]]
#: ``auth=`` is a mapping, or a callable taking nothing or an :class:`AuthRequest`, plain or
#: ``async``.
Auth = Union[
    Mapping[str, Any],
    Callable[[], Union[AuthObject, Awaitable[AuthObject]]],
    Callable[[_ffi.AuthRequest], Union[AuthObject, Awaitable[AuthObject]]],
]


def _running_loop_first() -> asyncio.AbstractEventLoop:
    """UniFFI's choice of event loop, running loop first.

    The core calls the async provider from its own threads, where no loop runs, so UniFFI
    needs a process-wide loop for it (``uniffi_set_event_loop``). UniFFI 0.32.2 then uses that
    loop for every async call, also from code running in another loop ("Future attached to a
    different loop"); later UniFFI prefers the running loop (uniffi-rs PR #2962). This is that
    rule, until the pinned version has it.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        loop: Optional[asyncio.AbstractEventLoop] = _generated._UNIFFI_GLOBAL_EVENT_LOOP
        if loop is None:
            raise
        return loop


_generated._uniffi_get_event_loop = _running_loop_first

#: The live providers: the process-wide loop is one of theirs while any is left.
_LIVE: "weakref.WeakSet[Provider]" = weakref.WeakSet()


class Provider(_ffi.AuthProvider):
    """The core's async auth provider, answered on the event loop its client was made in.

    The core awaits it without blocking any thread: an ``async`` callable is awaited on the
    loop (a token refresh over HTTP suspends), a plain one is called there directly, so it
    should return at once (a cached token).
    """

    def __init__(self, auth: Callable[..., Any], loop: asyncio.AbstractEventLoop):
        self._auth = auth
        self._loop = loop
        try:
            self._takes_request = len(inspect.signature(auth).parameters) > 0
        except (TypeError, ValueError):  # builtins without a signature
            self._takes_request = False
        _LIVE.add(self)
        _generated.uniffi_set_event_loop(loop)  # type: ignore[arg-type]  # any asyncio loop

    async def auth(self, request: _ffi.AuthRequest) -> Optional[str]:
        if asyncio.get_running_loop() is self._loop:
            return await self._answer(request)
        # Another client's loop runs this call: answer on our own.
        done = asyncio.run_coroutine_threadsafe(self._answer(request), self._loop)
        return await asyncio.wrap_future(done)

    async def _answer(self, request: _ffi.AuthRequest) -> Optional[str]:
        answer = self._auth(request) if self._takes_request else self._auth()
        if inspect.isawaitable(answer):
            answer = await answer
        return None if answer is None else json.dumps(dict(answer))

    def retire(self) -> None:
        """Its client closed: the process-wide loop moves to a live provider's, if any."""
        _LIVE.discard(self)
        if _generated._UNIFFI_GLOBAL_EVENT_LOOP is self._loop:
            others = [p._loop for p in _LIVE if not p._loop.is_closed()]
            _generated.uniffi_set_event_loop(others[0] if others else None)
