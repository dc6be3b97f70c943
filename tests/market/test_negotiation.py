"""Negotiation and signing (:func:`open_negotiation`) on a LocalNet in virtual time."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from golem_trio.localnet import LocalNet, ProviderPopulation, ProviderSpec, open_localnet
from golem_trio.localnet.providers import _model as provider_module
from golem_trio.market import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    AgreementInfo,
    AgreementRejected,
    AgreementSigned,
    PriceCaps,
    ProposalReceived,
    ProposalRejected,
    ProviderBanned,
    open_negotiation,
    prefer,
)
from golem_trio.terms import CPU_SEC, DURATION_SEC, LINEAR_COEFFS, USAGE_VECTOR
from golem_trio.yagna import ApiConfig, DemandOfferBase, YagnaClient

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PLATFORM = "erc20-holesky-tglm"


def demand(expires_in: float = 3 * 3600) -> DemandOfferBase:
    expiration = int((EPOCH.timestamp() + expires_in) * 1000)
    properties = {
        "golem.srv.comp.expiration": expiration,
        "golem.node.debug.subnet": "public",
        ACCEPT_TIMEOUT: 120,
        DEBIT_NOTE_INTERVAL: 60,
    }
    return DemandOfferBase(properties, "(golem.node.debug.subnet=public)")


def now() -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=trio.current_time())


def specs(count: int) -> list[ProviderSpec]:
    """``count`` providers, ``p0`` the cheapest: signing tries them in order."""
    return [
        ProviderSpec(name=f"p{i}", price_cpu_sec=Decimal("0.0001") * (i + 1)) for i in range(count)
    ]


@pytest.fixture
async def net() -> AsyncIterator[LocalNet]:
    async with open_localnet(specs(4), epoch=EPOCH) as localnet:
        yield localnet


@pytest.fixture
async def yagna(net: LocalNet) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=net.transport()) as client:
        yield client


def states(net: LocalNet) -> list[str]:
    return [a.state.value for a in net.market.agreements.values()]


def live_demands(net: LocalNet) -> int:
    return sum(1 for d in net.market.demands.values() if d.expires > trio.current_time())


async def test_signs_agreements_with_distinct_providers_concurrently(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    events: list[object] = []
    signed: list[AgreementInfo] = []
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, emit=events.append
    ) as market:

        async def one() -> None:
            signed.append(await market.sign())

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
    assert len({info.provider_id for info in signed}) == 4
    assert {info.provider_name for info in signed} == {"p0", "p1", "p2", "p3"}
    assert states(net) == ["Approved"] * 4
    for info in signed:
        assert info.terms[ACCEPT_TIMEOUT] == 120
        assert info.terms[DEBIT_NOTE_INTERVAL] == 120  # never below the provider's
    assert sum(isinstance(e, AgreementSigned) for e in events) == 4


async def test_provider_rejecting_proposals_is_banned(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    for name in ("p0", "p1", "p2"):
        net.faults.reject_proposals(name)
    events: list[object] = []
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, emit=events.append
    ) as market:
        with trio.fail_after(120):
            info = await market.sign()
    assert info.provider_name == "p3"
    rejected = [e for e in events if isinstance(e, ProposalRejected)]
    assert len(rejected) == 3
    assert all(not e.final for e in rejected)
    assert len(market.rejections) == 3
    assert sum(isinstance(e, ProviderBanned) for e in events) == 3


async def test_provider_never_approving_is_cancelled_and_banned(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    for name in ("p0", "p1", "p2"):
        net.faults.never_approve(name)
    events: list[object] = []
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, emit=events.append, approval_wait=30
    ) as market:
        with trio.fail_after(600):
            info = await market.sign()
    assert info.provider_name == "p3"
    assert sorted(states(net)) == ["Approved", "Cancelled", "Cancelled", "Cancelled"]
    rejections = [e for e in events if isinstance(e, AgreementRejected)]
    assert [e.reason for e in rejections] == ["timeout"] * 3
    assert sum(isinstance(e, ProviderBanned) for e in events) == 3


async def test_price_caps_filter_expensive_providers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cheap = ProviderSpec(name="cheap", price_cpu_sec=Decimal("0.0001"))
    dear = [ProviderSpec(name=f"dear{i}", price_cpu_sec=Decimal("0.01")) for i in range(3)]
    async with open_localnet([*dear, cheap], epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            caps = PriceCaps(max_cpu_sec="0.001")
            async with open_negotiation(
                yagna, demand(), platform=PLATFORM, now=now, offer_filter=caps
            ) as market:
                info = await market.sign()
                assert info.provider_name == "cheap"
                with trio.move_on_after(60) as waited:
                    await market.sign()
                assert waited.cancelled_caught  # no other offer passes the caps
            assert states(net).count("Approved") == 1
            assert "Pending" not in states(net)


async def test_resubscribes_after_the_demand_expires(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    async with open_negotiation(
        yagna, demand(expires_in=5 * 3600), platform=PLATFORM, now=now
    ) as market:
        await market.sign()
        first = market.subscription_id
        await trio.sleep(3700)  # the daemon drops subscriptions after an hour
        info = await market.sign()
        assert market.subscriptions >= 2
        assert market.subscription_id != first
        assert info.agreement_id in net.market.agreements


async def test_cancelled_sign_leaves_no_pending_agreement(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    for spec in specs(4):
        net.faults.never_approve(spec.name)
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, approval_wait=600
    ) as market:
        with trio.move_on_after(20) as scope:
            await market.sign()
        assert scope.cancelled_caught
    assert states(net) == ["Cancelled"]


async def test_exiting_unsubscribes_the_demand(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    async with open_negotiation(yagna, demand(), platform=PLATFORM, now=now) as market:
        assert live_demands(net) == 1
        assert market.subscription_id is not None
    assert live_demands(net) == 0
    assert await yagna.market.get_demands() == []


async def test_population_of_providers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_localnet(ProviderPopulation(count=20, seed=3), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_negotiation(
                yagna, demand(), platform=PLATFORM, now=now, max_parallel=5
            ) as market:
                results: list[AgreementInfo] = []

                async def one() -> None:
                    results.append(await market.sign())

                async with trio.open_nursery() as nursery:
                    for _ in range(20):
                        nursery.start_soon(one)
            assert len({r.provider_id for r in results}) == 20
            assert states(net) == ["Approved"] * 20


async def test_final_rejections_ban_every_provider(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    too_short = DemandOfferBase(
        {**demand().properties, ACCEPT_TIMEOUT: 10}, demand().constraints
    )  # below every provider's minimum accept timeout: refused for good
    events: list[object] = []
    async with open_negotiation(
        yagna, too_short, platform=PLATFORM, now=now, emit=events.append
    ) as market:
        with trio.move_on_after(30):
            await market.sign()
    rejected = [e for e in events if isinstance(e, ProposalRejected)]
    assert len(rejected) == 4
    assert all(e.final for e in rejected)
    assert "accept timeout" in rejected[0].reason
    assert {e.provider_id for e in events if isinstance(e, ProviderBanned)} == {
        identity.node_id for identity, _ in net.providers
    }
    assert net.market.agreements == {}


async def test_filtered_offers_are_reported(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    events: list[object] = []
    caps = PriceCaps(max_cpu_sec="0.00025")  # p0 and p1 only
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, emit=events.append, offer_filter=caps
    ) as market:
        await market.sign()
    received = [e for e in events if isinstance(e, ProposalReceived)]
    assert sorted((e.provider_name, e.accepted) for e in received) == [
        ("p0", True),
        ("p1", True),
        ("p2", False),
        ("p3", False),
    ]


async def test_draft_with_other_terms_is_countered_again(
    autojump_clock: trio.testing.MockClock,
    net: LocalNet,
    yagna: YagnaClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = provider_module.negotiate
    calls: list[int] = []

    def haggling(
        spec: ProviderSpec, node_id: str, wanted: Mapping[str, Any], at: dt.datetime
    ) -> provider_module.Counter | provider_module.Rejection:
        calls.append(1)
        answer = real(spec, node_id, wanted, at)
        if len(calls) == 1 and isinstance(answer, provider_module.Counter):
            # The first Draft asks for a longer debit-note interval than we countered with.
            properties = {**answer.properties, DEBIT_NOTE_INTERVAL: 300}
            return attrs.evolve(answer, properties=properties)
        return answer

    monkeypatch.setattr(provider_module, "negotiate", haggling)
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, max_rounds=2
    ) as market:
        info = await market.sign()
    assert len(calls) == 2  # our counter, then our answer to its Draft
    assert info.terms[DEBIT_NOTE_INTERVAL] == 300
    assert states(net) == ["Approved"]


async def test_terms_the_demand_leaves_open_are_the_providers(
    autojump_clock: trio.testing.MockClock, net: LocalNet, yagna: YagnaClient
) -> None:
    # No debit-note interval in the demand: the provider's Draft names its own, which is
    # accepted as it is instead of countering until the rounds run out.
    open_demand = demand()
    properties = {k: v for k, v in open_demand.properties.items() if k != DEBIT_NOTE_INTERVAL}
    async with open_negotiation(
        yagna, DemandOfferBase(properties, open_demand.constraints), platform=PLATFORM, now=now
    ) as market:
        with trio.fail_after(120):
            info = await market.sign()
    assert info.terms[DEBIT_NOTE_INTERVAL] == ProviderSpec(name="x").debit_note_interval
    assert info.terms[ACCEPT_TIMEOUT] == 120
    assert market.rejections == []


def price_unbounded_counter(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The same prices, plus one on a usage counter that nothing bounds."""
    cpu, duration, fixed = properties[LINEAR_COEFFS]
    return {
        **properties,
        USAGE_VECTOR: [CPU_SEC, DURATION_SEC, "golem.usage.gib"],
        LINEAR_COEFFS: [cpu, duration, 0.5, fixed],
    }


