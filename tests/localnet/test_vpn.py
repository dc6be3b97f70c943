"""The emulated net (VPN) API: every REST call in both layouts through the project's client, and
the websocket TCP bridge end to end over a real socket, to trio TCP servers on loopback."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import attrs
import httpx2
import pytest
import trio
from httpx2.websockets import WebSocketDisconnect, WebSocketUpgradeError
from starlette.applications import Starlette

from golem_trio.localnet._server import serve_asgi
from golem_trio.localnet.emulator import (
    Activity,
    ActivityState,
    Daemon,
    ExeUnitState,
    Ids,
    MarketState,
    NetClock,
    NodeIdentity,
    VpnState,
    build_app,
    vpn_routes,
)
from golem_trio.localnet.providers import ScriptedRuntime
from golem_trio.yagna import (
    ApiConfig,
    BadRequest,
    Conflict,
    NewNetwork,
    NotFound,
    Unauthorized,
    YagnaClient,
)
from golem_trio.yagna._errors import Forbidden
from golem_trio.yagna._net import NetApi

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PROVIDER = "0x" + "ab" * 20
OTHER_PROVIDER = "0x" + "cd" * 20
LAYOUTS = ["v1", "v2"]


@attrs.define
class Setup:
    daemon: Daemon
    vpn: VpnState
    requestor: NodeIdentity
    app: Starlette
    #: What the test resolver answers: ``(network id, ip, port) -> (host, port)``.
    targets: dict[tuple[str, str, int], tuple[str, int]] = attrs.field(factory=dict)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with trio.open_nursery() as nursery:
        daemon = Daemon(NetClock(EPOCH), Ids(5), nursery)
        requestor = daemon.add_identity("requestor")
        targets: dict[tuple[str, str, int], tuple[str, int]] = {}
        vpn = VpnState(daemon, resolver=lambda net, ip, port: targets.get((net, ip, port)))
        app = build_app(daemon, vpn_routes(daemon, vpn))
        yield Setup(daemon, vpn, requestor, app, targets)
        nursery.cancel_scope.cancel()


def client(setup: Setup, key: str | None = None, url: str = "http://localnet") -> YagnaClient:
    config = ApiConfig(app_key=key or setup.requestor.app_key, api_url=url)
    transport = httpx2.ASGITransport(app=setup.app) if url == "http://localnet" else None
    return YagnaClient(config, transport=transport)


def layout(yagna: YagnaClient, which: str) -> NetApi:
    return yagna.net if which == "v1" else yagna.net_v2


# --- REST -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", LAYOUTS)
async def test_network_life_in_both_layouts(setup: Setup, which: str) -> None:
    async with client(setup) as yagna:
        net = layout(yagna, which)
        assert net.layout == which
        created = await net.create_network(NewNetwork("192.168.0.0/24"))
        assert created.ip == "192.168.0.0/24"
        assert created.mask == "255.255.255.0"
        assert created.gateway == "192.168.0.1"
        assert created.id is not None
        assert len(created.id) == 32
        other = await net.create_network(
            NewNetwork("10.0.0.0", mask="255.255.0.0", gateway="10.0.0.254")
        )
        assert (other.ip, other.mask, other.gateway) == ("10.0.0.0/16", "255.255.0.0", "10.0.0.254")
        assert [n.id for n in await net.get_networks()] == [created.id, other.id]
        assert await net.get_network(created.id) == created

        # The gateway is listed from the start; the requestor takes the first host.
        assert [a.ip for a in await net.get_addresses(created.id)] == ["192.168.0.1/24"]
        await net.add_address(created.id, "192.168.0.1")
        await net.add_address(created.id, "192.168.0.7")
        with pytest.raises(Conflict):
            await net.add_address(created.id, "192.168.0.7")
        with pytest.raises(BadRequest):
            await net.add_address(created.id, "192.168.1.7")
        assert [a.ip for a in await net.get_addresses(created.id)] == [
            "192.168.0.1/24",
            "192.168.0.7/24",
        ]

        await net.add_node(created.id, PROVIDER, "192.168.0.2")
        await net.add_node(created.id, PROVIDER, "192.168.0.2")  # the same again: no change
        await net.add_node(created.id, OTHER_PROVIDER, "192.168.0.3")
        with pytest.raises(Conflict):
            await net.add_node(created.id, OTHER_PROVIDER, "192.168.0.2")
        with pytest.raises(Conflict):
            await net.add_node(created.id, OTHER_PROVIDER, "192.168.0.7")
        with pytest.raises(BadRequest):
            await net.add_node(created.id, OTHER_PROVIDER, "172.16.0.2")
        nodes = await net.get_nodes(created.id)
        assert [(n.id, n.ip) for n in nodes] == [
            (PROVIDER, "192.168.0.2"),
            (OTHER_PROVIDER, "192.168.0.3"),
        ]
        await net.remove_node(created.id, PROVIDER)
        await net.remove_node(created.id, PROVIDER)  # gone already: still 200
        assert [n.id for n in await net.get_nodes(created.id)] == [OTHER_PROVIDER]

        with pytest.raises(NotFound):
            await net.get_connections(created.id)

        await net.remove_network(created.id)
        for call in (net.remove_network, net.get_network, net.get_addresses, net.get_nodes):
            with pytest.raises(NotFound):
                await call(created.id)
        with pytest.raises(NotFound):
            await net.add_node(created.id, PROVIDER, "192.168.0.2")
        assert [n.id for n in await net.get_networks()] == [other.id]

        status = await net.get_status()
        assert status.node_id == setup.requestor.node_id
        assert status.sessions == 0


async def test_raw_answers_match_the_daemon(setup: Setup) -> None:
    auth = {"Authorization": f"Bearer {setup.requestor.app_key}"}
    transport = httpx2.ASGITransport(app=setup.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://localnet") as raw:
        for prefix in ("/net-api/v1", "/net-api/v2/vpn"):
            r = await raw.post(f"{prefix}/net", json={"ip": "192.168.8.0"}, headers=auth)
            assert r.status_code == 200
            body = r.json()
            assert body == {
                "id": body["id"],
                "ip": "192.168.8.0/24",
                "mask": "255.255.255.0",
                "gateway": "192.168.8.1",
            }
            net = f"{prefix}/net/{body['id']}"
            r = await raw.post(f"{net}/addresses", json={"ip": "192.168.8.1"}, headers=auth)
            assert (r.status_code, r.text) == (200, "null")
            r = await raw.post(
                f"{net}/nodes", json={"id": PROVIDER, "ip": "192.168.8.2"}, headers=auth
            )
            assert (r.status_code, r.text) == (200, "null")
            r = await raw.post(f"{net}/addresses", json={"ip": "192.168.8.2"}, headers=auth)
            assert r.status_code == 409
            assert r.json() == {"message": "IP address taken: 192.168.8.2"}
            r = await raw.get(f"{net}/tcp", headers=auth)
            assert (r.status_code, r.content) == (404, b"")
            # A plain GET (no upgrade) on the websocket path.
            r = await raw.get(f"{net}/tcp/192.168.8.2/80", headers=auth)
            assert (r.status_code, r.content) == (400, b"")
            r = await raw.get(f"{net}/tcp/192.168.8.2/99999", headers=auth)
            assert r.status_code == 404
            r = await raw.delete(f"{net}/nodes/{PROVIDER}", headers=auth)
            assert (r.status_code, r.text) == (200, "null")
            r = await raw.delete(net, headers=auth)
            assert (r.status_code, r.text) == (200, "null")
            r = await raw.delete(net, headers=auth)
            assert r.status_code == 404
            assert r.json() == {"message": "Network not found"}
        r = await raw.get("/net-api/v2/net/status", headers=auth)
        assert r.json() == {"nodeId": setup.requestor.node_id, "publicIp": None, "sessions": 0}
        r = await raw.get("/net-api/v1/net")
        assert (r.status_code, r.text) == (401, "Missing application key")
        assert r.headers["content-type"].startswith("text/plain")
        r = await raw.get(f"/net-api/v1/net?authToken={setup.requestor.app_key}")
        assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ip": 7},
        {"ip": "192.168.0"},
        {"ip": "192.168.0.0/x"},
        {"ip": "192.168.0.0/33"},
        {"ip": "192.168.0.0", "mask": "255.0.255.0"},
        {"ip": "192.168.0.0/16", "mask": "255.255.255.0"},
        {"ip": "192.168.0.0", "gateway": "gw"},
        [],
    ],
)
async def test_bad_networks_are_400(setup: Setup, body: Any) -> None:
    auth = {"Authorization": f"Bearer {setup.requestor.app_key}"}
    transport = httpx2.ASGITransport(app=setup.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://localnet") as raw:
        r = await raw.post("/net-api/v1/net", json=body, headers=auth)
        assert r.status_code == 400, body
        assert isinstance(r.json()["message"], str)
        r = await raw.post("/net-api/v1/net", content=b"{", headers=auth)
        assert r.status_code == 400


async def test_keys_and_owners(setup: Setup) -> None:
    stranger = setup.daemon.add_identity("stranger")
    async with client(setup) as yagna, client(setup, stranger.app_key) as theirs:
        net = await yagna.net.create_network(NewNetwork("192.168.0.0/24"))
        assert net.id is not None
        assert await theirs.net.get_networks() == []
        with pytest.raises(Forbidden):
            await theirs.net.get_network(net.id)
        with pytest.raises(Forbidden):
            await theirs.net_v2.add_node(net.id, PROVIDER, "192.168.0.2")
        with pytest.raises(NotFound):
            await theirs.net.get_nodes("0" * 32)
    async with client(setup, "not-a-key") as wrong:
        with pytest.raises(Unauthorized):
            await wrong.net.get_networks()
        with pytest.raises(Unauthorized):
            await wrong.net_v2.create_network(NewNetwork("192.168.0.0/24"))


async def test_ledger(setup: Setup) -> None:
    me = setup.requestor.node_id
    net = setup.vpn.create_network(me, {"ip": "192.168.3.0/24"})
    setup.vpn.add_node(me, net["id"], {"id": PROVIDER, "ip": "192.168.3.2"})
    gone = setup.vpn.create_network(me, {"ip": "10.1.0.0/16"})
    setup.vpn.remove_network(me, gone["id"])
    assert setup.vpn.ledger() == [
        {
            **net,
            "ownerId": me,
            "removed": False,
            "nodes": [{"id": PROVIDER, "ip": "192.168.3.2"}],
        },
        {**gone, "ownerId": me, "removed": True, "nodes": []},
    ]


# --- the default resolver -------------------------------------------------------------------------


class VpnRuntime(ScriptedRuntime):
    """A scripted runtime that also hands VPN ports off, as the local runtime does."""

    def __init__(self, ports: dict[int, int]) -> None:
        super().__init__({})
        self.ports = ports

    def vpn_endpoint(self, vpn_port: int) -> tuple[str, int] | None:
        port = self.ports.get(vpn_port)
        return None if port is None else ("127.0.0.1", port)


async def test_default_resolver_finds_the_nodes_live_activity(setup: Setup) -> None:
    daemon = setup.daemon
    me = setup.requestor.node_id
    activities = ActivityState(daemon, MarketState(daemon), lambda ctx: ScriptedRuntime({}))
    vpn = VpnState(daemon, activities)
    net = vpn.create_network(me, {"ip": "192.168.0.0/24"})["id"]
    vpn.add_node(me, net, {"id": PROVIDER, "ip": "192.168.0.2"})
    vpn.add_node(me, net, {"id": OTHER_PROVIDER, "ip": "192.168.0.3"})

    def add(activity_id: str, provider: str, runtime: Any, requestor: str = me) -> Activity:
        activity = Activity(activity_id, "agr", requestor, provider, runtime)
        activity.state = ExeUnitState.READY
        activities.activities[activity_id] = activity
        return activity

    # The scripted runtime has no VPN ports: nothing answers.
    add("a0", PROVIDER, ScriptedRuntime({}))
    assert vpn.endpoint(net, "192.168.0.2", 80) is None
    old = add("a1", PROVIDER, VpnRuntime({80: 40001}))
    add("a2", PROVIDER, VpnRuntime({80: 40002}))
    add("a3", OTHER_PROVIDER, VpnRuntime({80: 40003}))
    add("a4", PROVIDER, VpnRuntime({80: 40004}), requestor="0x" + "ee" * 20)
    assert vpn.endpoint(net, "192.168.0.2", 80) == ("127.0.0.1", 40002)
    assert vpn.endpoint(net, "192.168.0.3", 80) == ("127.0.0.1", 40003)
    assert vpn.endpoint(net, "192.168.0.2", 22) is None
    assert vpn.endpoint(net, "192.168.0.9", 80) is None
    assert vpn.endpoint(net, "not-an-ip", 80) is None
    assert vpn.endpoint("0" * 32, "192.168.0.2", 80) is None
    activities.activities["a2"].state = ExeUnitState.TERMINATED
    assert vpn.endpoint(net, "192.168.0.2", 80) == ("127.0.0.1", 40001)
    old.state = ExeUnitState.TERMINATED
    assert vpn.endpoint(net, "192.168.0.2", 80) is None
    # Without activities, nothing answers.
    assert VpnState(daemon).endpoint(net, "192.168.0.2", 80) is None


# --- the websocket bridge -------------------------------------------------------------------------


@attrs.define
class Service:
    """A loopback TCP server: echoes, or greets and hangs up; records what it saw."""

    mode: Literal["echo", "greet"] = "echo"
    port: int = 0
    received: bytearray = attrs.field(factory=bytearray)
    ended: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            if self.mode == "greet":
                await stream.send_all(b"hello, and goodbye\n")
                return
            while data := await stream.receive_some(65536):
                self.received += data
                await stream.send_all(data)
        self.ended.set()


@pytest.fixture
async def served(setup: Setup) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, setup.app, "127.0.0.1", 0)
        yield binds[0]
        nursery.cancel_scope.cancel()


async def start_service(nursery: trio.Nursery, mode: Literal["echo", "greet"]) -> Service:
    service = Service(mode)
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, service.handle, 0, host="127.0.0.1")
    )
    service.port = listeners[0].socket.getsockname()[1]
    return service


async def vpn_with_node(yagna: YagnaClient, setup: Setup, service: Service) -> str:
    network = await yagna.net.create_network(NewNetwork("192.168.0.0/24"))
    assert network.id is not None
    await yagna.net.add_address(network.id, "192.168.0.1")
    await yagna.net.add_node(network.id, PROVIDER, "192.168.0.2")
    setup.targets[(network.id, "192.168.0.2", 80)] = ("127.0.0.1", service.port)
    return network.id


@pytest.mark.parametrize("which", LAYOUTS)
async def test_bridge_carries_bytes_both_ways(setup: Setup, served: str, which: str) -> None:
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "echo")
        async with client(setup, url=served) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
            net = layout(yagna, which)
            assert net.tcp_url(net_id, "192.168.0.2", 80).startswith("ws://127.0.0.1:")
            with trio.fail_after(10):
                async with net.connect_tcp(net_id, "192.168.0.2", 80) as ws:
                    await ws.send_bytes(b"ping")
                    assert await ws.receive_bytes() == b"ping"
                    await ws.send_text("text too")
                    assert await ws.receive_bytes() == b"text too"
                    # A large payload in 64 KiB chunks, as yapapi's proxy writes it.
                    payload = bytes(range(256)) * 4096 + b"end"
                    echoed = bytearray()
                    async with trio.open_nursery() as inner:

                        async def send() -> None:
                            for start in range(0, len(payload), 65536):
                                await ws.send_bytes(payload[start : start + 65536])

                        inner.start_soon(send)
                        while len(echoed) < len(payload):
                            echoed += await ws.receive_bytes()
                    assert bytes(echoed) == payload
                    assert service.received == b"pingtext too" + payload
                # The client closed: the service's connection ends.
                await service.ended.wait()
        assert service.connections == 1
        nursery.cancel_scope.cancel()


async def test_service_closing_closes_the_websocket(setup: Setup, served: str) -> None:
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "greet")
        async with client(setup, url=served) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
            with trio.fail_after(10):
                async with yagna.net.connect_tcp(net_id, "192.168.0.2", 80) as ws:
                    assert await ws.receive_bytes() == b"hello, and goodbye\n"
                    with pytest.raises(WebSocketDisconnect) as closed:
                        await ws.receive_bytes()
                    assert closed.value.code == 1000
        nursery.cancel_scope.cancel()


async def test_removing_the_network_closes_its_connections(setup: Setup, served: str) -> None:
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "echo")
        async with client(setup, url=served) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
            with trio.fail_after(10):
                async with yagna.net_v2.connect_tcp(net_id, "192.168.0.2", 80) as ws:
                    await ws.send_bytes(b"x")
                    assert await ws.receive_bytes() == b"x"
                    await yagna.net.remove_network(net_id)
                    with pytest.raises(WebSocketDisconnect) as closed:
                        await ws.receive_bytes()
                    assert closed.value.code == 1001
                await service.ended.wait()
        nursery.cancel_scope.cancel()


async def upgrade(url: str, key: str | None = None) -> tuple[int, bytes]:
    """Ask for a websocket upgrade by hand and read the refusal (status, body).

    ``httpx2``'s websocket client closes a refused upgrade's response before it can be read,
    so the daemon's error body is checked this way."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx2.AsyncClient() as raw:
        response = await raw.get(url, headers=headers)
        return response.status_code, response.content


