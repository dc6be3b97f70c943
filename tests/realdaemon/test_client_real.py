"""The golem_trio.yagna client (requestor side) against the real yagna daemon.

The provider side of each negotiation is played by :class:`RawProvider` with the provider's
app key on the same daemon. A demand matches every offer still subscribed, so each test
publishes on its own subnet, tags its offer with a unique ``test.run.id`` and picks proposals
by it; every test withdraws its offer and demand in ``finally``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from golem_trio.localnet.yagna import YAGNA_VERSION, YagnaNode
from golem_trio.yagna import (
    AgreementApprovedEvent,
    AgreementEvent,
    AgreementState,
    AgreementTerminatedEvent,
    ApiConfig,
    DemandOfferBase,
    Gone,
    NewNetwork,
    NotFound,
    Proposal,
    ProposalEvent,
    ProposalState,
    Reason,
    Unauthorized,
    YagnaClient,
)

from ._provider import RawProvider

TEST_DEADLINE = 60.0  # seconds; each test normally takes well under one
PLATFORM = "erc20-holesky-tglm"
RUNTIME = "golem-trio-test"


@pytest.fixture
async def requestor(yagna_node: YagnaNode) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=yagna_node.requestor_app_key, api_url=yagna_node.api_url)
    async with YagnaClient(config) as client:
        yield client


@pytest.fixture
async def provider(yagna_node: YagnaNode) -> AsyncIterator[RawProvider]:
    async with RawProvider(yagna_node.api_url, yagna_node.provider_app_key) as agent:
        yield agent


def _now_ms() -> int:
    return int(time.time() * 1000)


@attrs.frozen
class Scenario:
    """Matching demand and offer for one test, on a subnet of their own."""

    requestor_id: str
    provider_id: str
    run_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    @property
    def subnet(self) -> str:
        return f"golem-trio-{self.run_id[:12]}"

    def offer_properties(self) -> dict[str, Any]:
        return {
            "golem.node.id.name": "golem-trio-test-provider",
            "golem.node.debug.subnet": self.subnet,
            "test.run.id": self.run_id,
            "golem.runtime.name": RUNTIME,
            "golem.inf.cpu.threads": 1,
            "golem.inf.mem.gib": 1.0,
            "golem.inf.storage.gib": 2.0,
            "golem.com.scheme": "payu",
            "golem.com.pricing.model": "linear",
            "golem.com.pricing.model.linear.coeffs": [0.0, 0.0, 0.0],
            "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            f"golem.com.payment.platform.{PLATFORM}.address": self.provider_id,
            "golem.com.payment.protocol.version": "3",
            "golem.com.payment.debit-notes.accept-timeout?": 240,
        }

    def offer_constraints(self) -> str:
        return f"(&(golem.node.debug.subnet={self.subnet})(golem.srv.comp.expiration>{_now_ms()}))"

    def demand(self) -> DemandOfferBase:
        return DemandOfferBase(
            properties={
                "golem.node.debug.subnet": self.subnet,
                "golem.srv.comp.expiration": _now_ms() + 30 * 60 * 1000,
                "golem.srv.caps.multi-activity": True,
                f"golem.com.payment.platform.{PLATFORM}.address": self.requestor_id,
                "golem.com.payment.chosen-platform": PLATFORM,
                "golem.com.payment.protocol.version": "3",
                "golem.com.payment.debit-notes.accept-timeout?": 240,
            },
            constraints=(
                f"(&(golem.node.debug.subnet={self.subnet})"
                f"(golem.runtime.name={RUNTIME})"
                f"(test.run.id={self.run_id})"
                f"(golem.inf.cpu.threads>=1)"
                f"(golem.com.payment.platform.{PLATFORM}.address=*))"
            ),
        )

    def is_ours(self, proposal: Proposal) -> bool:
        return proposal.properties.get("test.run.id") == self.run_id


@pytest.fixture
def scenario(yagna_node: YagnaNode) -> Scenario:
    return Scenario(requestor_id=yagna_node.requestor_id, provider_id=yagna_node.provider_id)


@attrs.define
class Subscriptions:
    offer_id: str
    demand_id: str


@pytest.fixture
async def subscribed(
    requestor: YagnaClient, provider: RawProvider, scenario: Scenario
) -> AsyncIterator[Subscriptions]:
    """The scenario's offer and demand, both withdrawn when the test ends."""
    offer_id = await provider.subscribe_offer(
        scenario.offer_properties(), scenario.offer_constraints()
    )
    try:
        demand_id = await requestor.market.subscribe_demand(scenario.demand())
        try:
            yield Subscriptions(offer_id=offer_id, demand_id=demand_id)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                with contextlib.suppress(NotFound):  # the test may have withdrawn it
                    await requestor.market.unsubscribe_demand(demand_id)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await provider.unsubscribe_offer(offer_id)


