"""Routes of the emulated net (VPN) API, in both layouts the daemon serves (``/net-api/v1/net…``
and ``/net-api/v2/vpn/net…``, same handlers), plus ``GET /net-api/v2/net/status``
(docs/daemon-notes.md §6).

``GET …/net/{id}/tcp`` (the specs' getConnections) is not served, as on yagna 0.17.6: 404 with
an empty body. ``GET …/net/{id}/tcp/{ip}/{port}`` is a websocket: the request is checked and the
service connected before the upgrade (errors are plain HTTP answers: 401, 403, 404, 400, 504),
then every binary or text message is written to the TCP connection and whatever the service
sends comes back as binary messages. The service closing its end closes the websocket (code
1000); the client closing the websocket closes the TCP connection; removing the network closes
both (code 1001).
"""

from __future__ import annotations

import contextlib

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._core import Daemon, DaemonError, NodeIdentity
from ._http import authenticate, empty_response, error_response, json_body, json_response
from ._vpn import VpnNetwork, VpnState

__all__ = ["BRIDGE_CHUNK", "V1_PREFIX", "V2_PREFIX", "vpn_routes"]

V1_PREFIX = "/net-api/v1"
V2_PREFIX = "/net-api/v2/vpn"
STATUS_PATH = "/net-api/v2/net/status"

#: Most bytes read from the service per binary message.
BRIDGE_CHUNK = 65536


class _TcpRoute(Route):
    """``GET …/tcp/{ip}/{port}``: a websocket, and a plain GET answered as the daemon answers
    a request without an upgrade. A :class:`Route`, so the API's route list stays one type."""

    def __init__(self, path: str, http: Route, websocket: WebSocketRoute) -> None:
        super().__init__(path, http.endpoint, methods=["GET"], name=http.name)
        self._websocket = websocket

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "websocket":
            return self._websocket.matches(scope)
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket.handle(scope, receive, send)
        else:
            await super().handle(scope, receive, send)


def _authenticate(daemon: Daemon, websocket: WebSocket) -> NodeIdentity:
    """The caller's identity from ``Authorization: Bearer`` or ``?authToken=``, as for HTTP."""
    header = websocket.headers.get("authorization", "")
    key = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None
    return daemon.authenticate(key or websocket.query_params.get("authToken"))


async def _refuse(websocket: WebSocket, error: DaemonError) -> None:
    """Answer a websocket request with the daemon's plain HTTP error (close if the server
    cannot send one)."""
    try:
        await websocket.send_denial_response(error_response(error))
    except RuntimeError:
        await websocket.close(code=1008 if error.status in (401, 403) else 1011)


