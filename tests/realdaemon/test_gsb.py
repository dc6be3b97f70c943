"""The GSB client (``golem_trio.gsb``) against the real yagna daemon's bus."""

from __future__ import annotations

import uuid

import pytest
import trio

from golem_trio.gsb import GsbBus, GsbCallError, GsbRegisterError, open_gsb
from golem_trio.localnet.yagna import YagnaNode

TEST_DEADLINE = 40.0


async def _refused(bus: GsbBus, address: str) -> GsbCallError:
    """Call ``address`` until the bus refuses it (the service is gone); the refusal. Each try
    is bounded: a call the router forwarded to the closed connection before it noticed the
    close gets no reply at all."""
    while True:
        with trio.move_on_after(2):
            try:
                await bus.call(address, {})
            except GsbCallError as exc:
                return exc
        await trio.sleep(0.05)


async def test_calls_a_daemon_service(yagna_node: YagnaNode) -> None:
    with trio.fail_after(TEST_DEADLINE):
        async with open_gsb(yagna_node.gsb_url, name="golem-trio-test") as bus:
            reply = await bus.call("/local/identity/List", {})
            assert isinstance(reply, dict)
            ids = {entry["nodeId"] for entry in reply["Ok"]}
            assert {yagna_node.requestor_id, yagna_node.provider_id} <= ids

            # The daemon's own errors are serde Results with camelCase variants.
            state = {"state": ["Initialized", None], "reason": None, "errorMessage": None}
            missing = await bus.call(
                "/local/activity/SetActivityState",
                {"activityId": "no-such", "state": state, "timeout": None, "credentials": None},
            )
            assert set(missing) == {"Err"}
            assert "service" in missing["Err"]

            with pytest.raises(GsbCallError) as caught:
                await bus.call(f"/public/nothing-{uuid.uuid4().hex}/Call", {})
            assert caught.value.code == 400


async def test_register_serve_stream_and_unregister(yagna_node: YagnaNode) -> None:
    service = f"/public/golem-trio-test-{uuid.uuid4().hex[:12]}"
    seen: list[tuple[str, str, object]] = []

    async def echo(component: str, caller: str, payload: object) -> object:
        await trio.lowlevel.checkpoint()
        seen.append((component, caller, payload))
        if component == "Fail":
            raise ValueError("asked to fail")
        return {"Ok": {"component": component, "payload": payload}}

    async def count(component: str, caller: str, payload: object) -> object:
        assert isinstance(payload, dict)
        send, receive = trio.open_memory_channel[object](100)
        async with send:
            for i in range(payload["n"]):
                await send.send({"Ok": i})
        return receive

    with trio.fail_after(TEST_DEADLINE):
        async with (
            open_gsb(yagna_node.gsb_url, name="server") as server,
            open_gsb(yagna_node.gsb_url, name="client") as client,
        ):
            server.serve(service, echo)
            server.serve(f"{service}/stream", count)
            await server.register(service)
            with pytest.raises(GsbRegisterError) as conflict:
                await client.register(service)
            assert conflict.value.code == 409

            reply = await client.call(f"{service}/Hello", {"x": [1, 2.5, "three", None, True]})
            assert reply == {
                "Ok": {"component": "Hello", "payload": {"x": [1, 2.5, "three", None, True]}}
            }
            assert seen[0][:2] == ("Hello", "client")

            with pytest.raises(GsbCallError) as failed:
                await client.call(f"{service}/Fail", {})
            assert failed.value.code == 500
            assert "asked to fail" in failed.value.message

            async with client.call_streaming(f"{service}/stream", {"n": 5}) as items:
                got = [item async for item in items]
            assert got == [{"Ok": i} for i in range(5)]

            await server.unregister(service)
            with pytest.raises(GsbCallError) as gone:
                await client.call(f"{service}/Hello", {})
            assert gone.value.code == 400
            with pytest.raises(GsbRegisterError) as again:
                await server.unregister(service)
            assert again.value.code == 404


async def test_a_closed_connection_unregisters_its_services(yagna_node: YagnaNode) -> None:
    service = f"/public/golem-trio-test-{uuid.uuid4().hex[:12]}"

    async def ok(component: str, caller: str, payload: object) -> object:
        await trio.lowlevel.checkpoint()
        return {"Ok": None}

    with trio.fail_after(TEST_DEADLINE):
        async with open_gsb(yagna_node.gsb_url, name="client") as client:
            async with open_gsb(yagna_node.gsb_url, name="server") as server:
                server.serve(service, ok)
                await server.register(service)
                assert await client.call(f"{service}/Ping", {}) == {"Ok": None}
            # The router drops the services of a closed connection (a hang bound only: the
            # router may take a while on a loaded machine).
            with trio.fail_after(20):
                exc = await _refused(client, f"{service}/Ping")
            assert exc.code in (400, 500)