async def _next_proposal(
    requestor: YagnaClient,
    scenario: Scenario,
    demand_id: str,
    state: ProposalState,
    *,
    within: float = 20.0,
) -> Proposal:
    """Poll the demand's events for our proposal in ``state`` (others are ignored)."""
    seen: list[str] = []
    with trio.move_on_after(within):
        while True:
            for event in await requestor.market.collect_offers(demand_id, wait=2.0):
                seen.append(type(event).__name__)
                if (
                    isinstance(event, ProposalEvent)
                    and scenario.is_ours(event.proposal)
                    and event.proposal.state == state
                ):
                    return event.proposal
    raise AssertionError(f"no {state} proposal of ours on demand {demand_id} (saw {seen})")


def _same_proposal(a: str, b: str) -> bool:
    """Each side names a proposal by its own prefix (``R-`` / ``P-``) and a shared hash."""
    return a.partition("-")[2] == b.partition("-")[2]


async def _negotiate_draft(
    requestor: YagnaClient, provider: RawProvider, scenario: Scenario, subs: Subscriptions
) -> Proposal:
    """Initial offer -> requestor counter -> provider counter; return the provider's Draft."""
    initial = await _next_proposal(requestor, scenario, subs.demand_id, ProposalState.INITIAL)
    our_id = await requestor.market.counter_proposal_demand(
        subs.demand_id, initial.proposal_id, scenario.demand()
    )
    ours = await provider.wait_for_event(
        subs.offer_id,
        "ProposalEvent",
        where=lambda e: _same_proposal(e["proposal"]["proposalId"], our_id),
    )
    assert ours["proposal"]["state"] == "Draft"
    await provider.counter(
        subs.offer_id,
        ours["proposal"]["proposalId"],
        scenario.offer_properties(),
        scenario.offer_constraints(),
    )
    draft = await _next_proposal(requestor, scenario, subs.demand_id, ProposalState.DRAFT)
    assert draft.issuer_id == scenario.provider_id
    assert draft.prev_proposal_id == our_id
    return draft


async def _agreement_events(
    requestor: YagnaClient,
    agreement_id: str,
    after: dt.datetime,
    app_session_id: str,
    wanted: type[AgreementEvent],
    *,
    within: float = 20.0,
) -> list[AgreementEvent]:
    """This agreement's events after ``after``, polled until one of type ``wanted`` shows."""
    found: list[AgreementEvent] = []
    cursor = after
    with trio.move_on_after(within):
        while not any(isinstance(e, wanted) for e in found):
            events = await requestor.market.collect_agreement_events(
                wait=2.0, after_timestamp=cursor, app_session_id=app_session_id
            )
            for event in events:
                cursor = max(cursor, getattr(event, "event_date", cursor))
                if getattr(event, "agreement_id", None) == agreement_id:
                    found.append(event)
        return found
    raise AssertionError(f"no {wanted.__name__} for {agreement_id} (saw {found})")


def _session_id() -> str:
    return f"golem-trio-{uuid.uuid4().hex[:8]}"


async def _approved_agreement(
    requestor: YagnaClient,
    provider: RawProvider,
    scenario: Scenario,
    subs: Subscriptions,
    app_session_id: str,
) -> str:
    draft = await _negotiate_draft(requestor, provider, scenario, subs)
    valid_to = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    agreement_id = await requestor.market.create_agreement(draft.proposal_id, valid_to)
    await requestor.market.confirm_agreement(agreement_id, app_session_id=app_session_id)

    async def provider_approves() -> None:
        event = await provider.wait_for_event(
            subs.offer_id,
            "AgreementEvent",
            where=lambda e: e["agreement"]["agreementId"] == agreement_id,
        )
        assert event["agreement"]["state"] == "Pending"
        await provider.approve(agreement_id, app_session_id=f"{app_session_id}-provider")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider_approves)
        result = await requestor.market.wait_for_approval(agreement_id, wait=15.0)
    assert result.approved, result
    return agreement_id


