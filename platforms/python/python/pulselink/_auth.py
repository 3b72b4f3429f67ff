"""Credentials from a Python callable, asked on every connect and after a refusal."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Awaitable, Callable, Mapping, Optional, Union

from . import _ffi

#: What ``auth=`` returns: the Socket.IO auth object (``{"token": ...}``) or ``None``.
AuthObject = Optional[Mapping[str, Any]]
#: ``auth=`` is a mapping, or a callable taking nothing or an :class:`AuthRequest`, plain or
#: ``async``.
Auth = Union[
    Mapping[str, Any],
    Callable[[], Union[AuthObject, Awaitable[AuthObject]]],
    Callable[[_ffi.AuthRequest], Union[AuthObject, Awaitable[AuthObject]]],
]

#: Longest an ``async`` provider may take before the attempt counts as failed.
ASYNC_AUTH_TIMEOUT = 30.0


class Provider(_ffi.AuthProvider):
    """Calls the app's callable on the core's background thread.

    A plain callable runs there directly (blocking is fine); an ``async`` one runs on the
    event loop the client was created on.
    """

    def __init__(self, auth: Callable[..., Any], loop: Optional[asyncio.AbstractEventLoop]):
        self._auth = auth
        self._loop = loop
        try:
            self._takes_request = len(inspect.signature(auth).parameters) > 0
        except (TypeError, ValueError):  # builtins without a signature
            self._takes_request = False

    def auth(self, request: _ffi.AuthRequest) -> Optional[str]:
        answer = self._auth(request) if self._takes_request else self._auth()
        if inspect.isawaitable(answer):
            if self._loop is None:
                raise RuntimeError("an async auth provider needs a Client created in a running event loop")
            answer = asyncio.run_coroutine_threadsafe(_awaited(answer), self._loop).result(
                ASYNC_AUTH_TIMEOUT
            )
        return None if answer is None else json.dumps(dict(answer))


async def _awaited(answer: Awaitable[Any]) -> Any:
    return await answer
