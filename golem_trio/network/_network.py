"""A VPN network of the requestor and its providers' activities: :class:`Network` and the
:class:`NetworkNode` each instance gets (docs/networks.md).

The network's addresses are allocated by an :class:`~._addresses.AddressPool` (pure data);
this module keeps the daemon in step with it. The engine drives a network through four calls:
:meth:`Network.reserve` (before an agreement is signed, so a full network fails at once),
:meth:`Network.add_node` (once the activity exists), :meth:`Network.remove_node` (in the
instance's stopping phase) and :meth:`Network.attach` / :meth:`Network.detach` (a cluster
starts and stops using it). A network is removed from the daemon once it was asked to go
(:meth:`Network.remove`, leaving ``async with``, the engine's exit) and no cluster uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from types import TracebackType
from typing import Any

import attrs
import trio

from ..yagna import NewNetwork, YagnaClient, YagnaError
from ._addresses import AddressPool, IpAddress, IpNetwork, parse_network
from ._errors import AddressError, NetworkClosed, NetworkError
from ._stream import VpnStream, open_vpn_stream

__all__ = ["REMOVAL_BOUND", "Network", "NetworkNode"]

logger = logging.getLogger("golem_trio.network")

#: Seconds removing a network from the daemon may take (shielded).
REMOVAL_BOUND = 10.0


@attrs.frozen(eq=False)
class NetworkNode:
    """One provider activity's place in a network: its address and the provider's node id."""

    network: Network = attrs.field(repr=False)
    node_id: str
    ip: str

    def deploy_args(self) -> dict[str, Any]:
        """The ``deploy`` command's arguments that give the runtime its network: ``net``, a
        list with one entry (``id``, ``ip`` and ``mask`` of the network, ``gateway``,
        ``nodeIp``, and ``nodes``: every node's address and node id)."""
        return self.network.deploy_args(self.ip)

    def websocket_url(self, port: int) -> str:
        """The daemon's websocket that carries a TCP connection to ``port`` at this node
        (connect with the app key as ``Authorization: Bearer``; the URL holds no secret)."""
        return self.network.websocket_url(self.ip, port)

    async def open_tcp_stream(self, port: int) -> VpnStream:
        """A TCP connection to ``port`` at this node, through the daemon (see
        :meth:`Network.open_tcp_stream`)."""
        return await self.network.open_tcp_stream(self.ip, port)


class Network:
    """A VPN on the daemon. Make one with ``await golem.create_network(...)`` (or
    :meth:`create`); ``async with`` it to remove it at the block's end.

    ``nodes`` maps each node's address to its provider's node id (the requestor's own address
    included), as the ``deploy`` command's ``net`` entry lists them.
    """

    def __init__(
        self,
        yagna: YagnaClient,
        network_id: str,
        network: IpNetwork,
        owner_address: IpAddress,
        *,
        owner_id: str | None = None,
        gateway: IpAddress | None = None,
    ) -> None:
        self._yagna = yagna
        self.network_id = network_id
        self.ip_network = network
        self.owner_address = owner_address
        self.owner_id = owner_id
        self.gateway = gateway
        reserved = {owner_address} | ({gateway} if gateway is not None else set())
        self.pool = AddressPool.of(network, reserved)
        self._nodes: dict[Hashable, NetworkNode] = {}
        self._users = 0
        self._remove_wanted = False
        self._removed = False
        self._removing = trio.Lock()
        self._done = trio.Event()

    @classmethod
    async def create(
        cls,
        yagna: YagnaClient,
        ip: str,
        *,
        owner_address: str | None = None,
        mask: str | None = None,
        gateway: str | None = None,
    ) -> Network:
        """Create a network on the daemon: ``ip`` is the network (``"192.168.0.0/24"``, or an
        address with ``mask``); the requestor takes ``owner_address`` (default: the first
        host address that is not the gateway); ``gateway`` is passed to the runtimes.

        Raises :class:`AddressError` for a network or address that cannot be used (before
        the daemon is asked), and the daemon's errors. Cancellation: a checkpoint; if
        cancelled after the daemon created the network, it is removed again (shielded,
        bounded by :data:`REMOVAL_BOUND`).
        """
        network = parse_network(ip, mask)
        probe = AddressPool.of(network)
        gateway_ip = probe.check(gateway) if gateway is not None else None
        if owner_address is not None:
            owner = probe.check(owner_address)
            if owner == gateway_ip and gateway is not None:
                raise AddressError(owner_address, "the gateway cannot be the requestor's address")
        else:
            owner = AddressPool.of(network, [gateway_ip] if gateway_ip else []).assign("owner")
        identity = await yagna.identity.get_identity()
        created = await yagna.net.create_network(
            NewNetwork(
                ip=str(network.network_address),
                mask=str(network.netmask),
                gateway=str(gateway_ip) if gateway_ip is not None else None,
            )
        )
        if created.id is None:
            raise NetworkError("the daemon created the network without an id")
        self = cls(
            yagna,
            created.id,
            network,
            owner,
            owner_id=identity.identity,
            gateway=gateway_ip,
        )
        try:
            await yagna.net.add_address(created.id, str(owner))
        except BaseException:
            with trio.move_on_after(REMOVAL_BOUND, shield=True):
                await self._delete()
            raise
        logger.info("created network %s (%s), requestor at %s", created.id, network, owner)
        return self

    # --- reading ----------------------------------------------------------------------------

    @property
    def network_address(self) -> str:
        return str(self.ip_network.network_address)

    @property
    def netmask(self) -> str:
        return str(self.ip_network.netmask)

    @property
    def removed(self) -> bool:
        """The network is gone from the daemon."""
        return self._removed

    @property
    def closing(self) -> bool:
        """Removal was asked for: no new node joins."""
        return self._remove_wanted or self._removed

    @property
    def users(self) -> int:
        """How many clusters use the network now."""
        return self._users

    @property
    def nodes(self) -> Mapping[str, str]:
        """Address → node id, the requestor's own address first."""
        listed: dict[str, str] = {}
        if self.owner_id is not None:
            listed[str(self.owner_address)] = self.owner_id
        for node in self._nodes.values():
            listed[node.ip] = node.node_id
        return listed

    def node_of(self, holder: Hashable) -> NetworkNode | None:
        return self._nodes.get(holder)

    def __repr__(self) -> str:
        state = "removed" if self._removed else "closing" if self._remove_wanted else "ready"
        return f"<Network {self.network_id} {self.ip_network} {state}, {len(self._nodes)} nodes>"

    def check_address(self, address: str) -> str:
        """``address`` if a node may get it, else :class:`AddressError`."""
        return str(self.pool.check(address))

    def deploy_args(self, node_ip: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.network_id,
            "ip": self.network_address,
            "mask": self.netmask,
            "nodeIp": node_ip,
            "nodes": dict(self.nodes),
        }
        if self.gateway is not None:
            entry["gateway"] = str(self.gateway)
        return {"net": [entry]}

    def websocket_url(self, ip: str, port: int) -> str:
        return self._yagna.net.tcp_url(self.network_id, ip, port)

    async def open_tcp_stream(
        self, ip: str, port: int, *, connect_timeout: float = 10.0
    ) -> VpnStream:
        """A TCP connection to ``ip:port`` inside the network, carried by the daemon's
        websocket, as a trio stream.

        Raises :class:`VpnConnectionError` (``status`` 504 when nothing listens there) and
        :class:`NetworkClosed` once the network is removed. Cancellation: a checkpoint; if
        cancelled, no connection is left open.
        """
        if self._removed:
            await trio.lowlevel.checkpoint()
            raise NetworkClosed(f"network {self.network_id} was removed")
        return await open_vpn_stream(
            self.websocket_url(ip, port),
            self._yagna.config.app_key,
            connect_timeout=connect_timeout,
        )

    # --- nodes ------------------------------------------------------------------------------

    def reserve(self, holder: Hashable, preferred: str | None = None) -> str:
        """Hold an address for ``holder`` (its own when it holds one, else ``preferred`` when
        free, else the lowest free one). Sync. Raises :class:`AddressSpaceExhausted` when
        every address is held, :class:`NetworkClosed` once removal was asked for."""
        if self.closing:
            raise NetworkClosed(f"network {self.network_id} is being removed")
        return str(self.pool.assign(holder, preferred))

    def release(self, holder: Hashable) -> None:
        """Forget ``holder``'s address and node without asking the daemon. Sync."""
        self._nodes.pop(holder, None)
        self.pool.release(holder)

    async def add_node(self, holder: Hashable, node_id: str) -> NetworkNode:
        """Add ``node_id`` to the network at ``holder``'s address (reserved now if it was
        not). The address is released again if the daemon refuses it.

        Cancellation: a checkpoint; if cancelled, the node may have been added: call
        :meth:`remove_node` to be sure it is not.
        """
        ip = self.reserve(holder)
        node = NetworkNode(self, node_id, ip)
        # Known before the call, so that a cancelled call is still cleaned up.
        self._nodes[holder] = node
        try:
            await self._yagna.net.add_node(self.network_id, node_id, ip)
        except YagnaError:
            self.release(holder)
            raise
        logger.info("network %s: node %s at %s", self.network_id, node_id, ip)
        return node

    async def remove_node(self, holder: Hashable) -> None:
        """Remove ``holder``'s node from the daemon and free its address. Another holder on
        the same provider keeps its address (it is added again: the daemon removes a node id
        with every address it has).

        Cancellation: a checkpoint; the address is freed even if cancelled (the caller
        bounds and shields it in the stopping phase).
        """
        node = self._nodes.get(holder)
        try:
            if node is not None and not self._removed:
                await self._yagna.net.remove_node(self.network_id, node.node_id)
                for other, kept in list(self._nodes.items()):
                    if other is not holder and kept.node_id == node.node_id:
                        await self._yagna.net.add_node(self.network_id, kept.node_id, kept.ip)
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self.release(holder)

    # --- users and removal ------------------------------------------------------------------

    def attach(self) -> None:
        """A cluster starts using the network. Raises :class:`NetworkClosed` once removal was
        asked for."""
        if self.closing:
            raise NetworkClosed(f"network {self.network_id} is being removed")
        self._users += 1

    async def detach(self) -> None:
        """A cluster stopped using the network; the last one out removes it when removal was
        asked for. Cancellation: the removal is shielded and bounded."""
        self._users -= 1
        if self._users <= 0 and self._remove_wanted:
            await self._remove_now()
        else:
            await trio.lowlevel.checkpoint()

    async def remove(self) -> None:
        """Remove the network: at once when no cluster uses it, else when the last cluster
        using it stops (:meth:`wait_removed` waits for that). Idempotent.

        Cancellation: the daemon call is shielded and bounded by :data:`REMOVAL_BOUND`.
        """
        self._remove_wanted = True
        if self._users <= 0:
            await self._remove_now()
        else:
            await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        """Remove the network at once, whether clusters use it or not (their nodes go with
        it); the engine does this at its exit. Idempotent. Cancellation: shielded and bounded
        by :data:`REMOVAL_BOUND`."""
        self._remove_wanted = True
        await self._remove_now()

    async def wait_removed(self) -> None:
        """Wait until the network is gone from the daemon. Cancellation: only the wait ends."""
        await self._done.wait()

    async def _remove_now(self) -> None:
        with trio.move_on_after(REMOVAL_BOUND, shield=True):
            async with self._removing:
                if self._removed:
                    return
                await self._delete()
        # Bounded out or not, the network is given up.
        self._removed = True
        self._nodes.clear()
        self._done.set()

    async def _delete(self) -> None:
        await trio.lowlevel.checkpoint()
        try:
            await self._yagna.net.remove_network(self.network_id)
            logger.info("removed network %s", self.network_id)
        except YagnaError as exc:
            logger.warning("removing network %s: %s", self.network_id, exc)
        self._removed = True
        self._done.set()

    async def __aenter__(self) -> Network:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # remove() shields and bounds its daemon call itself.
        with trio.move_on_after(REMOVAL_BOUND, shield=True):
            await self.remove()
