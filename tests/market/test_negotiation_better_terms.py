"""Negotiation accepts Drafts whose terms are as good or better for the requestor
(``golem_trio.terms.terms_shortfall``) and still refuses worse ones, on a LocalNet in virtual
time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from golem_trio.localnet import ProviderSpec, open_localnet
from golem_trio.localnet.providers import _model as provider_module
from golem_trio.market import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    AgreementSigned,
    ProviderBanned,
    open_negotiation,
)
from golem_trio.terms import PAYMENT_TIMEOUT, Terms, terms_shortfall
from golem_trio.yagna import ApiConfig, DemandOfferBase, YagnaClient

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PLATFORM = "erc20-holesky-tglm"
WANTED = {ACCEPT_TIMEOUT: 120, DEBIT_NOTE_INTERVAL: 60}


def demand() -> DemandOfferBase:
    expiration = int((EPOCH.timestamp() + 3 * 3600) * 1000)
    properties = {
        "golem.srv.comp.expiration": expiration,
        "golem.node.debug.subnet": "public",
        **WANTED,
    }
    return DemandOfferBase(properties, "(golem.node.debug.subnet=public)")


def now() -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=trio.current_time())


def test_terms_as_good_or_better() -> None:
    assert terms_shortfall(WANTED, WANTED) is None
    assert terms_shortfall(WANTED, {ACCEPT_TIMEOUT: 240, DEBIT_NOTE_INTERVAL: 120}) is None
    assert terms_shortfall({PAYMENT_TIMEOUT: 3600}, {PAYMENT_TIMEOUT: 7200}) is None
    # Terms we leave open are the provider's.
    assert terms_shortfall({}, {DEBIT_NOTE_INTERVAL: 600}) is None
    shorter = terms_shortfall(WANTED, {ACCEPT_TIMEOUT: 60, DEBIT_NOTE_INTERVAL: 60})
    assert shorter is not None
    assert ACCEPT_TIMEOUT in shorter
    assert terms_shortfall(WANTED, {ACCEPT_TIMEOUT: 120, DEBIT_NOTE_INTERVAL: 30}) is not None
    too_long = terms_shortfall(WANTED, {ACCEPT_TIMEOUT: 120, DEBIT_NOTE_INTERVAL: 121})
    assert too_long is not None
    assert "times" in too_long
    assert terms_shortfall(WANTED, {ACCEPT_TIMEOUT: 120}) is not None
    assert terms_shortfall({PAYMENT_TIMEOUT: 3600}, {PAYMENT_TIMEOUT: 60}) is not None
    assert terms_shortfall(WANTED, {ACCEPT_TIMEOUT: "soon", DEBIT_NOTE_INTERVAL: 60}) is not None


def test_billing_reads_an_agreement_on_better_terms_with_ours() -> None:
    # The agreement's accept timeout is the shorter of the sides (ours): billing and the market
    # agree on what was asked for.
    offer = {
        "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        "golem.com.pricing.model.linear.coeffs": [0.1, 0.01, 0.0],
        "golem.inf.cpu.threads": 2,
        ACCEPT_TIMEOUT: 240,
        DEBIT_NOTE_INTERVAL: 90,
    }
    assert terms_shortfall(WANTED, offer) is None
    terms = Terms.from_properties(offer, WANTED)
    assert terms.accept_timeout == 120
    assert terms.debit_note_interval == 90


async def sign_with_provider_answering(
    monkeypatch: pytest.MonkeyPatch, answer_terms: Mapping[str, Any]
) -> tuple[list[object], int]:
    """Sign on a LocalNet of two providers, ``p0`` (the cheapest, so tried first) answering
    every proposal with ``answer_terms``; returns the events and how many times p0 answered."""
    real = provider_module.negotiate
    calls: list[str] = []

    def answering(
        spec: ProviderSpec, node_id: str, wanted: Mapping[str, Any], at: dt.datetime
    ) -> provider_module.Counter | provider_module.Rejection:
        answer = real(spec, node_id, wanted, at)
        if spec.name == "p0" and isinstance(answer, provider_module.Counter):
            calls.append(spec.name)
            properties = {**answer.properties, **answer_terms}
            properties = {k: v for k, v in properties.items() if v is not None}
            return attrs.evolve(answer, properties=properties)
        return answer

    monkeypatch.setattr(provider_module, "negotiate", answering)
    from decimal import Decimal

    specs = [
        ProviderSpec(name="p0", price_cpu_sec=Decimal("0.0001")),
        ProviderSpec(name="p1", price_cpu_sec=Decimal("0.0002")),
    ]
    events: list[object] = []
    async with open_localnet(specs, epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_negotiation(
                yagna, demand(), platform=PLATFORM, now=now, emit=events.append
            ) as market:
                with trio.fail_after(300):
                    await market.sign()
    return events, len(calls)


@pytest.mark.parametrize(
    "answer",
    [
        {ACCEPT_TIMEOUT: 240},
        {DEBIT_NOTE_INTERVAL: 180},  # the offer's is 120: longer, within twice it
        {ACCEPT_TIMEOUT: 240, DEBIT_NOTE_INTERVAL: 240},
    ],
    ids=["longer-accept-timeout", "longer-interval", "both"],
)
async def test_a_provider_answering_with_better_terms_is_signed(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    answer: Mapping[str, Any],
) -> None:
    events, rounds = await sign_with_provider_answering(monkeypatch, answer)
    [signed] = [e for e in events if isinstance(e, AgreementSigned)]
    assert signed.provider_name == "p0"
    assert rounds == 1  # its first Draft was taken
    assert not [e for e in events if isinstance(e, ProviderBanned)]


@pytest.mark.parametrize(
    "answer",
    [{DEBIT_NOTE_INTERVAL: 30}, {ACCEPT_TIMEOUT: None}],
    ids=["shorter-interval", "no-accept-timeout"],
)
async def test_a_provider_answering_with_worse_terms_is_refused(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    answer: Mapping[str, Any],
) -> None:
    events, rounds = await sign_with_provider_answering(monkeypatch, answer)
    [signed] = [e for e in events if isinstance(e, AgreementSigned)]
    assert signed.provider_name == "p1"
    assert rounds == 3  # countered until the rounds ran out
    [banned] = [e for e in events if isinstance(e, ProviderBanned)]
    assert banned.reason == "no agreement on terms"


async def test_an_interval_past_the_bound_is_countered_not_taken(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 s is more than twice the 120 s countered: not taken as is, but countered (our
    # counter then names it, as the provider insists on it).
    events, rounds = await sign_with_provider_answering(monkeypatch, {DEBIT_NOTE_INTERVAL: 600})
    assert rounds == 2
    [signed] = [e for e in events if isinstance(e, AgreementSigned)]
    assert signed.provider_name == "p0"
