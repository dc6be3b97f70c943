"""The provider model driving the real yagna daemon through :class:`RestProviderPort`.

A :class:`ProviderAgent` publishes its offer with the provider's app key; the requestor side
is played with :class:`YagnaClient` and the requestor's app key on the same daemon. Each test
uses its own subnet and provider name, so other offers on the daemon never match.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import attrs
import pytest
import trio

from golem_trio.localnet.providers import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    AgreementLife,
    OfferGone,
    ProviderAgent,
    ProviderSpec,
)
from golem_trio.localnet.yagna import (
    DaemonBadRequest,
    DaemonGone,
    DaemonNotFound,
    DaemonUnauthorized,
    RestProviderPort,
    YagnaNode,
    provider_client,
)
from golem_trio.localnet.yagna._rest_port import REFUSED
from golem_trio.yagna import (
    AgreementEvent,
    AgreementTerminatedEvent,
    ApiConfig,
    BadRequest,
    DemandOfferBase,
    DocumentStatus,
    Proposal,
    ProposalEvent,
    ProposalRejectedEvent,
    ProposalState,
    Reason,
    YagnaClient,
)

TEST_DEADLINE = 30.0
PLATFORM = "erc20-holesky-tglm"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _same_proposal(a: str, b: str) -> bool:
    """Each side names a proposal by its own prefix (``R-`` / ``P-``) and a shared hash."""
    return a.partition("-")[2] == b.partition("-")[2]


@pytest.fixture
async def requestor(yagna_node: YagnaNode) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=yagna_node.requestor_app_key, api_url=yagna_node.api_url)
    async with YagnaClient(config) as client:
        yield client


@pytest.fixture
async def port(yagna_node: YagnaNode) -> AsyncIterator[RestProviderPort]:
    async with provider_client(yagna_node.api_url, yagna_node.provider_app_key) as client:
        yield RestProviderPort(
            client,
            yagna_node.provider_id,
            app_session_id=f"golem-trio-provider-{uuid.uuid4().hex[:8]}",
            approve_wait=5.0,
            ack_wait=5.0,
        )


def _spec(
    no_activity_timeout: float = 90.0,
    debit_note_interval: int = 120,
    price_start: Decimal = Decimal(0),
    tick: float = 0.2,
) -> ProviderSpec:
    """A provider on a subnet and with a name of its own, looking at its agreements often
    (every ``tick``)."""
    run = uuid.uuid4().hex[:12]
    return ProviderSpec(
        name=f"golem-trio-rest-{run}",
        subnet=f"golem-trio-{run}",
        tick=tick,
        no_activity_timeout=no_activity_timeout,
        debit_note_interval=debit_note_interval,
        price_start=price_start,
    )


class _ActivityHost:
    """The least a provider does for activities, over REST: it reports each new activity
    ``Initialized`` and each destroyed one ``Terminated`` (no exe-unit: nothing can run)."""

    def __init__(self, yagna_node: YagnaNode, app_session_id: str) -> None:
        self._node = yagna_node
        self._session = app_session_id
        self.created: list[str] = []

    async def run(self) -> None:
        after = _utcnow() - dt.timedelta(seconds=5)
        async with provider_client(self._node.api_url, self._node.provider_app_key) as client:
            while True:
                response = await client.get(
                    "/activity-api/v1/events",
                    params={
                        "afterTimestamp": after.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "appSessionId": self._session,
                        "timeout": 1.0,
                    },
                    timeout=15.0,
                )
                if response.status_code == 408:  # nothing happened
                    continue
                response.raise_for_status()
                for event in response.json():
                    after = max(after, dt.datetime.fromisoformat(event["eventDate"]))
                    kind = next(iter(event["eventType"]))
                    state = {"CreateActivity": "Initialized", "DestroyActivity": "Terminated"}
                    if kind in state:
                        if kind == "CreateActivity":
                            self.created.append(event["activityId"])
                        reply = await client.put(
                            f"/activity-api/v1/activity/{event['activityId']}/state",
                            json={"state": [state[kind], None], "reason": None},
                        )
                        reply.raise_for_status()


class _Withhold:
    """A fault plan that only withholds approvals."""

    def reject_proposal(self, provider: str) -> bool:
        return False

    def withhold_approval(self, provider: str, agreement_id: str) -> bool:
        return True

    def dishonesty(self, provider: str, agreement_id: str) -> frozenset[str]:
        return frozenset()

    def inflation(self) -> Decimal:
        return Decimal(1)

    def termination(self, agreement_id: str) -> str | None:
        return None


@attrs.define
class Market:
    """One provider agent on the daemon and the requestor's demand that matches only it."""

    agent: ProviderAgent
    offer_id: str
    requestor: YagnaClient
    requestor_id: str
    session: str = attrs.field(factory=lambda: f"golem-trio-{uuid.uuid4().hex[:8]}")
    demand_id: str | None = None

    def demand(self, expires_in: float = 20 * 60, accept_timeout: int = 120) -> DemandOfferBase:
        spec = self.agent.spec
        return DemandOfferBase(
            properties={
                "golem.node.debug.subnet": spec.subnet,
                "golem.srv.comp.expiration": int((time.time() + expires_in) * 1000),
                "golem.srv.caps.multi-activity": True,
                f"golem.com.payment.platform.{PLATFORM}.address": self.requestor_id,
                "golem.com.payment.chosen-platform": PLATFORM,
                "golem.com.payment.protocol.version": "3",
                ACCEPT_TIMEOUT: accept_timeout,
            },
            constraints=(
                f"(&(golem.node.debug.subnet={spec.subnet})(golem.node.id.name={spec.name}))"
            ),
        )

    async def next_event(
        self, wanted: Callable[[object], bool], *, within: float = 15.0
    ) -> ProposalEvent | ProposalRejectedEvent:
        assert self.demand_id is not None
        seen: list[str] = []
        with trio.move_on_after(within):
            while True:
                for event in await self.requestor.market.collect_offers(self.demand_id, wait=1.0):
                    seen.append(type(event).__name__)
                    if isinstance(event, ProposalEvent | ProposalRejectedEvent) and wanted(event):
                        return event
        raise AssertionError(f"no matching event on demand {self.demand_id} (saw {seen})")

    async def initial(self) -> ProposalEvent:
        """The agent's offer as the requestor first sees it."""
        initial = await self.next_event(
            lambda e: isinstance(e, ProposalEvent) and e.proposal.state == ProposalState.INITIAL
        )
        assert isinstance(initial, ProposalEvent)
        return initial

    async def draft(
        self, accept_timeout: int = 120, initial: ProposalEvent | None = None
    ) -> tuple[str, ProposalEvent | str]:
        """Counter the agent's offer (``initial``, else the next one); the agent's answer: a
        Draft, or a rejection's message."""
        if initial is None:
            initial = await self.initial()
        assert self.demand_id is not None
        ours = await self.requestor.market.counter_proposal_demand(
            self.demand_id, initial.proposal.proposal_id, self.demand(accept_timeout=accept_timeout)
        )

        def answer(event: object) -> bool:
            if isinstance(event, ProposalRejectedEvent):
                return event.proposal_id == ours
            return (
                isinstance(event, ProposalEvent)
                and event.proposal.state == ProposalState.DRAFT
                and event.proposal.prev_proposal_id == ours
            )

        reply = await self.next_event(answer)
        if isinstance(reply, ProposalRejectedEvent):
            assert reply.reason is not None
            return ours, reply.reason.message
        return ours, reply

    async def agreement(self) -> tuple[str, Proposal]:
        """Negotiate, create and confirm an agreement; its id and the agent's Draft."""
        _, reply = await self.draft()
        assert isinstance(reply, ProposalEvent), reply
        agreement_id = await self.requestor.market.create_agreement(
            reply.proposal.proposal_id, _utcnow() + dt.timedelta(hours=1)
        )
        await self.requestor.market.confirm_agreement(agreement_id, app_session_id=self.session)
        return agreement_id, reply.proposal

    async def terminated_event(
        self, agreement_id: str, after: dt.datetime, *, within: float = 15.0
    ) -> AgreementTerminatedEvent:
        cursor = after
        seen: list[AgreementEvent] = []
        with trio.move_on_after(within):
            while True:
                events = await self.requestor.market.collect_agreement_events(
                    wait=1.0, after_timestamp=cursor, app_session_id=self.session
                )
                for event in events:
                    cursor = max(cursor, getattr(event, "event_date", cursor))
                    if getattr(event, "agreement_id", None) != agreement_id:
                        continue
                    seen.append(event)
                    if isinstance(event, AgreementTerminatedEvent):
                        return event
        raise AssertionError(f"no termination of {agreement_id} (saw {seen})")