async def test_refused_connections(setup: Setup, served: str) -> None:
    key = setup.requestor.app_key
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "echo")
        async with client(setup, url=served) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
        # The resolver points at a closed port.
        closed_port = trio.socket.socket()
        await closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        closed_port.close()
        setup.targets[(net_id, "192.168.0.2", 82)] = ("127.0.0.1", port)
        for prefix in ("/net-api/v1", "/net-api/v2/vpn"):
            net = f"{served}{prefix}/net/{net_id}"
            with trio.fail_after(10):
                # No node at that address: the daemon's connect times out (504, empty body).
                assert await upgrade(f"{net}/tcp/192.168.0.9/80", key) == (504, b"")
                # A node, but nothing listens on that port, or the port is closed.
                assert await upgrade(f"{net}/tcp/192.168.0.2/81", key) == (504, b"")
                assert await upgrade(f"{net}/tcp/192.168.0.2/82", key) == (504, b"")
                status, body = await upgrade(f"{served}{prefix}/net/{'0' * 32}/tcp/1.2.3.4/80", key)
                assert (status, json.loads(body)) == (404, {"message": "Network not found"})
                status, body = await upgrade(f"{net}/tcp/not-an-ip/80", key)
                assert status == 400
                assert json.loads(body)["message"].startswith("Invalid IP address")
                assert await upgrade(f"{net}/tcp/192.168.0.2/80") == (
                    401,
                    b"Missing application key",
                )
                assert await upgrade(f"{net}/tcp/192.168.0.2/80", "not-a-key") == (
                    401,
                    b"Invalid application key",
                )
                stranger = setup.daemon.add_identity("stranger")
                assert await upgrade(f"{net}/tcp/192.168.0.2/80", stranger.app_key) == (403, b"")
        assert service.connections == 0
        nursery.cancel_scope.cancel()


