"""The emulated market, driven through the project's own client, in virtual time and over a
real socket."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from golem_trio.localnet import LocalNet, ProviderPopulation, open_localnet
from golem_trio.localnet.providers import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, ProviderSpec
from golem_trio.yagna import (
    AgreementApprovedEvent,
    AgreementState,
    AgreementTerminatedEvent,
    ApiConfig,
    BadRequest,
    Conflict,
    DemandOfferBase,
    Gone,
    NotFound,
    ProposalEvent,
    ProposalRejectedEvent,
    ProposalState,
    Reason,
    Unauthorized,
    YagnaClient,
)

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def demand(expires_in: float = 1200, **extra: Any) -> DemandOfferBase:
    expiration = int((EPOCH.timestamp() + expires_in) * 1000)
    properties = {
        "golem.srv.comp.expiration": expiration,
        "golem.node.debug.subnet": "public",
        "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
        ACCEPT_TIMEOUT: 120,
        DEBIT_NOTE_INTERVAL: 60,
        **extra,
    }
    constraints = "(&(golem.node.debug.subnet=public)(golem.runtime.name=vm)(golem.inf.mem.gib>=1))"
    return DemandOfferBase(properties, constraints)


async def collect(yagna: YagnaClient, sub: str, count: int) -> list[Any]:
    events: list[Any] = []
    with trio.fail_after(60):
        while len(events) < count:
            events += await yagna.market.collect_offers(sub, wait=5)
    return events


async def negotiate_one(yagna: YagnaClient, sub: str) -> tuple[str, ProposalEvent]:
    """Counter the first offer and return the provider's Draft."""
    (first, *_) = await collect(yagna, sub, 1)
    assert isinstance(first, ProposalEvent)
    assert first.proposal.state is ProposalState.INITIAL
    ours = await yagna.market.counter_proposal_demand(sub, first.proposal.proposal_id, demand())
    (draft,) = await collect(yagna, sub, 1)
    assert isinstance(draft, ProposalEvent)
    return ours, draft


# pytest-trio runs a test on the clock it finds among the *test's* arguments, so every
# virtual-time test below asks for ``autojump_clock`` itself.
@pytest.fixture
async def localnet() -> AsyncIterator[LocalNet]:
    async with open_localnet(ProviderPopulation(count=3, seed=7), epoch=EPOCH) as net:
        yield net


@pytest.fixture
async def yagna(localnet: LocalNet) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=localnet.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as client:
        yield client


