"""Certificate pins for :class:`TlsConfig` and keys for an encrypted outbox."""

from __future__ import annotations

from . import _ffi
from ._errors import translated


@translated
def certificate_pins(pem: str) -> list[str]:
    """The pin (``sha256/<base64>`` of the public key) of each certificate in ``pem``, in
    order: what to put in ``TlsConfig(pins=...)``. Raises :class:`InvalidArgs` for text that
    holds no certificate."""
    return _ffi.certificate_pins(pem)


@translated
def generate_outbox_key() -> _ffi.OutboxKey:
    """A fresh random key for ``Client(encryption_key=...)``. Keep
    ``key.to_base64()`` in the platform keystore: without it the outbox does not open."""
    return _ffi.OutboxKey.generate()


@translated
def outbox_key(text: str) -> _ffi.OutboxKey:
    """The outbox key written as base64 (``key.to_base64()``) or 64 hex digits. Raises
    :class:`InvalidConfig` for anything else, without echoing it."""
    return _ffi.OutboxKey.parse(text)
