"""Python exceptions for the core's errors: typed, catchable by kind, and related to the
built-in exceptions where one fits (``AckTimeout`` is a ``TimeoutError``)."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Dict, NoReturn, TypeVar

from . import _ffi


class PulselinkError(Exception):
    """Base of every error Pulselink raises; the message says what happened."""


class InvalidConfig(PulselinkError, ValueError):
    """A configuration value is invalid; the message names the field."""


class InvalidArgs(PulselinkError, ValueError):
    """Emit arguments could not be encoded."""


class OutboxFull(PulselinkError):
    """The outbox is at its limit and its overflow policy is ``REJECT``; nothing queued was
    lost."""


class Expired(PulselinkError):
    """The emit's TTL passed before it could be delivered."""


class StorageError(PulselinkError, OSError):
    """The outbox store failed (disk full, unreadable file); the emit was not accepted."""


class AckTimeout(PulselinkError, TimeoutError):
    """No acknowledgement in time; the emit stays queued and is still delivered."""


class Disconnected(PulselinkError, ConnectionError):
    """The connection ended while waiting."""


class Unauthorized(PulselinkError, PermissionError):
    """The server refused the credentials, also after a fresh token."""


class Rejected(PulselinkError):
    """The server answered the request with a failure (envelope protocol); it is not sent
    again. The message carries the server's code and message."""


class ConnectionFailed(PulselinkError, ConnectionError):
    """Not connected in time; retries go on in the background."""


class ProxyError(ConnectionFailed):
    """The proxy did not open the way to the server: unreachable, credentials missing or
    refused, or it would not connect to the server. The message names the proxy, never its
    password; retries go on unless reconnecting is off."""


class Removed(PulselinkError):
    """The app removed the entry from the outbox before it was acknowledged."""


class ClientClosed(PulselinkError):
    """The client is closed."""


class InternalError(PulselinkError):
    """A bug in Pulselink: please report it with the message."""


_BY_VARIANT: Dict[str, type[PulselinkError]] = {
    "InvalidConfig": InvalidConfig,
    "InvalidArgs": InvalidArgs,
    "OutboxFull": OutboxFull,
    "Expired": Expired,
    "Removed": Removed,
    "Storage": StorageError,
    "AckTimeout": AckTimeout,
    "Disconnected": Disconnected,
    "Unauthorized": Unauthorized,
    "Rejected": Rejected,
    "Connection": ConnectionFailed,
    "Proxy": ProxyError,
    "Closed": ClientClosed,
    "Internal": InternalError,
}


def translate(e: _ffi.PulselinkError) -> PulselinkError:
    """The Python exception for a core error."""
    return _BY_VARIANT.get(type(e).__name__, PulselinkError)(str(e))


def _raise(e: _ffi.PulselinkError) -> NoReturn:
    raise translate(e) from None


F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A", bound=Callable[..., Awaitable[Any]])


def translated(f: F) -> F:
    """Raises the Python exception for a core error thrown by ``f``."""

    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except _ffi.PulselinkError as e:
            _raise(e)

    return call  # type: ignore[return-value]


def translated_async(f: A) -> A:
    """``translated`` for coroutine functions."""

    @functools.wraps(f)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await f(*args, **kwargs)
        except _ffi.PulselinkError as e:
            _raise(e)

    return call  # type: ignore[return-value]