# --------------------------------------------------------------------------------------- tests


async def test_identity_and_version(requestor: YagnaClient, yagna_node: YagnaNode) -> None:
    with trio.fail_after(TEST_DEADLINE):
        me = await requestor.identity.get_identity()
        assert me.identity == yagna_node.requestor_id
        assert me.name == "requestor"
        version = await requestor.identity.get_version()
        assert version.current.version == YAGNA_VERSION
        assert version.pending is None

        as_provider = ApiConfig(app_key=yagna_node.provider_app_key, api_url=yagna_node.api_url)
        async with YagnaClient(as_provider) as client:
            assert (await client.identity.get_identity()).identity == yagna_node.provider_id

        wrong = ApiConfig(app_key="0" * 32, api_url=yagna_node.api_url)
        async with YagnaClient(wrong) as client:
            with pytest.raises(Unauthorized) as caught:
                await client.identity.get_identity()
            assert caught.value.status == 401
            assert caught.value.message == "Invalid application key"


async def test_demand_receives_the_providers_offer(
    requestor: YagnaClient, scenario: Scenario, subscribed: Subscriptions
) -> None:
    with trio.fail_after(TEST_DEADLINE):
        demands = await requestor.market.get_demands()
        ours = [d for d in demands if d.demand_id == subscribed.demand_id]
        assert len(ours) == 1
        assert ours[0].requestor_id == scenario.requestor_id

        initial = await _next_proposal(
            requestor, scenario, subscribed.demand_id, ProposalState.INITIAL
        )
        assert initial.issuer_id == scenario.provider_id
        assert initial.properties["golem.node.debug.subnet"] == scenario.subnet
        assert initial.properties["golem.runtime.name"] == RUNTIME

        again = await requestor.market.get_proposal_offer(subscribed.demand_id, initial.proposal_id)
        assert again.proposal_id == initial.proposal_id
        assert again.properties == initial.properties

        # Withdrawn demands are gone for good.
        await requestor.market.unsubscribe_demand(subscribed.demand_id)
        with pytest.raises(NotFound):
            await requestor.market.collect_offers(subscribed.demand_id, wait=0.5)


async def test_negotiation_reaches_an_approved_agreement(
    requestor: YagnaClient,
    provider: RawProvider,
    scenario: Scenario,
    subscribed: Subscriptions,
) -> None:
    session = _session_id()
    with trio.fail_after(TEST_DEADLINE):
        started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        agreement_id = await _approved_agreement(requestor, provider, scenario, subscribed, session)
        try:
            agreement = await requestor.market.get_agreement(agreement_id)
            assert agreement.agreement_id == agreement_id
            assert agreement.state == AgreementState.APPROVED
            assert agreement.demand.requestor_id == scenario.requestor_id
            assert agreement.offer.provider_id == scenario.provider_id
            assert agreement.offer.properties["test.run.id"] == scenario.run_id

            events = await _agreement_events(
                requestor, agreement_id, started, session, AgreementApprovedEvent
            )
            approved = [e for e in events if isinstance(e, AgreementApprovedEvent)]
            assert approved
            assert approved[0].event_date >= started

            listed = await requestor.market.list_agreements(app_session_id=session)
            assert agreement_id in {entry.id for entry in listed}
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await requestor.market.terminate_agreement(
                    agreement_id, Reason("test over", {"golem.requestor.code": "Success"})
                )


