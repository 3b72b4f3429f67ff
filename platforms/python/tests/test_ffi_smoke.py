"""The generated Python binding drives the Rust core against the official server."""
import asyncio
import json

import pulselink


def test_connect_emit_ack_events_close(server_url):
    async def scenario():
        config = pulselink.ClientConfig(
            url=server_url, namespaces=[], auth_json=json.dumps({"token": "py"})
        )
        client = pulselink.Client(config)
        await client.connect()
        assert client.state() == pulselink.State.CONNECTED()
        reply = await client.emit_with_ack("quiz:answer_submit", json.dumps(["A"]), 5000)
        assert json.loads(reply) == [{"ok": True, "answer": "A", "namespace": "/"}]
        events = await client.next_events(10)
        assert events[0].name == "welcome"
        assert json.loads(events[0].args_json)[0]["auth"] == {"token": "py"}
        await client.close()
        assert client.state() == pulselink.State.CLOSED()

    asyncio.run(scenario())


def test_bad_input_raises_clear_errors():
    try:
        pulselink.Client(pulselink.ClientConfig(url="nope", namespaces=[], auth_json=None))
    except pulselink.PulselinkError.InvalidConfig as e:
        assert "url" in str(e)
    else:
        raise AssertionError("an invalid URL must raise InvalidConfig")

    async def bad_args():
        c = pulselink.Client(
            pulselink.ClientConfig(url="http://127.0.0.1:1", namespaces=[], auth_json=None)
        )
        try:
            await c.emit("x", "{not an array}")
        except pulselink.PulselinkError.InvalidArgs:
            pass
        else:
            raise AssertionError("non-array args must raise InvalidArgs")
        finally:
            await c.close()

    asyncio.run(bad_args())
