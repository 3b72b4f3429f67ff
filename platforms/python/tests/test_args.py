"""The shared argument contract (tests/fixtures/args.json), run against the Python wrapper:
the Rust, Kotlin and Swift suites run the same file, so the bindings cannot drift apart."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any, List

import pytest

import pulselink
from pulselink import _args
from pulselink._errors import translated_async

FIXTURE = json.loads((pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "args.json").read_text())


def native(value: Any) -> Any:
    """The fixture's arguments as Python values: ``{"$bytes": b64}`` becomes ``bytes``."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [native(v) for v in value]
    return value


def blobs(encoded: List[str]) -> List[bytes]:
    return [base64.b64decode(b) for b in encoded]


@pytest.mark.parametrize("case", FIXTURE["encode"], ids=lambda c: c["name"])
async def test_arguments_encode_as_the_fixture_says(case: Any) -> None:
    args = native(case["args"])
    text, attachments = _args.encode(args)
    assert json.loads(text) == case["json"]
    assert attachments == blobs(case["attachments"])
    # Decoding gives the arguments back, bytes included.
    assert _args.decode(text, attachments) == args
    # And the core takes them: queued in an offline client's outbox.
    client = pulselink.Client("http://127.0.0.1:9")
    await client.emit("e", *args)
    assert (await client.outbox.stats()).pending == 1
    await client.close()


@pytest.mark.parametrize("case", FIXTURE["refuse"], ids=lambda c: c["name"])
async def test_the_core_refuses_what_the_fixture_refuses(case: Any) -> None:
    client = pulselink.Client("http://127.0.0.1:9")
    # Below the encoder: the core's own check, as every binding reaches it.
    emit = translated_async(client._client.main_socket().emit)
    with pytest.raises(pulselink.InvalidArgs):
        await emit("e", case["json"], blobs(case["attachments"]))
    await client.close()


@pytest.mark.parametrize("call", FIXTURE["no_binary"])
async def test_calls_that_carry_json_only_refuse_binary(call: str) -> None:
    client = pulselink.Client("http://127.0.0.1:9")
    with pytest.raises(pulselink.InvalidArgs, match="binary"):
        await getattr(client, call)("room:subscribe", {"frame": b"\x01"})
    await client.close()