async def test_termination_reason_reads_back(
    requestor: YagnaClient,
    provider: RawProvider,
    scenario: Scenario,
    subscribed: Subscriptions,
) -> None:
    session = _session_id()
    with trio.fail_after(TEST_DEADLINE):
        agreement_id = await _approved_agreement(requestor, provider, scenario, subscribed, session)
        before_termination = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        reason = Reason(
            "Work finished", {"golem.requestor.code": "Success", "test.run.id": scenario.run_id}
        )
        await requestor.market.terminate_agreement(agreement_id, reason)

        read_back = await requestor.market.get_terminate_agreement_reason(agreement_id)
        assert read_back.agreement_id == agreement_id
        assert read_back.reason is not None
        assert read_back.reason.message == "Work finished"
        assert read_back.reason.code("golem.requestor.code") == "Success"
        assert read_back.reason.code("test.run.id") == scenario.run_id
        # With both identities on one daemon it reports "Provider" here (both copies of the
        # agreement live in one database); across two daemons it is "Requestor".
        assert read_back.terminator in ("Requestor", "Provider")

        events = await _agreement_events(
            requestor, agreement_id, before_termination, session, AgreementTerminatedEvent
        )
        terminated = [e for e in events if isinstance(e, AgreementTerminatedEvent)]
        assert terminated[0].reason is not None
        assert terminated[0].reason.code("golem.requestor.code") == "Success"

        agreement = await requestor.market.get_agreement(agreement_id)
        assert agreement.state == AgreementState.TERMINATED

        # Terminating twice: the daemon answers 410, which the client treats as done only
        # for its own retries; a fresh call surfaces it.
        with pytest.raises(Gone):
            await requestor.market.terminate_agreement(agreement_id, reason)


async def test_wait_for_approval_times_out_then_sees_rejection(
    requestor: YagnaClient,
    provider: RawProvider,
    scenario: Scenario,
    subscribed: Subscriptions,
) -> None:
    with trio.fail_after(TEST_DEADLINE):
        draft = await _negotiate_draft(requestor, provider, scenario, subscribed)
        valid_to = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        agreement_id = await requestor.market.create_agreement(draft.proposal_id, valid_to)
        await requestor.market.confirm_agreement(agreement_id)

        pending = await requestor.market.wait_for_approval(agreement_id, wait=1.0)
        assert not pending.approved
        assert pending.timed_out

        await provider.wait_for_event(
            subscribed.offer_id,
            "AgreementEvent",
            where=lambda e: e["agreement"]["agreementId"] == agreement_id,
        )
        await provider.reject_agreement(agreement_id, "not today")
        rejected = await requestor.market.wait_for_approval(agreement_id, wait=5.0)
        assert not rejected.approved
        assert not rejected.timed_out
        assert rejected.message == "Rejected"


@pytest.mark.parametrize("layout", ["v1", "v2"])
async def test_network_lifecycle(
    requestor: YagnaClient, yagna_node: YagnaNode, layout: str
) -> None:
    net_api = requestor.net if layout == "v1" else requestor.net_v2
    third_octet = 10 if layout == "v1" else 20
    prefix = f"192.168.{third_octet}"
    with trio.fail_after(TEST_DEADLINE):
        status = await net_api.get_status()
        assert status.node_id == yagna_node.requestor_id

        network = await net_api.create_network(
            NewNetwork(ip=f"{prefix}.0", mask="255.255.255.0", gateway=f"{prefix}.1")
        )
        assert network.id
        try:
            assert network.ip.startswith(f"{prefix}.0")
            assert network.id in {n.id for n in await net_api.get_networks()}
            assert (await net_api.get_network(network.id)).id == network.id

            await net_api.add_address(network.id, f"{prefix}.1")
            addresses = [a.ip for a in await net_api.get_addresses(network.id)]
            assert any(ip.split("/")[0] == f"{prefix}.1" for ip in addresses), addresses

            await net_api.add_node(network.id, yagna_node.provider_id, f"{prefix}.2")
            nodes = await net_api.get_nodes(network.id)
            assert [(n.id, n.ip.split("/")[0]) for n in nodes] == [
                (yagna_node.provider_id, f"{prefix}.2")
            ]
            # The spec lists the VPN's TCP connections at GET .../tcp; yagna 0.17.6 serves only
            # the websocket .../tcp/{ip}/{port}, so the listing is a bare 404.
            with pytest.raises(NotFound):
                await net_api.get_connections(network.id)

            await net_api.remove_node(network.id, yagna_node.provider_id)
            assert await net_api.get_nodes(network.id) == []
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await net_api.remove_network(network.id)

        assert network.id not in {n.id for n in await net_api.get_networks()}
        with pytest.raises(NotFound):
            await net_api.get_network(network.id)