async def test_an_offer_billing_could_not_pay_is_never_chosen(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # p0 is the cheapest by CPU and duration and the scorer prefers it, but it also prices a
    # counter billing cannot bound: it must not be signed, whatever the scorer says.
    real = provider_module.offer_properties

    def sly(spec: ProviderSpec, node_id: str) -> dict[str, Any]:
        properties = real(spec, node_id)
        return price_unbounded_counter(properties) if spec.name == "p0" else properties

    monkeypatch.setattr(provider_module, "offer_properties", sly)
    events: list[object] = []
    async with open_localnet(specs(4), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_negotiation(
                yagna,
                demand(),
                platform=PLATFORM,
                now=now,
                emit=events.append,
                scorer=prefer(["p0"]),
            ) as market:
                with trio.fail_after(120):
                    info = await market.sign()
            assert info.provider_name != "p0"
            assert states(net) == ["Approved"]  # no agreement was ever made with p0
    received = {e.provider_name: e.accepted for e in events if isinstance(e, ProposalReceived)}
    assert received["p0"] is False
    assert market.rejections == []


async def test_a_draft_billing_could_not_pay_is_not_signed(
    autojump_clock: trio.testing.MockClock,
    net: LocalNet,
    yagna: YagnaClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # p0's offer is fine, but its Draft (the agreement's offer side) prices a counter billing
    # cannot bound: p0 is banned before any agreement is made, and p1 is signed instead.
    real = provider_module.negotiate

    def bait_and_switch(
        spec: ProviderSpec, node_id: str, wanted: Mapping[str, Any], at: dt.datetime
    ) -> provider_module.Counter | provider_module.Rejection:
        answer = real(spec, node_id, wanted, at)
        if spec.name == "p0" and isinstance(answer, provider_module.Counter):
            return attrs.evolve(answer, properties=price_unbounded_counter(answer.properties))
        return answer

    monkeypatch.setattr(provider_module, "negotiate", bait_and_switch)
    events: list[object] = []
    async with open_negotiation(
        yagna, demand(), platform=PLATFORM, now=now, emit=events.append
    ) as market:
        with trio.fail_after(120):
            info = await market.sign()
    assert info.provider_name == "p1"
    assert states(net) == ["Approved"]
    [banned] = [e for e in events if isinstance(e, ProviderBanned)]
    assert "unusable terms" in banned.reason
    assert "golem.usage.gib" in banned.reason
