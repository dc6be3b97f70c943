"""Emulated providers bill as real ones do, in virtual time: debit notes on the negotiated
interval, deadlines enforced, one invoice at the end."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import trio
import trio.testing

from golem_trio.localnet import LocalNet, open_localnet
from golem_trio.localnet.providers import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    ProviderSpec,
    linear_cost,
)
from golem_trio.yagna import (
    AgreementTerminatedEvent,
    ApiConfig,
    DemandOfferBase,
    Deploy,
    NewAllocation,
    ProposalEvent,
    Reason,
    Start,
    YagnaClient,
)

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SPEC = ProviderSpec(
    name="biller",
    price_cpu_sec=Decimal("0.0002"),
    price_duration_sec=Decimal("0.00003"),
    price_start=Decimal("0.01"),
)


@pytest.fixture
async def localnet() -> AsyncIterator[LocalNet]:
    async with open_localnet([SPEC], epoch=EPOCH) as net:
        yield net


async def sign(
    yagna: YagnaClient, hours: float, accept_timeout: int = 120, interval: int = 120
) -> str:
    """Negotiate with the one provider up to an approved agreement expiring in ``hours``."""
    expiration = int((EPOCH.timestamp() + hours * 3600) * 1000)
    demand = DemandOfferBase(
        {
            "golem.srv.comp.expiration": expiration,
            "golem.node.debug.subnet": "public",
            ACCEPT_TIMEOUT: accept_timeout,
            DEBIT_NOTE_INTERVAL: interval,
        },
        "(golem.node.debug.subnet=public)",
    )
    sub = await yagna.market.subscribe_demand(demand)
    (offer,) = await yagna.market.collect_offers(sub, wait=5)
    assert isinstance(offer, ProposalEvent)
    await yagna.market.counter_proposal_demand(sub, offer.proposal.proposal_id, demand)
    (draft,) = await yagna.market.collect_offers(sub, wait=5)
    assert isinstance(draft, ProposalEvent)
    agreement_id = await yagna.market.create_agreement(
        draft.proposal.proposal_id, EPOCH + dt.timedelta(hours=hours + 1)
    )
    await yagna.market.confirm_agreement(agreement_id)
    assert (await yagna.market.wait_for_approval(agreement_id, wait=15)).approved
    await yagna.market.unsubscribe_demand(sub)
    return agreement_id


async def start_activity(yagna: YagnaClient, agreement_id: str) -> str:
    activity_id = await yagna.activity.create_activity(agreement_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    assert results[-1].is_batch_finished
    return activity_id


async def accept_debit_notes(yagna: YagnaClient, allocation_id: str, accepted: list[str]) -> None:
    after = None
    while True:
        for event in await yagna.payment.get_debit_note_events(wait=5, after_timestamp=after):
            after = event.event_date
            note = await yagna.payment.get_debit_note(event.debit_note_id)
            await yagna.payment.accept_debit_note(
                note.debit_note_id, note.total_amount_due, allocation_id
            )
            accepted.append(note.debit_note_id)


async def test_three_hours_with_two_minute_debit_notes(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    config = ApiConfig(app_key=localnet.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as yagna:
        allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(50)))
        agreement_id = await sign(yagna, hours=3)
        activity_id = await start_activity(yagna, agreement_id)
        accepted: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_debit_notes, yagna, allocation.allocation_id, accepted)
            # The provider ends the agreement itself when it expires.
            terminated = None
            after = None
            with trio.fail_after(4 * 3600):
                while terminated is None:
                    for event in await yagna.market.collect_agreement_events(
                        wait=60, after_timestamp=after
                    ):
                        after = event.event_date
                        if isinstance(event, AgreementTerminatedEvent):
                            terminated = event
            (invoice_event, *_) = await yagna.payment.get_invoice_events(wait=60)
            nursery.cancel_scope.cancel()

        assert terminated.terminator == "Provider"
        assert terminated.reason is not None
        assert terminated.reason.code("golem.provider.code") == "Expired"
        # One note per two minutes over three hours, each accepted.
        notes = [n for n in await yagna.payment.get_debit_notes() if n.activity_id == activity_id]
        assert 85 <= len(notes) <= 90
        assert sorted(accepted) == sorted(n.debit_note_id for n in notes)
        stamps = sorted(n.timestamp for n in notes)
        gaps = {round((b - a).total_seconds()) for a, b in itertools.pairwise(stamps)}
        assert gaps <= {120, 121}
        # Cumulative amounts at the agreed linear price.
        for note in notes:
            assert note.usage_counter_vector is not None
            assert note.total_amount_due == linear_cost(SPEC, note.usage_counter_vector)
        invoice = await yagna.payment.get_invoice(invoice_event.invoice_id)
        assert invoice.agreement_id == agreement_id
        assert invoice.amount >= max(n.total_amount_due for n in notes)
        await yagna.payment.accept_invoice(
            invoice.invoice_id, invoice.amount, allocation.allocation_id
        )
        spent = await yagna.payment.get_allocation(allocation.allocation_id)
        assert spent.spent_amount == invoice.amount


async def test_unaccepted_debit_notes_break_the_agreement(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    config = ApiConfig(app_key=localnet.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as yagna:
        agreement_id = await sign(yagna, hours=1, accept_timeout=60, interval=120)
        await start_activity(yagna, agreement_id)
        start = trio.current_time()
        reason = None
        after = None
        with trio.fail_after(3600):
            while reason is None:
                for event in await yagna.market.collect_agreement_events(
                    wait=60, after_timestamp=after
                ):
                    after = event.event_date
                    if isinstance(event, AgreementTerminatedEvent):
                        reason = event.reason
        # First note at 120 s, unaccepted for 60 s.
        assert 180 <= trio.current_time() - start <= 200
        assert reason is not None
        assert reason.code("golem.provider.code") == "DebitNotesDeadline"
        # The provider still sends its invoice.
        (event, *_) = await yagna.payment.get_invoice_events(wait=30)
        invoice = await yagna.payment.get_invoice(event.invoice_id)
        assert invoice.agreement_id == agreement_id


async def test_an_agreement_with_no_activity_is_broken(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    config = ApiConfig(app_key=localnet.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as yagna:
        agreement_id = await sign(yagna, hours=1)
        after = None
        with trio.fail_after(600):
            while True:
                events = await yagna.market.collect_agreement_events(wait=60, after_timestamp=after)
                after = events[-1].event_date if events else after
                ended = [e for e in events if isinstance(e, AgreementTerminatedEvent)]
                if ended:
                    break
        assert ended[0].agreement_id == agreement_id
        assert ended[0].reason is not None
        assert ended[0].reason.code("golem.provider.code") == "NoActivity"


async def test_the_requestors_termination_ends_billing_with_an_invoice(
    autojump_clock: trio.testing.MockClock, localnet: LocalNet
) -> None:
    config = ApiConfig(app_key=localnet.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=localnet.transport()) as yagna:
        allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(5)))
        agreement_id = await sign(yagna, hours=1)
        await start_activity(yagna, agreement_id)
        accepted: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_debit_notes, yagna, allocation.allocation_id, accepted)
            await trio.sleep(300)
            await yagna.market.terminate_agreement(
                agreement_id, Reason("done", {"golem.requestor.code": "Success"})
            )
            nursery.cancel_scope.cancel()
        assert len(accepted) == 2
        (event, *_) = await yagna.payment.get_invoice_events(wait=30)
        invoice = await yagna.payment.get_invoice(event.invoice_id)
        # Five minutes of an idle activity: the fixed price plus five minutes of duration.
        expected = SPEC.price_start + SPEC.price_duration_sec * 300
        assert abs(invoice.amount - expected) <= SPEC.price_duration_sec * 5
        notes = await yagna.payment.get_debit_notes()
        assert len(notes) == 2  # at 120 s and 240 s
        await yagna.payment.accept_invoice(
            invoice.invoice_id, invoice.amount, allocation.allocation_id
        )