async def test_every_matching_offer_arrives_as_an_initial_proposal(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    events = await collect(yagna, sub, 3)
    issuers = {e.proposal.issuer_id for e in events}
    assert issuers == {identity.node_id for identity, _ in localnet.providers}
    for event in events:
        assert event.proposal.proposal_id.startswith("R-")
        assert event.proposal.properties["golem.com.pricing.model"] == "linear"
    # Consumed: nothing more to read.
    assert await yagna.market.collect_offers(sub, wait=1) == []
    (listed,) = await yagna.market.get_demands()
    assert listed.demand_id == sub


async def test_negotiation_to_approval_and_termination(
    autojump_clock: trio.testing.MockClock, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    ours, draft = await negotiate_one(yagna, sub)
    assert draft.proposal.state is ProposalState.DRAFT
    assert draft.proposal.prev_proposal_id == ours
    # The provider kept our shorter accept timeout and our longer interval? No: the interval
    # is never shorter than its own.
    assert draft.proposal.properties[ACCEPT_TIMEOUT] == 120
    assert draft.proposal.properties[DEBIT_NOTE_INTERVAL] == 120

    valid_to = EPOCH + dt.timedelta(hours=1)
    agreement_id = await yagna.market.create_agreement(draft.proposal.proposal_id, valid_to)
    with pytest.raises(Conflict):
        await yagna.market.create_agreement(draft.proposal.proposal_id, valid_to)
    with pytest.raises(BadRequest):
        await yagna.market.wait_for_approval(agreement_id, wait=1)
    await yagna.market.confirm_agreement(agreement_id, app_session_id="s1")
    result = await yagna.market.wait_for_approval(agreement_id, wait=15)
    assert result.approved

    agreement = await yagna.market.get_agreement(agreement_id)
    assert agreement.state is AgreementState.APPROVED
    assert agreement.app_session_id == "s1"
    assert agreement.offer.provider_id == draft.proposal.issuer_id

    (approved,) = await yagna.market.collect_agreement_events(wait=1, app_session_id="s1")
    assert isinstance(approved, AgreementApprovedEvent)
    assert approved.agreement_id == agreement_id
    # Persistent, selected strictly after the timestamp given.
    assert await yagna.market.collect_agreement_events(wait=1) == [approved]
    later = await yagna.market.collect_agreement_events(wait=1, after_timestamp=approved.event_date)
    assert later == []

    reason = Reason("all done", {"golem.requestor.code": "Success"})
    await yagna.market.terminate_agreement(agreement_id, reason)
    (terminated,) = await yagna.market.collect_agreement_events(
        wait=1, after_timestamp=approved.event_date
    )
    assert isinstance(terminated, AgreementTerminatedEvent)
    assert terminated.terminator == "Requestor"
    assert terminated.reason == reason
    read_back = await yagna.market.get_terminate_agreement_reason(agreement_id)
    assert read_back.reason == reason
    assert read_back.terminator == "Requestor"
    with pytest.raises(Gone):
        await yagna.market.terminate_agreement(agreement_id, reason)


async def test_provider_rejects_what_it_cannot_accept(
    autojump_clock: trio.testing.MockClock, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    (first, *_) = await collect(yagna, sub, 3)
    too_soon = demand(expires_in=60)
    ours = await yagna.market.counter_proposal_demand(sub, first.proposal.proposal_id, too_soon)
    (rejected,) = await collect(yagna, sub, 1)
    assert isinstance(rejected, ProposalRejectedEvent)
    assert rejected.proposal_id == ours
    assert rejected.reason is not None
    assert rejected.reason.code("golem.proposal.rejection.is-final") is True


async def test_agreement_rules_of_the_daemon(
    autojump_clock: trio.testing.MockClock, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    (first, *_) = await collect(yagna, sub, 3)
    in_an_hour = EPOCH + dt.timedelta(hours=1)
    # An Initial proposal cannot be promoted (the daemon answers 400, the spec says 409).
    with pytest.raises(BadRequest):
        await yagna.market.create_agreement(first.proposal.proposal_id, in_an_hour)
    ours = await yagna.market.counter_proposal_demand(sub, first.proposal.proposal_id, demand())
    with pytest.raises(BadRequest):
        await yagna.market.create_agreement(ours, in_an_hour)
    with pytest.raises(NotFound):
        await yagna.market.get_agreement("0" * 64)


async def test_unsubscribed_and_expired_demands_are_gone(
    autojump_clock: trio.testing.MockClock, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    await yagna.market.unsubscribe_demand(sub)
    with pytest.raises(NotFound):
        await yagna.market.collect_offers(sub, wait=1)

    sub = await yagna.market.subscribe_demand(demand())
    await collect(yagna, sub, 3)
    await trio.sleep(3601)
    with pytest.raises(NotFound):
        await yagna.market.collect_offers(sub, wait=1)
    assert await yagna.market.get_demands() == []


async def test_unsubscribing_wakes_a_waiting_poll(
    autojump_clock: trio.testing.MockClock, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    await collect(yagna, sub, 3)

    async def unsubscribe_soon() -> None:
        await trio.sleep(1)
        await yagna.market.unsubscribe_demand(sub)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(unsubscribe_soon)
        with pytest.raises(NotFound):
            await yagna.market.collect_offers(sub, wait=30)


async def test_requestor_rejects_an_offer(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet, yagna: YagnaClient
) -> None:
    sub = await yagna.market.subscribe_demand(demand())
    (first, *_) = await collect(yagna, sub, 3)
    await yagna.market.reject_proposal_offer(sub, first.proposal.proposal_id, Reason("too dear"))
    with pytest.raises(BadRequest):
        await yagna.market.counter_proposal_demand(sub, first.proposal.proposal_id, demand())


async def test_errors_are_shaped_as_the_daemon_shapes_them(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    async with httpx2.AsyncClient(transport=localnet.transport(), base_url="http://x") as raw:
        reply = await raw.get("/me")
        assert (reply.status_code, reply.text) == (401, "Missing application key")
        assert reply.headers["content-type"].startswith("text/plain")
        reply = await raw.get("/me", headers={"Authorization": "Bearer nope"})
        assert (reply.status_code, reply.text) == (401, "Invalid application key")
        reply = await raw.get("/me", params={"authToken": localnet.app_key})
        assert reply.json()["identity"] == localnet.requestor.node_id
        auth = {"Authorization": f"Bearer {localnet.app_key}"}
        reply = await raw.post(
            "/market-api/v1/demands",
            json={"properties": {}, "constraints": "()"},
            headers=auth,
        )
        assert reply.status_code == 201
        sub = reply.json()
        reply = await raw.get(f"/market-api/v1/demands/{sub}/events?maxEvents=0", headers=auth)
        assert reply.status_code == 400
        reply = await raw.get("/version/get")
        assert reply.json()["pending"] is None


async def test_unauthorized_client_gets_a_typed_error(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    config = ApiConfig(app_key="wrong", api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as yagna:
        with pytest.raises(Unauthorized, match="Invalid application key"):
            await yagna.identity.get_identity()


async def test_served_over_a_real_socket() -> None:
    specs = [ProviderSpec(name="solo")]
    async with open_localnet(specs, serve=True) as net:
        assert net.url is not None
        assert net.url.startswith("http://127.0.0.1:")
        async with YagnaClient(ApiConfig(app_key=net.app_key, api_url=net.url)) as yagna:
            me = await yagna.identity.get_identity()
            assert me.identity == net.requestor.node_id
            expiration = int((dt.datetime.now(dt.UTC).timestamp() + 1200) * 1000)
            sub = await yagna.market.subscribe_demand(
                DemandOfferBase(
                    {"golem.srv.comp.expiration": expiration, "golem.node.debug.subnet": "public"},
                    "(golem.node.debug.subnet=public)",
                )
            )
            with trio.fail_after(10):
                events = await yagna.market.collect_offers(sub, wait=5)
            assert [e.proposal.properties["golem.node.id.name"] for e in events] == ["solo"]
