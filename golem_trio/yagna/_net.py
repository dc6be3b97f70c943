"""Net (VPN) API, requestor side, in both layouts the daemon serves: ``/net-api/v1/net/...``
and ``/net-api/v2/vpn/net/...`` (same handlers).

Cancellation, for every method: a checkpoint; if cancelled, the request may or may not have
reached the daemon.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import httpx2
import trio
from httpx2.websockets import AsyncWebSocketSession, HTTPXWSException, WebSocketUpgradeError

from ._convert import encode
from ._errors import DaemonUnreachable, error_for_status
from ._http import HttpLayer, _error_message
from ._models import Address, Connection, NetStatus, Network, NewNetwork, Node

__all__ = ["NetApi"]

#: Seconds to read the body of a refused websocket upgrade.
READ_BOUND = 5.0


class NetApi:
    """Typed calls of the net API. Get one from :attr:`YagnaClient.net` (v1 layout) or
    :attr:`YagnaClient.net_v2`."""

    def __init__(self, http: HttpLayer, layout: Literal["v1", "v2"] = "v1") -> None:
        self._http = http
        self.layout = layout
        if layout == "v1":
            self._base = f"{http.config.net_base}/net"
        else:
            self._base = f"{http.config.net_v2_base}/vpn/net"
        self._status_url = f"{http.config.net_v2_base}/net/status"

    async def get_status(self) -> NetStatus:
        """``GET /net-api/v2/net/status``: this node's id and network sessions."""
        result: NetStatus = await self._http.call_json(
            "getStatus", "GET", self._status_url, NetStatus, safe=True
        )
        return result

    async def create_network(self, network: NewNetwork) -> Network:
        """Create a VPN (``ip`` may carry ``/24``). Not retried."""
        result: Network = await self._http.call_json(
            "createNetwork", "POST", self._base, Network, body=encode(network)
        )
        return result

    async def get_networks(self) -> list[Network]:
        result: list[Network] = await self._http.call_json(
            "getNetworks", "GET", self._base, list[Network], safe=True
        )
        return result

    async def get_network(self, network_id: str) -> Network:
        result: Network = await self._http.call_json(
            "getNetwork", "GET", f"{self._base}/{network_id}", Network, safe=True
        )
        return result

    async def remove_network(self, network_id: str) -> None:
        """Delete the VPN. Retried; a repeat that finds it gone counts as done."""
        await self._http.call(
            "removeNetwork", "DELETE", f"{self._base}/{network_id}", safe=True, gone_ok=True
        )

    async def get_addresses(self, network_id: str) -> list[Address]:
        result: list[Address] = await self._http.call_json(
            "getAddresses", "GET", f"{self._base}/{network_id}/addresses", list[Address], safe=True
        )
        return result

    async def add_address(self, network_id: str, ip: str) -> None:
        """Give this node (the requestor) an address in the VPN; :class:`Conflict` if taken."""
        await self._http.call(
            "addAddress",
            "POST",
            f"{self._base}/{network_id}/addresses",
            body=encode(Address(ip)),
        )

    async def get_nodes(self, network_id: str) -> list[Node]:
        result: list[Node] = await self._http.call_json(
            "getNodes", "GET", f"{self._base}/{network_id}/nodes", list[Node], safe=True
        )
        return result

    async def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        """Add a provider node at ``ip``; :class:`Conflict` if the address or id is taken."""
        await self._http.call(
            "addNode",
            "POST",
            f"{self._base}/{network_id}/nodes",
            body=encode(Node(node_id, ip)),
        )

    async def remove_node(self, network_id: str, node_id: str) -> None:
        """Remove a node. Retried; a repeat that finds it gone counts as done."""
        await self._http.call(
            "removeNode",
            "DELETE",
            f"{self._base}/{network_id}/nodes/{node_id}",
            safe=True,
            gone_ok=True,
        )

    async def get_connections(self, network_id: str) -> list[Connection]:
        """The VPN's open TCP connections. In the specs; yagna 0.17.6 does not serve it and
        answers :class:`NotFound`."""
        result: list[Connection] = await self._http.call_json(
            "getConnections",
            "GET",
            f"{self._base}/{network_id}/tcp",
            list[Connection],
            safe=True,
        )
        return result

    def tcp_url(self, network_id: str, ip: str, port: int) -> str:
        """The websocket URL that carries raw TCP bytes to ``ip:port`` inside the VPN.

        Connect with the app key in an ``Authorization: Bearer`` header (as
        :meth:`connect_tcp` does); the URL itself holds no secret.
        """
        url = httpx2.URL(f"{self._base}/{network_id}/tcp/{ip}/{port}")
        scheme = "wss" if url.scheme == "https" else "ws"
        return str(url.copy_with(scheme=scheme))

    @asynccontextmanager
    async def connect_tcp(
        self, network_id: str, ip: str, port: int
    ) -> AsyncIterator[AsyncWebSocketSession]:
        """Open the websocket to ``ip:port`` in the VPN: send and receive raw TCP bytes as
        binary messages (``send_bytes`` / ``receive_bytes``).

        Cancellation: exiting the block closes the websocket.
        """
        url = self.tcp_url(network_id, ip, port)
        try:
            async with self._http.client(long_poll=True).websocket(url) as session:
                yield session
        except WebSocketUpgradeError as exc:
            # The daemon refused the upgrade with an ordinary HTTP answer (401, 404...).
            response = exc.response
            message = None
            # Over a real socket the websocket client has closed the body already: then the
            # status alone says what happened.
            with (
                trio.move_on_after(READ_BOUND, shield=True),
                contextlib.suppress(httpx2.StreamError),
            ):
                await response.aread()
                message = self._http.redact(_error_message(response))
            raise error_for_status(response.status_code)(
                "connect_tcp",
                status=response.status_code,
                message=message,
                method="GET",
                path=response.request.url.path,
            ) from exc
        except (httpx2.TransportError, HTTPXWSException) as exc:
            raise DaemonUnreachable(
                "connect_tcp", f"websocket to {ip}:{port} failed: {exc}"
            ) from exc
