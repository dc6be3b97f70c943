"""The network layer's errors; every one is a :class:`~golem_trio.GolemError`."""

from __future__ import annotations

from .._errors import GolemError

__all__ = [
    "AddressError",
    "AddressSpaceExhausted",
    "NetworkClosed",
    "NetworkError",
    "VpnConnectionError",
]


class NetworkError(GolemError):
    """Something a VPN network cannot do; the base of the network layer's errors."""


class AddressError(NetworkError, ValueError):
    """An address the network cannot give: outside the network, its network or broadcast
    address, one of the requestor's own addresses, or not an IP address at all."""

    def __init__(self, address: str, problem: str) -> None:
        super().__init__(f"{address}: {problem}")
        self.address = address


class AddressSpaceExhausted(NetworkError):
    """Every host address of the network is held by a live node (or the requestor): no
    further node can join until one leaves."""

    def __init__(self, network: str, held: int) -> None:
        super().__init__(f"no free address left in {network} ({held} held)")
        self.network = network
        self.held = held


class NetworkClosed(NetworkError, RuntimeError):
    """The network was removed (or is being removed): it takes no further node or service."""


class VpnConnectionError(NetworkError):
    """A TCP connection into the VPN could not be opened or broke: the daemon refused the
    websocket (``status`` is its HTTP answer, 504 when nothing listens on that port), or the
    connection to the daemon failed (``status`` is ``None``)."""

    def __init__(self, target: str, problem: str, status: int | None = None) -> None:
        super().__init__(f"{target}: {problem}")
        self.target = target
        self.status = status
