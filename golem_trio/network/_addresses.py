"""Address allocation in one VPN, as pure data: no I/O, no clock (docs/networks.md).

An :class:`AddressPool` knows the network, the addresses that are never handed out (the
requestor's own, the gateway) and which holder holds which address. A *holder* is any hashable
key: the engine uses one per service instance, so an instance that lives again asks for its
address again and gets it back when it is still free.

The rules, checked by a rule-based property test (``tests/network/test_addresses.py``):

- an address is held by at most one holder at a time, and never is a reserved address, the
  network's own address or its broadcast address;
- :meth:`AddressPool.assign` gives the holder the address it already holds, else the preferred
  one when it is free, else the lowest free host address; when there is none it raises
  :class:`AddressSpaceExhausted` (it never waits);
- :meth:`AddressPool.release` frees what the holder held (nothing held: nothing happens).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable, Iterator, Mapping

import attrs

from ._errors import AddressError, AddressSpaceExhausted

__all__ = ["AddressPool", "IpAddress", "IpNetwork", "parse_network"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(ip: str, mask: str | None = None) -> IpNetwork:
    """The network of ``ip`` (which may carry a ``/prefix``) and ``mask``; host bits are
    ignored (``192.168.0.1/24`` is ``192.168.0.0/24``). Raises :class:`AddressError`."""
    text = f"{ip}/{mask}" if mask is not None and "/" not in ip else ip
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise AddressError(text, f"not a network: {exc}") from None
    if mask is not None and "/" in ip:
        with_mask = ipaddress.ip_network(f"{ip.partition('/')[0]}/{mask}", strict=False)
        if with_mask.prefixlen != network.prefixlen:
            raise AddressError(text, f"the mask {mask} disagrees with the prefix")
    return network


def _hosts(network: IpNetwork) -> Iterator[IpAddress]:
    """The host addresses, lowest first (a /31 or /32 has only its own addresses)."""
    first = network.network_address
    if network.num_addresses <= 2:
        offsets = range(network.num_addresses)
    else:
        offsets = range(1, network.num_addresses - 1)
    for offset in offsets:
        yield first + offset


@attrs.define
class AddressPool:
    """Who holds which address of one network (see the module docs)."""

    network: IpNetwork
    #: Never handed out: the requestor's addresses, the gateway.
    reserved: frozenset[IpAddress] = frozenset()
    _held: dict[Hashable, IpAddress] = attrs.field(factory=dict, init=False)
    _holders: dict[IpAddress, Hashable] = attrs.field(factory=dict, init=False)

    @classmethod
    def of(cls, network: IpNetwork, reserved: Iterable[IpAddress | str] = ()) -> AddressPool:
        return cls(network, frozenset(ipaddress.ip_address(a) for a in reserved))

    # --- reading -----------------------------------------------------------------------------

    @property
    def held(self) -> Mapping[Hashable, IpAddress]:
        """Every holder and its address (a copy)."""
        return dict(self._held)

    def holder_of(self, address: IpAddress | str) -> Hashable | None:
        return self._holders.get(ipaddress.ip_address(address))

    def address_of(self, holder: Hashable) -> IpAddress | None:
        return self._held.get(holder)

    @property
    def capacity(self) -> int:
        """How many addresses can be held at once."""
        n = self.network.num_addresses
        hosts = n if n <= 2 else n - 2
        return hosts - sum(1 for r in self.reserved if self._is_host(r))

    def _is_host(self, address: IpAddress) -> bool:
        if address not in self.network:
            return False
        if self.network.num_addresses <= 2:
            return True
        return address not in (self.network.network_address, self.network.broadcast_address)

    def check(self, address: IpAddress | str) -> IpAddress:
        """``address`` as an address a node may get, else :class:`AddressError` (it may still
        be held by someone now)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise AddressError(str(address), "not an IP address") from None
        if ip not in self.network:
            raise AddressError(str(ip), f"outside the network {self.network}")
        if not self._is_host(ip):
            raise AddressError(str(ip), f"the network or broadcast address of {self.network}")
        if ip in self.reserved:
            raise AddressError(str(ip), "reserved for the requestor (its address or gateway)")
        return ip

    # --- changing ----------------------------------------------------------------------------

    def assign(self, holder: Hashable, preferred: IpAddress | str | None = None) -> IpAddress:
        """Give ``holder`` an address: the one it holds, else ``preferred`` when free, else
        the lowest free one. Raises :class:`AddressError` for a ``preferred`` the network
        cannot give at all, :class:`AddressSpaceExhausted` when nothing is free."""
        current = self._held.get(holder)
        if current is not None:
            return current
        if preferred is not None:
            ip = self.check(preferred)
            if ip not in self._holders:
                return self._take(holder, ip)
        for ip in _hosts(self.network):
            if ip not in self.reserved and ip not in self._holders:
                return self._take(holder, ip)
        raise AddressSpaceExhausted(str(self.network), len(self._held))

    def _take(self, holder: Hashable, ip: IpAddress) -> IpAddress:
        self._held[holder] = ip
        self._holders[ip] = holder
        return ip

    def release(self, holder: Hashable) -> IpAddress | None:
        """Free the holder's address; returns it (``None`` when it held none)."""
        ip = self._held.pop(holder, None)
        if ip is not None:
            del self._holders[ip]
        return ip
