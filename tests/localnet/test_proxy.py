"""The fault proxy (``golem_trio.localnet.open_fault_proxy``) in front of a served LocalNet,
over real loopback sockets: daemon faults by operationId (what ``golem-trio bench --backend
yagna`` fires in front of a real daemon), its windows, and requests it cannot read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import pytest
import trio

from golem_trio.localnet import (
    DaemonFault,
    FaultKind,
    FaultProxy,
    LocalNet,
    ProviderSpec,
    open_fault_proxy,
    open_localnet,
)
from golem_trio.localnet.emulator import operation_of


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[LocalNet, FaultProxy]]:
    async with open_localnet([ProviderSpec(name="p0")], serve=True) as net:
        assert net.url is not None
        async with open_fault_proxy(net.url, seed=4) as proxy:
            yield net, proxy


def _client(net: LocalNet, proxy: FaultProxy) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=proxy.url,
        headers={"Authorization": f"Bearer {net.app_key}"},
        timeout=20,
        trust_env=False,
    )


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", "/me", "getIdentity"),
        ("GET", "/version/get", "getVersion"),
        ("POST", "/market-api/v1/demands", "subscribeDemand"),
        ("GET", "/market-api/v1/demands/d-1/events", "collectOffers"),
        ("POST", "/activity-api/v1/activity/a-1/exec", "exec"),
        ("GET", "/activity-api/v1/activity/a-1/exec/b-1", "getExecBatchResults"),
        ("post", "/payment-api/v1/invoices/i-1/accept", "acceptInvoice"),
        ("GET", "/payment-api/v1/nothing-here", None),
        ("DELETE", "/version/get", None),
    ],
)
def test_requests_are_named_by_the_daemons_operation_ids(
    method: str, path: str, operation: str | None
) -> None:
    assert operation_of(method, path) == operation


async def test_a_5xx_fault_hits_its_operation_only(proxied: tuple[LocalNet, FaultProxy]) -> None:
    net, proxy = proxied
    async with _client(net, proxy) as client:
        proxy.daemon = [DaemonFault("getDemands", FaultKind.DAEMON_5XX, 1.0, 503)]
        faulted = await client.get("/market-api/v1/demands")
        assert faulted.status_code == 503
        assert faulted.json() == {"message": "Service Unavailable"}
        assert (await client.get("/me")).status_code == 200
        proxy.daemon = ()
        assert (await client.get("/market-api/v1/demands")).status_code == 200
    assert proxy.injected == {"daemon-5xx": 1}
    assert proxy.forwarded == 2


async def test_an_outage_answers_every_operation_and_ends_when_lifted(
    proxied: tuple[LocalNet, FaultProxy],
) -> None:
    net, proxy = proxied
    async with _client(net, proxy) as client:
        proxy.daemon = [DaemonFault("*", FaultKind.DAEMON_5XX, 1.0, 500)]
        for path in ("/me", "/market-api/v1/demands", "/payment-api/v1/allocations"):
            reply = await client.get(path)
            assert reply.status_code == 500, path
            assert reply.headers["content-type"] == "application/json"
        proxy.daemon = ()
        assert (await client.get("/me")).json()["identity"] == net.requestor.node_id


async def test_draws_below_rate_one_follow_the_seed(proxied: tuple[LocalNet, FaultProxy]) -> None:
    net, _proxy = proxied

    async def statuses(seed: int) -> list[int]:
        assert net.url is not None
        async with open_fault_proxy(net.url, seed=seed) as other, _client(net, other) as client:
            other.daemon = [DaemonFault("getIdentity", FaultKind.DAEMON_5XX, 0.5, 502)]
            return [(await client.get("/me")).status_code for _ in range(40)]

    first, again, third = await statuses(1), await statuses(1), await statuses(2)
    assert first == again
    assert first != third
    assert set(first) == {200, 502}
    assert 5 < first.count(502) < 35


async def test_latency_holds_a_request_then_forwards_it(
    proxied: tuple[LocalNet, FaultProxy],
) -> None:
    net, proxy = proxied
    async with _client(net, proxy) as client:
        proxy.daemon = [DaemonFault("getIdentity", FaultKind.DAEMON_LATENCY, 1.0, 0.3)]
        started = trio.current_time()
        reply = await client.get("/me")
        assert reply.status_code == 200
        assert trio.current_time() - started >= 0.3


async def test_a_stall_without_an_end_holds_until_the_fault_is_lifted(
    proxied: tuple[LocalNet, FaultProxy],
) -> None:
    net, proxy = proxied
    stall = DaemonFault("*", FaultKind.DAEMON_STALL, 1.0, None)
    proxy.daemon = [stall]
    replies: list[int] = []
    async with _client(net, proxy) as client, trio.open_nursery() as nursery:

        async def ask() -> None:
            replies.append((await client.get("/me")).status_code)

        nursery.start_soon(ask)
        await trio.sleep(0.5)
        assert replies == []
        # Another fault joins: the stall is still in force.
        proxy.daemon = [stall, DaemonFault("collectOffers", FaultKind.DAEMON_5XX, 1.0, 503)]
        await trio.sleep(0.5)
        assert replies == []
        proxy.daemon = ()
    assert replies == [200]


async def test_a_window_answers_canned_faults_in_turn(
    proxied: tuple[LocalNet, FaultProxy],
) -> None:
    net, proxy = proxied
    async with _client(net, proxy) as client:
        async with proxy.window(0.0, kinds=["503", "html", "malformed"], routes=["^/me$"]):
            first = await client.get("/me")
            second = await client.get("/me")
            third = await client.get("/me")
            other = await client.get("/version/get")
        assert (first.status_code, second.status_code, third.status_code) == (503, 200, 200)
        assert second.headers["content-type"].startswith("text/html")
        with pytest.raises(json.JSONDecodeError):
            json.loads(third.content)
        assert other.status_code == 200
        assert not proxy.faulting
        assert (await client.get("/me")).status_code == 200
    assert proxy.injected == {"503": 1, "html": 1, "malformed": 1}


@pytest.mark.parametrize(
    "garbage",
    [
        b"HELLO\r\n\r\n",
        b"GET /me HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /me HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
        b"GET /me HTTP/1.1\r\nHost: x\r\n",  # the client goes away before the head ends
    ],
)
async def test_requests_it_cannot_read_are_dropped_and_it_serves_on(
    proxied: tuple[LocalNet, FaultProxy], garbage: bytes
) -> None:
    net, proxy = proxied
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(garbage)
        if garbage.endswith(b"\r\n\r\n"):
            assert await stream.receive_some() == b""
    async with _client(net, proxy) as client:
        assert (await client.get("/me")).status_code == 200


async def test_it_forwards_to_http_only() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        async with open_fault_proxy("https://127.0.0.1:1"):
            pass
