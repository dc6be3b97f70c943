"""Demands: yapapi's properties and constraints, decorations, counter-proposals, validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_trio.localnet.emulator import _constraints as emulator
from golem_trio.localnet.providers import Counter, ProviderSpec, negotiate, offer_properties
from golem_trio.localnet.providers._model import offer_constraints
from golem_trio.market import (
    ACCEPT_TIMEOUT,
    CHOSEN_PLATFORM,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    CustomPayload,
    DemandBuilder,
    DemandError,
    InvalidPlatform,
    VmPayload,
    build_demand,
    counter_properties,
    evaluate,
    parse,
    prop,
)
from golem_trio.yagna import DemandOfferBase, MarketDecoration, MarketProperty

IMAGE_HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
IMAGE_URL = "http://girepo.test/docker-hello-latest.gvmi"
PLATFORM = "erc20-holesky-tglm"
ADDRESS_PROPERTY = f"golem.com.payment.platform.{PLATFORM}.address"
NOW = dt.datetime(2024, 1, 18, 14, 0, tzinfo=dt.UTC)
EXPIRATION = NOW + dt.timedelta(minutes=30)
DECORATIONS = MarketDecoration(
    properties=[
        MarketProperty(ADDRESS_PROPERTY, "0xdead"),
        MarketProperty("golem.com.payment.protocol.version", "3"),
    ],
    constraints=[f"({ADDRESS_PROPERTY}=*)", "(golem.com.payment.protocol.version>1)"],
)
# docs/daemon-notes.md §3.1: yapapi's demand constraints for a VM payload with default resources.
YAPAPI_CONSTRAINTS = f"""(&(golem.node.debug.subnet=public)
\t({ADDRESS_PROPERTY}=*)
\t(golem.com.payment.protocol.version>1)
\t(&(golem.inf.mem.gib>=0.5)
\t(golem.inf.storage.gib>=2.0)
\t(golem.inf.cpu.threads>=1)
\t(golem.runtime.name=vm)))"""


def yapapi_demand(**overrides: Any) -> DemandOfferBase:
    arguments: dict[str, Any] = {
        "expiration": EXPIRATION,
        "payment_platform": PLATFORM,
        "decorations": DECORATIONS,
        "now": NOW,
    }
    arguments.update(overrides)
    payload = VmPayload(image_hash=IMAGE_HASH, image_url=IMAGE_URL)
    return build_demand(payload, **arguments)


def test_yapapi_demand_property_by_property() -> None:
    demand = yapapi_demand()
    assert demand.properties == {
        "golem.srv.comp.expiration": 1705588200000,
        "golem.srv.caps.multi-activity": True,
        "golem.node.debug.subnet": "public",
        "golem.srv.comp.task_package": f"hash:sha3:{IMAGE_HASH}:{IMAGE_URL}",
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
        ADDRESS_PROPERTY: "0xdead",
        "golem.com.payment.protocol.version": "3",
        ACCEPT_TIMEOUT: 120,
    }
    assert int(EXPIRATION.timestamp() * 1000) == 1705588200000
    assert parse(demand.constraints) == parse(YAPAPI_CONSTRAINTS)
    assert demand.constraints.startswith("(&(golem.node.debug.subnet=public)")


def test_negotiable_terms_and_extras() -> None:
    demand = yapapi_demand(
        expiration=NOW + dt.timedelta(hours=12),
        accept_timeout=60,
        debit_note_interval=120,
        payment_timeout=18000,
        extra_properties={"golem.srv.comp.custom": [1, 2]},
        extra_constraints=[prop("golem.inf.cpu.cores") >= 2, "(golem.node.net.is-public=true)"],
    )
    assert demand.properties[ACCEPT_TIMEOUT] == 60
    assert demand.properties[DEBIT_NOTE_INTERVAL] == 120
    assert demand.properties[PAYMENT_TIMEOUT] == 18000
    assert demand.properties["golem.srv.comp.custom"] == [1, 2]
    tree = parse(demand.constraints)
    assert tree.operands[-2:] == (  # type: ignore[union-attr]
        prop("golem.inf.cpu.cores") >= 2,
        prop("golem.node.net.is-public") == True,  # noqa: E712
    )
    no_terms = yapapi_demand(accept_timeout=None)
    assert ACCEPT_TIMEOUT not in no_terms.properties


def test_without_decorations_or_subnet() -> None:
    demand = yapapi_demand(decorations=None, subnet_tag=None)
    assert "golem.node.debug.subnet" not in demand.properties
    assert ADDRESS_PROPERTY not in demand.properties
    tree = parse(demand.constraints)
    assert tree.operands[0] == prop(ADDRESS_PROPERTY).present()  # type: ignore[union-attr]
    assert "golem.node.debug.subnet" not in demand.constraints


def test_decorations_are_merged() -> None:
    decorations = MarketDecoration(
        properties=[
            MarketProperty(ADDRESS_PROPERTY, "0xdead"),
            MarketProperty("golem.com.payment.platform.erc20-polygon-glm.address", "0xdead"),
            MarketProperty("golem.com.payment.protocol.version", "3"),
        ],
        constraints=[
            f"(|({ADDRESS_PROPERTY}=*)(golem.com.payment.platform.erc20-polygon-glm.address=*))",
            "(golem.com.payment.protocol.version>2)",
        ],
    )
    demand = yapapi_demand(decorations=decorations)
    for decoration in decorations.properties:
        assert demand.properties[decoration.key] == decoration.value
    operands = parse(demand.constraints).operands  # type: ignore[union-attr]
    assert operands[1:3] == tuple(parse(c) for c in decorations.constraints)


def test_the_demand_matches_a_localnet_offer_and_its_counter_is_accepted() -> None:
    spec = ProviderSpec("node-1")
    offer = offer_properties(spec, "0xbeef")
    demand = yapapi_demand()
    assert evaluate(parse(demand.constraints), offer) is True
    assert emulator.matches(
        demand.properties, demand.constraints, offer, offer_constraints(spec, NOW)
    )
    countered = counter_properties(demand, offer, PLATFORM)
    assert countered[CHOSEN_PLATFORM] == PLATFORM
    assert countered[ACCEPT_TIMEOUT] == min(120, spec.accept_timeout)
    answer = negotiate(spec, "0xbeef", countered, NOW)
    assert isinstance(answer, Counter)
    assert answer.properties[CHOSEN_PLATFORM] == PLATFORM


def test_counter_settles_the_negotiable_terms() -> None:
    demand = yapapi_demand(
        expiration=NOW + dt.timedelta(hours=12),
        accept_timeout=300,
        debit_note_interval=60,
        payment_timeout=20000,
    )
    offer = {
        ADDRESS_PROPERTY: "0xbeef",
        ACCEPT_TIMEOUT: 240,
        DEBIT_NOTE_INTERVAL: 120,
        PAYMENT_TIMEOUT: 18000,
    }
    countered = counter_properties(demand, offer, PLATFORM)
    assert countered[ACCEPT_TIMEOUT] == 240
    assert countered[DEBIT_NOTE_INTERVAL] == 120
    assert countered[PAYMENT_TIMEOUT] == 18000
    assert demand.properties[ACCEPT_TIMEOUT] == 300  # the demand itself is left alone
    # Terms the demand leaves out stay out.
    plain = counter_properties(yapapi_demand(accept_timeout=None), offer, PLATFORM)
    assert ACCEPT_TIMEOUT not in plain
    assert PAYMENT_TIMEOUT not in plain


def test_counter_needs_a_platform_the_offer_takes() -> None:
    demand = yapapi_demand()
    with pytest.raises(DemandError, match="does not accept"):
        counter_properties(demand, {ADDRESS_PROPERTY: "0xbeef"}, "erc20-polygon-glm")
    with pytest.raises(InvalidPlatform):
        counter_properties(demand, {ADDRESS_PROPERTY: "0xbeef"}, "holesky")
    polygon = "golem.com.payment.platform.erc20-polygon-glm.address"
    with pytest.raises(DemandError, match="the demand does not offer"):
        counter_properties(demand, {polygon: "0xbeef"}, "erc20-polygon-glm")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expiration": NOW - dt.timedelta(seconds=1)}, "not in the future"),
        ({"expiration": NOW}, "not in the future"),
        ({"expiration": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"payment_platform": "holesky"}, "payment platform"),
        ({"payment_platform": "ERC20-Holesky-TGLM"}, "payment platform"),
        ({"accept_timeout": -1}, "accept_timeout must be positive"),
        ({"accept_timeout": 0}, "accept_timeout must be positive"),
        ({"accept_timeout": 1.5}, "whole number"),
        ({"debit_note_interval": -60, "payment_timeout": 18000}, "debit_note_interval"),
        ({"debit_note_interval": 60, "payment_timeout": -5}, "payment_timeout"),
        ({"debit_note_interval": 60}, "go together"),
        ({"subnet_tag": "pub lic"}, "subnet"),
        ({"subnet_tag": "a)(b"}, "subnet"),
        ({"extra_properties": {"golem.srv.comp.expiration": 1}}, "set twice"),
        ({"extra_properties": {"x": float("nan")}}, "JSON value"),
        ({"extra_properties": {"a b": 1}}, "invalid property name"),
        ({"extra_constraints": ["(a=b"]}, "invalid constraint"),
    ],
)
def test_invalid_input_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DemandError, match=message):
        yapapi_demand(**overrides)


def test_invalid_platform_is_a_typed_error() -> None:
    with pytest.raises(InvalidPlatform):
        yapapi_demand(payment_platform="erc20_holesky")


def test_payload_clauses_are_checked() -> None:
    payload = CustomPayload(properties={"a": 1}, constraints=["(a b=1)"])
    with pytest.raises(DemandError, match="payload"):
        build_demand(payload, expiration=EXPIRATION, payment_platform=PLATFORM, now=NOW)


def test_builder() -> None:
    builder = DemandBuilder()
    builder.add("a", 1)
    builder.add("a", 1)
    builder.ensure("(a=1)")
    builder.ensure(prop("b").present())
    assert builder.build() == DemandOfferBase(properties={"a": 1}, constraints="(&(a=1)(b=*))")
    with pytest.raises(DemandError, match="set twice"):
        builder.add("a", 2)
    assert DemandBuilder().build().constraints == "(&)"


@settings(max_examples=100)
@given(
    minutes=st.integers(1, 60 * 24 * 30),
    accept=st.none() | st.integers(1, 10**6),
    terms=st.none() | st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)),
)
def test_any_valid_terms_build_a_consistent_demand(
    minutes: int, accept: int | None, terms: tuple[int, int] | None
) -> None:
    expiration = NOW + dt.timedelta(minutes=minutes, microseconds=1500)
    demand = yapapi_demand(
        expiration=expiration,
        accept_timeout=accept,
        debit_note_interval=None if terms is None else terms[0],
        payment_timeout=None if terms is None else terms[1],
    )
    expected_ms = int(NOW.timestamp()) * 1000 + minutes * 60_000 + 1
    assert demand.properties["golem.srv.comp.expiration"] == expected_ms
    assert demand.properties.get(ACCEPT_TIMEOUT) == accept
    assert parse(demand.constraints) == emulator_tree_round_trip(demand.constraints)


def emulator_tree_round_trip(text: str) -> object:
    # What the daemon's reading of the text renders back to, read again by the SDK.
    return parse(emulator.render(emulator.parse(text)))