@attrs.define
class _Running:
    requestor: YagnaClient
    requestor_id: str
    port: RestProviderPort

    async def __call__(
        self, spec: ProviderSpec, nursery: trio.Nursery, faults: _Withhold | None = None
    ) -> Market:
        """Start an agent for ``spec`` in ``nursery`` and subscribe the requestor's demand."""
        agent = ProviderAgent(spec, self.port.node_id, self.port, _utcnow, faults)
        offer_id = await nursery.start(agent.run)
        market = Market(agent, offer_id, self.requestor, self.requestor_id)
        market.demand_id = await self.requestor.market.subscribe_demand(market.demand())
        return market


@pytest.fixture
def running(requestor: YagnaClient, yagna_node: YagnaNode, port: RestProviderPort) -> _Running:
    return _Running(requestor, yagna_node.requestor_id, port)


async def _withdraw(market: Market) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        if market.demand_id is not None:
            await market.requestor.market.unsubscribe_demand(market.demand_id)
        if market.agent.offer_id is not None:
            with contextlib.suppress(DaemonGone, DaemonNotFound):
                await market.agent.port.unsubscribe_offer(market.agent.offer_id)


async def _until(done: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``done`` (the agent's own records have no events to wait on)."""
    with trio.fail_after(within):
        while True:
            if done():
                return
            await trio.sleep(0.05)


async def _life(agent: ProviderAgent, agreement_id: str) -> AgreementLife:
    await _until(lambda: agreement_id in agent.lives)
    return agent.lives[agreement_id]


async def _invoiced(life: AgreementLife) -> str:
    await _until(lambda: life.invoice_id is not None)
    assert life.invoice_id is not None
    return life.invoice_id


# --------------------------------------------------------------------------------------- tests


async def test_agent_negotiates_and_sees_requestor_termination(
    running: _Running, port: RestProviderPort
) -> None:
    spec = _spec()
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            market = await running(spec, nursery)
            try:
                agreement_id, draft = await market.agreement()
                # The agent's counter carries negotiate()'s terms.
                assert draft.issuer_id == port.node_id
                assert draft.properties[ACCEPT_TIMEOUT] == 120
                assert draft.properties[DEBIT_NOTE_INTERVAL] == spec.debit_note_interval
                assert draft.properties["golem.com.payment.chosen-platform"] == PLATFORM
                [answered] = [p for p in market.agent.terms if _same_proposal(p, draft.proposal_id)]
                assert market.agent.terms[answered].accept_timeout == 120

                approval = await running.requestor.market.wait_for_approval(agreement_id, wait=10)
                assert approval.approved, approval
                life = await _life(market.agent, agreement_id)
                assert await port.agreement_state(agreement_id) == "Approved"
                assert await port.activities(agreement_id) == []

                await running.requestor.market.terminate_agreement(
                    agreement_id, Reason("done", {"golem.requestor.code": "Success"})
                )
                # The agent notices, ends the agreement's life and invoices it (no activity:
                # zero), without a chain: the requestor receives the invoice.
                invoice_id = await _invoiced(life)
                assert life.end_code is None
                assert await port.agreement_state(agreement_id) == "Terminated"
                invoice = await running.requestor.payment.get_invoice(invoice_id)
                assert invoice.agreement_id == agreement_id
                assert invoice.amount == Decimal(0)
                assert invoice.status == DocumentStatus.RECEIVED
                assert port.documents[invoice_id].kind == "invoice"
                assert port.documents[invoice_id].honest
                # Terminating what the requestor already ended is a no-op (the daemon's 410).
                await port.terminate_agreement(agreement_id, {"message": "again"})
            finally:
                # Stop the agent first, or it publishes its offer again once withdrawn.
                nursery.cancel_scope.cancel()
                await _withdraw(market)


async def test_agent_learns_of_an_end_from_the_agreement_events(
    running: _Running, port: RestProviderPort
) -> None:
    """While the port watches the identity's agreement events, the agent invoices an
    agreement the requestor ended as soon as the event comes, not at its next look at the
    agreement (a tick longer than the wait below)."""
    spec = _spec(tick=60.0)
    assert not port.tells_ends
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(port.watch_ends)
            assert port.tells_ends
            market = await running(spec, nursery)
            try:
                agreement_id, _ = await market.agreement()
                approval = await running.requestor.market.wait_for_approval(agreement_id, wait=10)
                assert approval.approved, approval
                life = await _life(market.agent, agreement_id)
                await running.requestor.market.terminate_agreement(
                    agreement_id, Reason("done", {"golem.requestor.code": "Success"})
                )
                with trio.fail_after(10):
                    await port.wait_ended(agreement_id)
                invoice_id = await _invoiced(life)
                assert life.end_code is None
                invoice = await running.requestor.payment.get_invoice(invoice_id)
                assert invoice.agreement_id == agreement_id
            finally:
                nursery.cancel_scope.cancel()
                await _withdraw(market)
    assert not port.tells_ends


async def test_agent_bills_an_activity_and_invoices_it(
    running: _Running, port: RestProviderPort, yagna_node: YagnaNode
) -> None:
    spec = _spec(debit_note_interval=1, price_start=Decimal("0.01"))
    host = _ActivityHost(yagna_node, port.app_session_id)
    requestor = running.requestor
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            market = await running(spec, nursery)
            nursery.start_soon(host.run)
            try:
                agreement_id, draft = await market.agreement()
                assert draft.properties[DEBIT_NOTE_INTERVAL] == 1
                approval = await requestor.market.wait_for_approval(agreement_id, wait=10)
                assert approval.approved, approval
                life = await _life(market.agent, agreement_id)

                activity_id = await requestor.activity.create_activity(agreement_id, wait=15)
                assert host.created == [activity_id]
                assert await port.activities(agreement_id) == [(activity_id, "Initialized")]
                # Without an exe-unit nobody reports usage: the daemon has none.
                assert await port.usage(activity_id) == []

                # Every second the agent bills the activity (the fixed price: no usage).
                await _until(lambda: activity_id in life.billed)
                await _until(lambda: bool(life.unaccepted))
                note_id = next(iter(life.unaccepted))
                note = await requestor.payment.get_debit_note(note_id)
                assert (note.agreement_id, note.activity_id) == (agreement_id, activity_id)
                assert note.total_amount_due == Decimal("0.01")
                assert note.payment_due_date is None  # no mid-agreement payments were agreed
                assert note.status == DocumentStatus.RECEIVED
                assert await port.debit_note_status(note_id) == "RECEIVED"
                assert port.documents[note_id].honest
                assert port.documents[note_id].agreement_id == agreement_id

                # The daemon refuses an invoice below what debit notes already asked for.
                with pytest.raises(DaemonBadRequest, match="cannot be lowered"):
                    await port.send_invoice(
                        agreement_id, [activity_id], Decimal("0.001"), _utcnow()
                    )

                await requestor.activity.destroy_activity(activity_id, wait=10)
                assert await port.activities(agreement_id) == [(activity_id, "Terminated")]
                await requestor.market.terminate_agreement(
                    agreement_id, Reason("done", {"golem.requestor.code": "Success"})
                )
                invoice = await requestor.payment.get_invoice(await _invoiced(life))
                assert invoice.activity_ids == [activity_id]
                assert invoice.amount == Decimal("0.01")
                assert invoice.status == DocumentStatus.RECEIVED
                # A second invoice for the same agreement is taken too (a dishonest one).
                second = await port.send_invoice(
                    agreement_id, [activity_id], Decimal("0.02"), _utcnow(), honest=False
                )
                assert second != invoice.invoice_id
                assert not port.documents[second].honest
                assert (await requestor.payment.get_invoice(second)).amount == Decimal("0.02")
            finally:
                nursery.cancel_scope.cancel()
                await _withdraw(market)


async def test_provider_termination_reaches_the_requestor(running: _Running) -> None:
    spec = _spec(no_activity_timeout=3.0)
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            market = await running(spec, nursery)
            try:
                started = _utcnow() - dt.timedelta(seconds=1)
                agreement_id, _ = await market.agreement()
                approval = await running.requestor.market.wait_for_approval(agreement_id, wait=10)
                assert approval.approved, approval
                # No activity comes: the agent ends the agreement with NoActivity.
                event = await market.terminated_event(agreement_id, started)
                assert event.reason is not None
                assert event.reason.code("golem.provider.code") == "NoActivity"
                assert event.reason.message == "no activity was created"
                life = await _life(market.agent, agreement_id)
                assert life.end_code == "NoActivity"
                await _invoiced(life)
            finally:
                # Stop the agent first, or it publishes its offer again once withdrawn.
                nursery.cancel_scope.cancel()
                await _withdraw(market)


async def test_agent_rejects_a_proposal_it_cannot_take(running: _Running) -> None:
    spec = _spec()
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            market = await running(spec, nursery)
            try:
                # An expiration below the provider's minimum never reaches the provider: the
                # daemon holds a counter-demand to the offer's constraints (400).
                assert market.demand_id is not None
                initial = await market.initial()
                with pytest.raises(BadRequest, match="Mismatched constraints"):
                    await running.requestor.market.counter_proposal_demand(
                        market.demand_id, initial.proposal.proposal_id, market.demand(60)
                    )
                # A debit-note accept timeout below the provider's minimum: the agent rejects.
                _, reply = await market.draft(accept_timeout=10, initial=initial)
                assert reply == "debit-note accept timeout 10 s < 30 s"
            finally:
                # Stop the agent first, or it publishes its offer again once withdrawn.
                nursery.cancel_scope.cancel()
                await _withdraw(market)


async def test_withheld_approval_then_rejected_through_the_port(
    running: _Running, port: RestProviderPort
) -> None:
    spec = _spec()
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            market = await running(spec, nursery, _Withhold())
            try:
                agreement_id, _ = await market.agreement()
                pending = await running.requestor.market.wait_for_approval(agreement_id, wait=1)
                assert pending.timed_out
                assert await port.agreement_state(agreement_id) == "Pending"
                await port.reject_agreement(agreement_id, {"message": "not today"})
                rejected = await running.requestor.market.wait_for_approval(agreement_id, wait=5)
                assert not rejected.approved
                assert rejected.message == "Rejected"
                with pytest.raises(DaemonGone):
                    await port.approve_agreement(agreement_id)
                assert agreement_id not in market.agent.lives
            finally:
                # Stop the agent first, or it publishes its offer again once withdrawn.
                nursery.cancel_scope.cancel()
                await _withdraw(market)


async def test_port_answers_without_an_agent(port: RestProviderPort, yagna_node: YagnaNode) -> None:
    spec = _spec()
    unknown_agreement = "ef" * 32
    unknown_activity = uuid.uuid4().hex
    with trio.fail_after(TEST_DEADLINE):
        offer_id = await port.subscribe_offer(
            {"golem.node.id.name": spec.name, "golem.node.debug.subnet": spec.subnet}, "()"
        )
        try:
            assert await port.collect_demands(offer_id, 0.2) == []
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await port.unsubscribe_offer(offer_id)
            raise

        # Withdrawn while a poll waits (the daemon's 404), and polled later (its 200 []).
        async def withdraw_soon() -> None:
            await trio.sleep(0.5)
            await port.unsubscribe_offer(offer_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(withdraw_soon)
            with pytest.raises(OfferGone):
                await port.collect_demands(offer_id, 3.0)
        with pytest.raises(OfferGone):
            await port.collect_demands(offer_id, 0.2)
        with pytest.raises(DaemonGone):
            await port.unsubscribe_offer(offer_id)

        with pytest.raises(DaemonNotFound):
            await port.agreement_state(unknown_agreement)
        with pytest.raises(DaemonNotFound):
            await port.terminate_agreement(unknown_agreement, {"message": "x"})
        assert await port.activities(unknown_agreement) == []
        with pytest.raises(DaemonNotFound) as usage_error:
            await port.usage(unknown_activity)
        assert usage_error.value.status == 500
        # A debit note needs an activity the daemon knows.
        with pytest.raises(DaemonNotFound):
            await port.send_debit_note(unknown_activity, Decimal("0.1"), [1.0, 0.0], None)
        with pytest.raises(DaemonNotFound):
            await port.debit_note_status(str(uuid.uuid4()))
        # A forged note for an agreement the requestor never made: refused, recorded.
        forged = await port.send_debit_note(
            unknown_activity, Decimal("0.1"), [1.0, 0.0], None, honest=False, unknown_agreement=True
        )
        assert port.documents[forged].status == REFUSED
        assert not port.documents[forged].honest
        assert await port.debit_note_status(forged) == REFUSED

        async with provider_client(yagna_node.api_url, "0" * 32) as client:
            stranger = RestProviderPort(client, port.node_id)
            with pytest.raises(DaemonUnauthorized) as refused:
                await stranger.subscribe_offer({}, "()")
            assert refused.value.message == "Invalid application key"