async def test_websocket_keys(setup: Setup, served: str) -> None:
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "echo")
        async with client(setup, url=served) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
        url = f"{served}/net-api/v1/net/{net_id}/tcp/192.168.0.2/80".replace("http", "ws", 1)
        with trio.fail_after(10):
            async with httpx2.AsyncClient() as raw:
                with pytest.raises(WebSocketUpgradeError) as refused:
                    async with raw.websocket(url):
                        pass
                assert refused.value.response.status_code == 401
                async with raw.websocket(f"{url}?authToken={setup.requestor.app_key}") as ws:
                    await ws.send_bytes(b"by token")
                    assert await ws.receive_bytes() == b"by token"
        assert service.connections == 1
        nursery.cancel_scope.cancel()


async def test_bridge_to_an_activitys_handed_off_port(setup: Setup) -> None:
    """The default resolver end to end: the node's live activity's runtime names the port."""
    daemon = setup.daemon
    me = setup.requestor.node_id
    activities = ActivityState(daemon, MarketState(daemon), lambda ctx: ScriptedRuntime({}))
    vpn = VpnState(daemon, activities)
    app = build_app(daemon, vpn_routes(daemon, vpn))
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, "echo")
        binds = await nursery.start(serve_asgi, app, "127.0.0.1", 0)
        activity = Activity("a1", "agr", me, PROVIDER, VpnRuntime({80: service.port}))
        activity.state = ExeUnitState.READY
        activities.activities["a1"] = activity
        async with client(setup, url=binds[0]) as yagna:
            net_id = await vpn_with_node(yagna, setup, service)
            with trio.fail_after(10):
                async with yagna.net_v2.connect_tcp(net_id, "192.168.0.2", 80) as ws:
                    await ws.send_bytes(b"through the runtime")
                    assert await ws.receive_bytes() == b"through the runtime"
                activity.state = ExeUnitState.TERMINATED
                url = f"{binds[0]}/net-api/v1/net/{net_id}/tcp/192.168.0.2/80"
                assert await upgrade(url, setup.requestor.app_key) == (504, b"")
        nursery.cancel_scope.cancel()


async def test_the_client_types_a_refused_websocket() -> None:
    """Over a real socket the websocket client closes a refused upgrade before the SDK reads
    it; ``connect_tcp`` still raises the typed error for the status."""
    from golem_trio.localnet import open_localnet
    from golem_trio.yagna import ApiConfig, NotFound, Unauthorized, YagnaClient

    async with open_localnet([], serve=True) as net:
        assert net.url is not None
        async with YagnaClient(ApiConfig(app_key=net.app_key, api_url=net.url)) as yagna:
            with trio.fail_after(10):
                with pytest.raises(NotFound):
                    async with yagna.net.connect_tcp("0" * 32, "192.168.0.2", 80):
                        pass  # pragma: no cover
        async with YagnaClient(ApiConfig(app_key="wrong", api_url=net.url)) as yagna:
            with trio.fail_after(10):
                with pytest.raises(Unauthorized):
                    async with yagna.net_v2.connect_tcp("0" * 32, "192.168.0.2", 80):
                        pass  # pragma: no cover
