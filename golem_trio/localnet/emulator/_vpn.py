"""The emulated net (VPN) API's state: networks, the requestor's addresses, provider nodes, and
where a websocket TCP connection into the VPN lands (docs/daemon-notes.md §6).

A network belongs to the identity that created it: another identity gets 403 (empty body), an
unknown id 404 ``{"message": "Network not found"}``. Bad input is a 400 with the daemon's
messages (``Invalid IP address: …``, ``Network not found for IP address: …``), a taken address
a 409 (``IP address taken: …``).

Connections. ``GET …/net/{id}/tcp/{ip}/{port}`` (a websocket) carries raw TCP bytes to
``ip:port`` inside the VPN. LocalNet has no VPN packets: it finds the *host* address of the
service and opens a plain TCP connection there. A :data:`Resolver` answers
``(network_id, ip, port) -> (host, port) | None``; the default one takes the node at ``ip``
(a provider node id), its newest live activity for the network's owner whose runtime has a
``vpn_endpoint(port)`` method (and, when the runtime knows its own address, ``vpn_ip``, is
deployed at ``ip``) (the local runtime's VPN port hand-off), and the host address that
method answers. ``None`` (unknown address, no such activity, no port handed off) and a refused
or timed-out connection all answer 504 with an empty body, as the daemon answers a TCP connect
that never completes (it only answers after its own connect timeout; LocalNet answers at once).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ._activity import ActivityState, ExeUnitState
from ._core import Daemon, DaemonError

__all__ = ["CONNECT_TIMEOUT", "Resolver", "VpnNetwork", "VpnState"]

Json = dict[str, Any]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Where a TCP connection into the VPN lands: ``(network_id, ip, port) -> (host, port)``, or
#: ``None`` when nothing there answers.
Resolver = Callable[[str, str, int], "tuple[str, int] | None"]

#: Seconds to wait for the service's TCP connection before answering 504.
CONNECT_TIMEOUT = 5.0

#: The daemon's netmask when the request gives neither a mask nor a ``/prefix``.
DEFAULT_MASK = "255.255.255.0"


def _bad(message: str) -> DaemonError:
    return DaemonError(400, message)


def _ip(text: object) -> IpAddress:
    """An IP address as the daemon parses one (Rust's ``IpAddr``: no prefix, no spaces)."""
    if not isinstance(text, str):
        raise _bad("Invalid IP address: invalid IP address syntax")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _bad("Invalid IP address: invalid IP address syntax") from None


def _string_field(body: object, key: str, *, required: bool) -> str | None:
    if not isinstance(body, Mapping):
        raise _bad("Json deserialize error: expected an object")
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(f"Json deserialize error: missing field `{key}`")
        return None
    if not isinstance(value, str):
        raise _bad(f"Json deserialize error: invalid type for `{key}`, expected a string")
    return value


def _parse_network(ip_text: str, mask_text: str | None) -> tuple[IpAddress, IpNetwork]:
    """``(address as given, network)`` from ``ip`` (maybe with a ``/prefix``) and ``mask``
    (default ``255.255.255.0`` when neither says the prefix)."""
    address_text, slash, prefix_text = ip_text.partition("/")
    address = _ip(address_text)
    if slash and not prefix_text.isdigit():
        raise _bad(f"Invalid network IP address: {ip_text}")
    prefix: str | None = prefix_text if slash else None
    if mask_text is not None:
        _ip(mask_text)
        try:
            prefix_of_mask = ipaddress.ip_network(f"{address}/{mask_text}", strict=False).prefixlen
        except ValueError:
            raise _bad(f"Invalid network IP address: {mask_text}") from None
        if prefix is not None and int(prefix) != prefix_of_mask:
            raise _bad(f"Invalid network CIDR: {address}/{prefix}")
        prefix = str(prefix_of_mask)
    if prefix is None:
        prefix = DEFAULT_MASK if address.version == 4 else "64"
    try:
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    except ValueError:
        raise _bad(f"Invalid network CIDR: {address}/{prefix}") from None
    return address, network


@attrs.define(eq=False)
class VpnNetwork:
    """One network: its blueprint (as created), the owner's addresses and the nodes."""

    network_id: str
    owner_id: str
    address: IpAddress
    network: IpNetwork
    gateway: IpAddress
    #: The owner's addresses, in the order they were added (the gateway is always listed).
    addresses: list[IpAddress] = attrs.field(factory=list)
    #: ``(node id, ip)`` in the order they were added.
    nodes: list[tuple[str, IpAddress]] = attrs.field(factory=list)
    removed: bool = False
    #: Open websocket connections into this network, cancelled when it is removed.
    connections: set[trio.CancelScope] = attrs.field(factory=set)

    def json(self) -> Json:
        return {
            "id": self.network_id,
            "ip": f"{self.address}/{self.network.prefixlen}",
            "mask": str(self.network.netmask),
            "gateway": str(self.gateway),
        }

    def node_at(self, ip: IpAddress) -> str | None:
        return next((node_id for node_id, at in self.nodes if at == ip), None)


class VpnState:
    """The VPNs of one emulated daemon.

    ``activities`` lets the default resolver find the service behind a node (without it, every
    connection answers 504); ``resolver`` replaces the default resolver altogether.
    """

    def __init__(
        self,
        daemon: Daemon,
        activities: ActivityState | None = None,
        *,
        resolver: Resolver | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.daemon = daemon
        self.activities = activities
        self.resolver: Resolver = resolver if resolver is not None else self.service_endpoint
        self.connect_timeout = connect_timeout
        #: Every network ever created, removed ones included (for the ledger).
        self.networks: dict[str, VpnNetwork] = {}

    # --- lookups ---------------------------------------------------------------------------------

    def _network(self, caller_id: str, network_id: str) -> VpnNetwork:
        network = self.networks.get(network_id)
        if network is None or network.removed:
            raise DaemonError(404, "Network not found")
        if network.owner_id != caller_id:
            raise DaemonError(403, "", plain=True)
        return network

    def ledger(self) -> list[Json]:
        """Every network: ``id``, ``ip`` (CIDR), ``ownerId``, ``removed`` and its ``nodes``
        (``id``, ``ip``) as they were last."""
        return [
            {
                **network.json(),
                "ownerId": network.owner_id,
                "removed": network.removed,
                "nodes": [{"id": node_id, "ip": str(ip)} for node_id, ip in network.nodes],
            }
            for network in self.networks.values()
        ]

    # --- networks --------------------------------------------------------------------------------

    def create_network(self, caller_id: str, body: object) -> Json:
        ip_text = _string_field(body, "ip", required=True)
        assert ip_text is not None
        mask_text = _string_field(body, "mask", required=False)
        gateway_text = _string_field(body, "gateway", required=False)
        address, network = _parse_network(ip_text, mask_text)
        if gateway_text is not None:
            gateway = _ip(gateway_text)
        else:
            first_host = next(iter(network.hosts()), None)
            if first_host is None:
                raise _bad(f"Invalid network CIDR: {address}/{network.prefixlen}")
            gateway = ipaddress.ip_address(str(first_host))
        entry = VpnNetwork(self.daemon.ids.activity(), caller_id, address, network, gateway)
        self.networks[entry.network_id] = entry
        return entry.json()

    def list_networks(self, caller_id: str) -> list[Json]:
        return [
            n.json() for n in self.networks.values() if n.owner_id == caller_id and not n.removed
        ]

    def get_network(self, caller_id: str, network_id: str) -> Json:
        return self._network(caller_id, network_id).json()

    def remove_network(self, caller_id: str, network_id: str) -> None:
        """Remove the network; its open connections close."""
        network = self._network(caller_id, network_id)
        network.removed = True
        for scope in list(network.connections):
            scope.cancel()

    # --- the owner's addresses -------------------------------------------------------------------

    def get_addresses(self, caller_id: str, network_id: str) -> list[Json]:
        """The owner's addresses with the network's prefix; the gateway comes first (the
        daemon lists it from the start)."""
        network = self._network(caller_id, network_id)
        listed = [network.gateway, *(a for a in network.addresses if a != network.gateway)]
        return [{"ip": f"{ip}/{network.network.prefixlen}"} for ip in listed]

    def add_address(self, caller_id: str, network_id: str, body: object) -> None:
        network = self._network(caller_id, network_id)
        ip_text = _string_field(body, "ip", required=True)
        ip = _ip(ip_text)
        self._check_host(network, ip)
        if ip in network.addresses or network.node_at(ip) is not None:
            raise DaemonError(409, f"IP address taken: {ip}")
        network.addresses.append(ip)

    @staticmethod
    def _check_host(network: VpnNetwork, ip: IpAddress) -> None:
        if ip not in network.network:
            raise _bad(f"Network not found for IP address: {ip}")
        # As the daemon: only multicast and the limited broadcast are refused.
        if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
            raise _bad(f"IP address not allowed: {ip}")

    # --- nodes -----------------------------------------------------------------------------------

    def get_nodes(self, caller_id: str, network_id: str) -> list[Json]:
        network = self._network(caller_id, network_id)
        return [{"id": node_id, "ip": str(ip)} for node_id, ip in network.nodes]

    def add_node(self, caller_id: str, network_id: str, body: object) -> None:
        """Add a node; adding the same node at the same address again changes nothing."""
        network = self._network(caller_id, network_id)
        node_id = _string_field(body, "id", required=True)
        assert node_id is not None
        ip = _ip(_string_field(body, "ip", required=True))
        self._check_host(network, ip)
        holder = network.node_at(ip)
        if holder == node_id:
            return
        if holder is not None or ip in network.addresses:
            raise DaemonError(409, f"IP address taken: {ip}")
        network.nodes.append((node_id, ip))

    def remove_node(self, caller_id: str, network_id: str, node_id: str) -> None:
        """Remove every address of the node (none: nothing happens, as on the daemon)."""
        network = self._network(caller_id, network_id)
        network.nodes = [(n, ip) for n, ip in network.nodes if n != node_id]

    # --- status ----------------------------------------------------------------------------------

    def status(self, caller_id: str) -> Json:
        """``GET /net-api/v2/net/status``: no relay or peer sessions in an emulated net."""
        return {"nodeId": caller_id, "publicIp": None, "sessions": 0}

    # --- connections -----------------------------------------------------------------------------

    def connect_target(self, caller_id: str, network_id: str, ip: str, port: str) -> int:
        """Check a connection request as the daemon does before the upgrade: the port (404,
        as an unparsable path), the network (404/403) and the address (400). Returns the
        port."""
        if not port.isdigit() or int(port) > 65535:
            raise DaemonError(404, "", plain=True)
        self._network(caller_id, network_id)
        _ip(ip)
        return int(port)

    def endpoint(self, network_id: str, ip: str, port: int) -> tuple[str, int] | None:
        """Where a connection to ``ip:port`` lands, through the resolver."""
        return self.resolver(network_id, ip, port)

    def service_endpoint(self, network_id: str, ip: str, port: int) -> tuple[str, int] | None:
        """The default resolver: the node at ``ip``, its newest live activity for the
        network's owner whose runtime has ``vpn_endpoint``, and the host address it gives."""
        network = self.networks.get(network_id)
        if network is None or network.removed or self.activities is None:
            return None
        try:
            node_id = network.node_at(ipaddress.ip_address(ip))
        except ValueError:
            return None
        if node_id is None:
            return None
        for activity in reversed(list(self.activities.activities.values())):
            if (
                activity.provider_id != node_id
                or activity.requestor_id != network.owner_id
                or activity.state is ExeUnitState.TERMINATED
            ):
                continue
            vpn_endpoint = getattr(activity.runtime, "vpn_endpoint", None)
            if vpn_endpoint is None:
                continue
            # Two activities of one provider in one network: the one deployed at this address.
            own_ip = getattr(activity.runtime, "vpn_ip", None)
            if own_ip is not None and own_ip != ip:
                continue
            found = vpn_endpoint(port)
            if found is not None:
                host, host_port = found
                return (str(host), int(host_port))
        return None

    async def open_connection(
        self, caller_id: str, network_id: str, ip: str, port: str
    ) -> tuple[VpnNetwork, trio.SocketStream]:
        """Check the request and connect to the service; the daemon's error otherwise (504
        with an empty body when nothing answers)."""
        target_port = self.connect_target(caller_id, network_id, ip, port)
        network = self._network(caller_id, network_id)
        address = self.endpoint(network_id, ip, target_port)
        if address is None:
            await trio.lowlevel.checkpoint()
            raise DaemonError(504, "", plain=True)
        host, host_port = address
        with trio.move_on_after(self.connect_timeout):
            try:
                stream = await trio.open_tcp_stream(host, host_port)
            except OSError:
                raise DaemonError(504, "", plain=True) from None
            return network, stream
        raise DaemonError(504, "", plain=True)
