"""VPN networks for services, and local proxies into them (docs/networks.md).

``await golem.create_network("192.168.0.0/24")`` makes a :class:`Network`; services join it
with ``golem.run_service(..., network=net, network_addresses=[...])``: each instance's
activity becomes a :class:`NetworkNode` (``service.network_node``) while it lives, and
``await service.open_tcp_stream(port)`` is a trio stream to a port of it. :class:`LocalHttpProxy`
and :class:`SocketProxy` serve a local port and carry what arrives there to the running
instances of a cluster.
"""

from __future__ import annotations

from .._exports import fixup_module_metadata
from ._addresses import AddressPool as AddressPool
from ._addresses import parse_network as parse_network
from ._errors import AddressError as AddressError
from ._errors import AddressSpaceExhausted as AddressSpaceExhausted
from ._errors import NetworkClosed as NetworkClosed
from ._errors import NetworkError as NetworkError
from ._errors import VpnConnectionError as VpnConnectionError
from ._network import REMOVAL_BOUND as REMOVAL_BOUND
from ._network import Network as Network
from ._network import NetworkNode as NetworkNode
from ._proxy import LocalHttpProxy as LocalHttpProxy
from ._proxy import ProxyStats as ProxyStats
from ._proxy import SocketProxy as SocketProxy
from ._proxy import VpnService as VpnService
from ._proxy import VpnServiceGroup as VpnServiceGroup
from ._stream import VpnStream as VpnStream
from ._stream import open_vpn_stream as open_vpn_stream

__all__ = [
    "REMOVAL_BOUND",
    "AddressError",
    "AddressPool",
    "AddressSpaceExhausted",
    "LocalHttpProxy",
    "Network",
    "NetworkClosed",
    "NetworkError",
    "NetworkNode",
    "ProxyStats",
    "SocketProxy",
    "VpnConnectionError",
    "VpnService",
    "VpnServiceGroup",
    "VpnStream",
    "open_vpn_stream",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