async def _bridge(websocket: WebSocket, stream: trio.SocketStream, network: VpnNetwork) -> None:
    """Carry bytes both ways until one side ends or the network goes."""
    #: How to close the websocket at the end (``None``: the client is gone already).
    close_code: int | None = None
    scope = trio.CancelScope()
    network.connections.add(scope)
    try:
        with scope:
            async with trio.open_nursery() as nursery:

                async def to_service() -> None:
                    nonlocal close_code
                    while True:
                        message = await websocket.receive()
                        if message["type"] == "websocket.disconnect":
                            break
                        data = message.get("bytes")
                        if data is None:
                            data = (message.get("text") or "").encode()
                        if not data:
                            continue
                        try:
                            await stream.send_all(data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            close_code = 1000
                            break
                    nursery.cancel_scope.cancel()

                async def to_client() -> None:
                    nonlocal close_code
                    while True:
                        try:
                            data = await stream.receive_some(BRIDGE_CHUNK)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            data = b""
                        if not data:
                            close_code = 1000
                            break
                        try:
                            await websocket.send_bytes(data)
                        except (WebSocketDisconnect, RuntimeError, OSError):
                            break
                    nursery.cancel_scope.cancel()

                nursery.start_soon(to_service)
                nursery.start_soon(to_client)
        if scope.cancelled_caught:
            close_code = 1001
    finally:
        network.connections.discard(scope)
        with trio.CancelScope(shield=True):
            await stream.aclose()
    if close_code is not None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(code=close_code)


def vpn_routes(daemon: Daemon, vpn: VpnState) -> list[Route]:
    """The net API's routes in both layouts and the status route, each named after its
    OpenAPI ``operationId`` (the v2 ones with a ``V2`` suffix)."""

    async def get_networks(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.list_networks(me.node_id))

    async def create_network(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.create_network(me.node_id, await json_body(request)))

    async def get_network(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.get_network(me.node_id, request.path_params["net"]))

    async def remove_network(request: Request) -> Response:
        me = authenticate(daemon, request)
        vpn.remove_network(me.node_id, request.path_params["net"])
        return json_response(None)

    async def get_addresses(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.get_addresses(me.node_id, request.path_params["net"]))

    async def add_address(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        vpn.add_address(me.node_id, request.path_params["net"], body)
        return json_response(None)

    async def get_nodes(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.get_nodes(me.node_id, request.path_params["net"]))

    async def add_node(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        vpn.add_node(me.node_id, request.path_params["net"], body)
        return json_response(None)

    async def remove_node(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        vpn.remove_node(me.node_id, p["net"], p["node"])
        return json_response(None)

    async def get_connections(request: Request) -> Response:
        # Not served by yagna 0.17.6: the path does not exist there.
        return empty_response(404)

    async def connect_tcp_plain(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        vpn.connect_target(me.node_id, p["net"], p["ip"], p["port"])
        # Without an upgrade the daemon's websocket handshake fails.
        return empty_response(400)

    async def connect_tcp(websocket: WebSocket) -> None:
        p = websocket.path_params
        try:
            me = _authenticate(daemon, websocket)
            network, stream = await vpn.open_connection(me.node_id, p["net"], p["ip"], p["port"])
        except DaemonError as error:
            await _refuse(websocket, error)
            return
        try:
            await websocket.accept()
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        await _bridge(websocket, stream, network)

    async def get_status(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(vpn.status(me.node_id))

    routes: list[Route] = [Route(STATUS_PATH, get_status, methods=["GET"], name="getStatus")]
    for prefix, suffix in ((V1_PREFIX, ""), (V2_PREFIX, "V2")):
        net = f"{prefix}/net"
        one = f"{net}/{{net}}"
        tcp = f"{one}/tcp/{{ip}}/{{port}}"
        routes += [
            Route(net, get_networks, methods=["GET"], name=f"getNetworks{suffix}"),
            Route(net, create_network, methods=["POST"], name=f"createNetwork{suffix}"),
            Route(one, get_network, methods=["GET"], name=f"getNetwork{suffix}"),
            Route(one, remove_network, methods=["DELETE"], name=f"removeNetwork{suffix}"),
            Route(f"{one}/addresses", get_addresses, methods=["GET"], name=f"getAddresses{suffix}"),
            Route(f"{one}/addresses", add_address, methods=["POST"], name=f"addAddress{suffix}"),
            Route(f"{one}/nodes", get_nodes, methods=["GET"], name=f"getNodes{suffix}"),
            Route(f"{one}/nodes", add_node, methods=["POST"], name=f"addNode{suffix}"),
            Route(
                f"{one}/nodes/{{node}}", remove_node, methods=["DELETE"], name=f"removeNode{suffix}"
            ),
            Route(f"{one}/tcp", get_connections, methods=["GET"], name=f"getConnections{suffix}"),
            _TcpRoute(
                tcp,
                Route(tcp, connect_tcp_plain, methods=["GET"], name=f"connect_tcp{suffix}"),
                WebSocketRoute(tcp, connect_tcp, name=f"connect_tcp{suffix}"),
            ),
        ]
    return routes
