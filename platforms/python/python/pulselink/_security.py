"""Certificate pins for :class:`TlsConfig`."""

from __future__ import annotations

from . import _ffi
from ._errors import translated


@translated
def certificate_pins(pem: str) -> list[str]:
    """The pin (``sha256/<base64>`` of the public key) of each certificate in ``pem``, in
    order: what to put in ``TlsConfig(pins=...)``. Raises :class:`InvalidArgs` for text that
    holds no certificate."""
    return _ffi.certificate_pins(pem)
