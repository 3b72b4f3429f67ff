"""Arguments between Python objects and the core's JSON text with binary attachments.

Socket.IO carries binary as attachments referenced from the JSON by placeholders
(`{"_placeholder": true, "num": N}`); here they are plain `bytes` anywhere in the arguments.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence, Tuple

_PLACEHOLDER = "_placeholder"
_COMPACT = (",", ":")
# One encoder for every call: `json.dumps` with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=_COMPACT)


def encode(args: Sequence[Any], binary: bool = False) -> Tuple[str, List[bytes]]:
    """Returns the JSON array text of `args` and the binary attachments it references.
    ``binary`` says :func:`encode_plain` refused them already."""
    text = None if binary else encode_plain(list(args))
    if text is not None:
        return text, []
    attachments: List[bytes] = []

    def lift(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            attachments.append(bytes(value))
            return {_PLACEHOLDER: True, "num": len(attachments) - 1}
        if isinstance(value, dict):
            return {k: lift(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [lift(v) for v in value]
        return value

    return _ENCODER.encode([lift(a) for a in args]), attachments


def encode_plain(values: List[Any]) -> Optional[str]:
    """The JSON text of `values`, or ``None`` when binary is among them (at any depth).

    The common case, no binary anywhere, costs one encode at C speed and no walk: ``bytes``
    is not JSON, so the encoder refuses it, and only then are the arguments walked. Anything
    else it cannot encode is refused again, with the same error, by the walk's encode.
    """
    try:
        return _ENCODER.encode(values)
    except TypeError:
        return None


def decode(args_json: str, attachments: Sequence[bytes]) -> List[Any]:
    """Returns the arguments as Python objects, placeholders replaced by their `bytes`."""
    args: List[Any] = json.loads(args_json)
    return resolve(args, attachments) if attachments else args


def resolve(value: Any, attachments: Sequence[bytes]) -> Any:
    """Replaces the placeholders in decoded JSON by their attachments."""
    if isinstance(value, dict):
        num = value.get("num")
        if value.get(_PLACEHOLDER) is True and isinstance(num, int) and 0 <= num < len(attachments):
            return bytes(attachments[num])
        return {k: resolve(v, attachments) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, attachments) for v in value]
    return value
