"""Address allocation (``golem_trio.network.AddressPool``): the rules of its module docs, one
test each, and a rule-based state machine that drives a pool through random assignments and
releases and checks after every step that no address is held twice, that nothing reserved or
outside the hosts is ever handed out, and that the pool agrees with a plain model."""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from golem_trio import GolemError
from golem_trio.network import AddressError, AddressPool, AddressSpaceExhausted, parse_network

NET = ipaddress.ip_network("10.0.0.0/29")  # hosts .1 - .6


def pool(reserved: tuple[str, ...] = ("10.0.0.1",)) -> AddressPool:
    return AddressPool.of(NET, reserved)


def test_the_lowest_free_host_comes_first_and_reserved_ones_never() -> None:
    p = pool()
    assert [str(p.assign(h)) for h in "abc"] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_holder_keeps_its_address() -> None:
    p = pool()
    first = p.assign("a")
    assert p.assign("a", "10.0.0.6") == first


def test_a_free_preferred_address_is_given_a_taken_one_is_not() -> None:
    p = pool()
    assert str(p.assign("a", "10.0.0.5")) == "10.0.0.5"
    assert str(p.assign("b", "10.0.0.5")) == "10.0.0.2"


def test_a_released_address_comes_back_to_whoever_asks_for_it() -> None:
    p = pool()
    ip = p.assign("a", "10.0.0.4")
    p.assign("b")
    assert p.release("a") == ip
    assert p.release("a") is None
    assert p.assign("a", str(ip)) == ip


@pytest.mark.parametrize(
    "address", ["10.0.0.0", "10.0.0.7", "10.0.1.2", "10.0.0.1", "not-an-ip", "10.0.0.2/32"]
)
def test_addresses_no_node_may_get_are_refused(address: str) -> None:
    with pytest.raises(AddressError) as refused:
        pool().assign("a", address)
    assert isinstance(refused.value, GolemError)
    assert isinstance(refused.value, ValueError)


def test_a_full_network_is_a_typed_error_at_once() -> None:
    p = pool()
    for holder in range(p.capacity):
        p.assign(holder)
    assert p.capacity == 5
    with pytest.raises(AddressSpaceExhausted) as full:
        p.assign("one too many")
    assert full.value.held == 5
    assert "10.0.0.0/29" in str(full.value)


def test_tiny_networks() -> None:
    assert AddressPool.of(ipaddress.ip_network("10.0.0.0/31")).capacity == 2
    single = AddressPool.of(ipaddress.ip_network("10.0.0.9/32"))
    assert str(single.assign("a")) == "10.0.0.9"
    with pytest.raises(AddressSpaceExhausted):
        single.assign("b")


def test_parse_network() -> None:
    assert parse_network("192.168.0.7/24") == ipaddress.ip_network("192.168.0.0/24")
    assert parse_network("192.168.0.0", "255.255.0.0") == ipaddress.ip_network("192.168.0.0/16")
    with pytest.raises(AddressError):
        parse_network("192.168.0.0/24", "255.255.0.0")
    with pytest.raises(AddressError):
        parse_network("nonsense")


class PoolMachine(RuleBasedStateMachine):
    """Random assignments and releases against a plain model: ``model[holder] = address``."""

    holders = Bundle("holders")

    def __init__(self) -> None:
        super().__init__()
        self.pool = AddressPool.of(NET, ["10.0.0.1", "10.0.0.6"])
        self.model: dict[Hashable, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        self.next_holder = 0

    @rule(target=holders, preferred=st.none() | st.integers(2, 5).map(lambda n: f"10.0.0.{n}"))
    def assign_new(self, preferred: str | None) -> int:
        holder = self.next_holder
        self.next_holder += 1
        free = [ip for ip in NET.hosts() if ip not in self.pool.reserved]
        free = [ip for ip in free if ip not in self.model.values()]
        if not free:
            with pytest.raises(AddressSpaceExhausted):
                self.pool.assign(holder, preferred)
            return holder
        ip = self.pool.assign(holder, preferred)
        if preferred is not None and ipaddress.ip_address(preferred) in free:
            assert str(ip) == preferred
        else:
            assert ip == min(free)
        self.model[holder] = ip
        return holder

    @rule(holder=holders)
    def assign_again(self, holder: int) -> None:
        if holder in self.model:
            assert self.pool.assign(holder, "10.0.0.2") == self.model[holder]

    @rule(holder=consumes(holders))
    def release(self, holder: int) -> None:
        assert self.pool.release(holder) == self.model.pop(holder, None)

    @precondition(lambda self: bool(self.model))
    @rule()
    def release_all(self) -> None:
        for holder in list(self.model):
            assert self.pool.release(holder) == self.model.pop(holder)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert dict(self.pool.held) == self.model
        addresses = list(self.pool.held.values())
        assert len(addresses) == len(set(addresses)), "an address held twice"
        for holder, ip in self.model.items():
            assert ip in NET
            assert ip not in (NET.network_address, NET.broadcast_address)
            assert ip not in self.pool.reserved
            assert self.pool.holder_of(ip) == holder
            assert self.pool.address_of(holder) == ip


PoolMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
test_address_pool_state_machine = PoolMachine.TestCase
