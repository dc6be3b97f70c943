"""The payment processor on LocalNet, in virtual time: honest documents paid exactly, dishonest
ones refused with an event, the budget never exceeded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

import golem_trio.payment._processor as processor_module
from golem_trio.localnet import FaultKind, ProviderSpec, ledger, open_localnet
from golem_trio.localnet.providers import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL
from golem_trio.payment import (
    AgreementTerminatedForBilling,
    DebitNoteAccepted,
    DebitNoteRefused,
    InvoiceAccepted,
    InvoiceRejected,
    PaymentEvent,
    PaymentProcessor,
    open_payments,
)
from golem_trio.yagna import (
    ApiConfig,
    DemandOfferBase,
    Deploy,
    ProposalEvent,
    Reason,
    Start,
    YagnaClient,
)

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DISHONEST = {
    "p00": FaultKind.INFLATE,
    "p01": FaultKind.TOO_FAST,
    "p02": FaultKind.PAYABLE_WITHOUT_AGREEMENT,
    "p03": FaultKind.SECOND_INVOICE,
    "p04": FaultKind.INVOICE_ABOVE_USAGE,
}


def specs(count: int) -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name=f"p{i:02}",
            price_cpu_sec=Decimal("0.0002"),
            price_duration_sec=Decimal("0.00003"),
            price_start=Decimal("0.1"),
            cpu_threads=1,
        )
        for i in range(count)
    ]


async def sign_all(yagna: YagnaClient, count: int, hours: float = 2) -> dict[str, str]:
    """Negotiate with every provider up to an approved agreement; provider name -> agreement."""
    expiration = int((EPOCH.timestamp() + hours * 3600) * 1000)
    demand = DemandOfferBase(
        {
            "golem.srv.comp.expiration": expiration,
            "golem.node.debug.subnet": "public",
            ACCEPT_TIMEOUT: 120,
            DEBIT_NOTE_INTERVAL: 120,
        },
        "(golem.node.debug.subnet=public)",
    )
    sub = await yagna.market.subscribe_demand(demand)
    countered: set[str] = set()
    drafts: dict[str, str] = {}
    with trio.fail_after(120):
        while len(drafts) < count:
            for event in await yagna.market.collect_offers(sub, wait=5):
                if not isinstance(event, ProposalEvent):
                    continue
                proposal = event.proposal
                name = proposal.properties["golem.node.id.name"]
                if proposal.prev_proposal_id is None and name not in countered:
                    countered.add(name)
                    await yagna.market.counter_proposal_demand(sub, proposal.proposal_id, demand)
                elif proposal.prev_proposal_id is not None:
                    drafts[name] = proposal.proposal_id
    agreements: dict[str, str] = {}
    for name, proposal_id in sorted(drafts.items()):
        agreement_id = await yagna.market.create_agreement(
            proposal_id, EPOCH + dt.timedelta(hours=hours + 1)
        )
        await yagna.market.confirm_agreement(agreement_id)
        assert (await yagna.market.wait_for_approval(agreement_id, wait=15)).approved
        agreements[name] = agreement_id
    await yagna.market.unsubscribe_demand(sub)
    return agreements


async def start_activity(yagna: YagnaClient, payments: PaymentProcessor, agreement_id: str) -> str:
    activity_id = await yagna.activity.create_activity(agreement_id)
    payments.activity_started(agreement_id, activity_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    assert results[-1].is_batch_finished
    return activity_id


async def terminate(yagna: YagnaClient, agreement_id: str) -> None:
    try:
        await yagna.market.terminate_agreement(
            agreement_id, Reason("done", {"golem.requestor.code": "Success"})
        )
    except Exception:  # terminated already (for billing)
        await trio.lowlevel.checkpoint()


async def sign_one_and_start(yagna: YagnaClient, payments: PaymentProcessor) -> str:
    """Sign the one provider's agreement, register it for billing and start its activity."""
    (agreement_id,) = (await sign_all(yagna, 1)).values()
    await payments.add_agreement(agreement_id)
    await start_activity(yagna, payments, agreement_id)
    return agreement_id


def refused_ids(events: Sequence[PaymentEvent]) -> list[str]:
    ids: list[str] = []
    for event in events:
        if isinstance(event, DebitNoteRefused):
            ids.append(event.debit_note_id)
        elif isinstance(event, InvoiceRejected):
            ids.append(event.invoice_id)
    return ids


def paid(doc: dict[str, Any]) -> bool:
    return str(doc["status"]) in ("ACCEPTED", "SETTLED")


async def test_twenty_providers_five_dishonest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = Decimal(20)
    async with open_localnet(specs(20), epoch=EPOCH) as net:
        for name, kind in DISHONEST.items():
            net.faults.dishonest(name, kind)
        # One extra provider bills an agreement we never made.
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        events: list[PaymentEvent] = []
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_payments(
                yagna,
                budget=budget,
                invoice_wait=600,
                emit=events.append,
                now=net.daemon.clock.now,
            ) as payments:
                agreements = await sign_all(yagna, 20)
                for agreement_id in agreements.values():
                    await payments.add_agreement(agreement_id)
                for agreement_id in agreements.values():
                    await start_activity(yagna, payments, agreement_id)
                await trio.sleep(15 * 60)
                for agreement_id in agreements.values():
                    await terminate(yagna, agreement_id)
                    payments.agreement_ended(agreement_id)
                # Let late documents (a second invoice) arrive.
                await trio.sleep(120)
            report = payments.report
        book = ledger(net)

    assert report is not None
    dishonest_agreements = {agreements[name] for name in DISHONEST}
    honest_invoices = [i for i in book["invoices"] if i["honest"]]
    # Every honest provider's invoice paid exactly.
    honest_agreements = set(agreements.values()) - dishonest_agreements
    assert {i["agreementId"] for i in honest_invoices} >= honest_agreements
    for invoice in honest_invoices:
        assert paid(invoice), invoice
        assert report.invoices_accepted[invoice["agreementId"]] == Decimal(invoice["amount"])
    # No dishonest document paid, and one refusal event for each.
    dishonest = [d for d in [*book["debitNotes"], *book["invoices"]] if not d["honest"]]
    assert dishonest
    assert [d for d in dishonest if paid(d)] == []
    refused = refused_ids(events)
    assert sorted(refused) == sorted(d["id"] for d in dishonest if not paid(d))
    # Honest notes of honest agreements all accepted.
    for note in book["debitNotes"]:
        if note["agreementId"] in honest_agreements:
            assert paid(note), note
    # The allocation is released and nothing went past the budget.
    (allocation,) = book["allocations"]
    assert allocation["released"]
    assert Decimal(allocation["spentAmount"]) <= budget
    assert report.spent <= budget
    assert report.allocation_released
    # What the daemon counts as spent is what the budget ledger counted: the paid invoices and
    # the notes accepted for the agreement whose invoice was rejected.
    assert Decimal(allocation["spentAmount"]) == report.spent
    assert report.unpaid == tuple(u for u in report.unpaid if u.agreement_id == agreements["p04"])
    terminations = [e for e in events if isinstance(e, AgreementTerminatedForBilling)]
    assert {t.agreement_id for t in terminations} <= dishonest_agreements
    print(
        "notes accepted",
        sum(isinstance(e, DebitNoteAccepted) for e in events),
        "notes refused",
        sum(isinstance(e, DebitNoteRefused) for e in events),
        "invoices accepted",
        sum(isinstance(e, InvoiceAccepted) for e in events),
        "invoices rejected",
        sum(isinstance(e, InvoiceRejected) for e in events),
        "terminations",
        len(terminations),
        "spent",
        report.spent,
    )


async def test_a_small_budget_stops_accepting_and_reports_the_invoice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The first note (2 minutes: 0.1 + 120 * 0.00003 = 0.1036) fits a budget of 0.105, the
    # next one (4 minutes, 0.1072) and the invoice do not.
    budget = Decimal("0.105")
    async with open_localnet(specs(1), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        events: list[PaymentEvent] = []
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_payments(
                yagna, budget=budget, invoice_wait=600, emit=events.append, now=net.daemon.clock.now
            ) as payments:
                agreements = await sign_all(yagna, 1)
                (agreement_id,) = agreements.values()
                await payments.add_agreement(agreement_id)
                await start_activity(yagna, payments, agreement_id)
                await trio.sleep(10 * 60)
                await terminate(yagna, agreement_id)
                payments.agreement_ended(agreement_id)
            report = payments.report
        book = ledger(net)
    assert report is not None
    budget_refusals = [
        e
        for e in events
        if isinstance(e, DebitNoteRefused | InvoiceRejected) and e.reason == "BudgetExceeded"
    ]
    assert budget_refusals
    assert report.debit_notes_accepted == 1
    assert report.spent == Decimal("0.1036")
    assert report.spent <= budget
    assert Decimal(book["allocations"][0]["spentAmount"]) <= budget
    (unpaid,) = report.unpaid
    assert unpaid.agreement_id == agreement_id
    assert unpaid.amount is not None
    assert unpaid.amount > budget
    (invoice,) = book["invoices"]
    assert not paid(invoice)


async def test_cancelling_the_block_still_pays_invoices_and_releases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_localnet(specs(1), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        events: list[PaymentEvent] = []
        async with YagnaClient(config, transport=net.transport()) as yagna:
            with trio.move_on_after(60) as scope:
                async with open_payments(
                    yagna, budget=Decimal(5), emit=events.append, now=net.daemon.clock.now
                ) as payments:
                    agreement_id = await sign_one_and_start(yagna, payments)
                    try:
                        await trio.sleep_forever()
                    finally:
                        with trio.CancelScope(shield=True):
                            await terminate(yagna, agreement_id)
                            payments.agreement_ended(agreement_id)
            assert scope.cancelled_caught
            report = payments.report
        book = ledger(net)
    assert report is not None
    assert report.allocation_released
    assert report.unpaid == ()
    (invoice,) = book["invoices"]
    assert paid(invoice)
    assert report.invoices_accepted == {agreement_id: Decimal(invoice["amount"])}
    assert book["allocations"][0]["released"]


async def test_an_invoice_is_checked_against_usage_the_processor_reads_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nobody told the processor the activity's usage (the provider may end an agreement
    before the engine reads it): it reads the usage itself when the invoice comes, and an
    invoice above that usage's price is rejected, although the time-based bounds allow it."""
    # Billed mostly by CPU time, which an idle activity hardly uses: an agreement ended
    # before its first debit note is bounded by time alone at many times its real price.
    spec = ProviderSpec(
        name="p00",
        price_cpu_sec=Decimal("0.001"),
        price_duration_sec=Decimal("0.00001"),
        price_start=Decimal(0),
        cpu_threads=4,
    )
    async with open_localnet([spec], epoch=EPOCH) as net:
        net.faults.dishonest("p00", FaultKind.INVOICE_ABOVE_USAGE)
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        events: list[PaymentEvent] = []
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_payments(
                yagna,
                budget=Decimal(5),
                invoice_wait=600,
                emit=events.append,
                now=net.daemon.clock.now,
            ) as payments:
                agreement_id = await sign_one_and_start(yagna, payments)
                await trio.sleep(60)
                await terminate(yagna, agreement_id)
                payments.agreement_ended(agreement_id)
            report = payments.report
        book = ledger(net)
    assert report is not None
    (invoice,) = book["invoices"]
    assert not invoice["honest"]
    assert book["debitNotes"] == []
    assert not paid(invoice)
    (rejected,) = [e for e in events if isinstance(e, InvoiceRejected)]
    assert rejected.invoice_id == invoice["id"]
    assert rejected.sent
    assert "exceeds the most" in rejected.message
    assert [u.agreement_id for u in report.unpaid] == [agreement_id]


class OncePerSecondEventPolls(httpx2.AsyncBaseTransport):
    """LocalNet in-process, except that invoice-event polls answer as a real daemon does: the
    daemon looks for events when a poll begins, then once a second until the poll's
    ``timeout`` (not as soon as one comes, as the emulator does)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner
        self.polls = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not request.url.path.endswith("/invoiceEvents"):
            return await self._inner.handle_async_request(request)
        self.polls += 1
        wait = float(request.url.params.get("timeout", 5))
        deadline = trio.current_time() + wait
        look = request.url.copy_set_param("timeout", 0)
        while True:
            response = await self._inner.handle_async_request(
                httpx2.Request(request.method, look, headers=request.headers)
            )
            content = await response.aread()
            if content.strip() != b"[]" or trio.current_time() + 1 > deadline:
                return httpx2.Response(
                    response.status_code, headers=response.headers, content=content
                )
            await trio.sleep(1)


async def test_the_last_invoice_is_seen_sooner_than_one_poll_would(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At exit the processor waits for the invoices with several polls in flight, begun a
    fraction of a second apart: on a daemon that looks for events once a second per poll, an
    invoice that comes 0.3 s into the wait is paid within about half a second (one poll would
    see it a second after the wait began)."""
    async with open_localnet(specs(1), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        transport = OncePerSecondEventPolls(net.transport())
        events: list[PaymentEvent] = []
        async with YagnaClient(config, transport=transport) as yagna:
            async with trio.open_nursery() as nursery:
                async with open_payments(
                    yagna, budget=Decimal(5), emit=events.append, now=net.daemon.clock.now
                ) as payments:
                    agreement_id = await sign_one_and_start(yagna, payments)
                    await trio.sleep(30)

                    async def end_later() -> None:
                        await trio.sleep(0.3)
                        await terminate(yagna, agreement_id)
                        payments.agreement_ended(agreement_id)

                    nursery.start_soon(end_later)
                    polls_before = transport.polls
                    waiting_since = trio.current_time()
                waited = trio.current_time() - waiting_since
            report = payments.report
        book = ledger(net)
    assert report is not None
    (invoice,) = book["invoices"]
    assert paid(invoice)
    assert report.invoices_accepted == {agreement_id: Decimal(invoice["amount"])}
    assert [type(e) for e in events].count(InvoiceAccepted) == 1
    assert 0.3 < waited < 0.75, waited
    # Polls begun after the invoice came were not needed: at most three to see it.
    assert transport.polls - polls_before <= 3


class SlowInvoiceReads(httpx2.AsyncBaseTransport):
    """LocalNet in-process, except that reading an invoice takes a second, and the first
    ``FAILED_READS`` reads of each of the first ``failing`` invoices read fail with a 500 (a
    passing fault of the daemon that outlasts the client's own retries)."""

    FAILED_READS = 6

    def __init__(self, inner: httpx2.AsyncBaseTransport, failing: int = 0) -> None:
        self._inner = inner
        self._failing = failing
        self.failures: dict[str, int] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if request.method == "GET" and path.startswith("/payment-api/v1/invoices/"):
            await trio.sleep(1)
            invoice_id = path.rsplit("/", 1)[1]
            if invoice_id not in self.failures and len(self.failures) < self._failing:
                self.failures[invoice_id] = 0
            if self.failures.get(invoice_id, self.FAILED_READS) < self.FAILED_READS:
                self.failures[invoice_id] += 1
                return httpx2.Response(500, json={"message": "DB error: database is locked"})
        return await self._inner.handle_async_request(request)


async def _pay_ten(transport: SlowInvoiceReads, net: Any) -> tuple[float, list[PaymentEvent]]:
    """Ten agreements ended at once; how long from their ends to the processor's report."""
    config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
    events: list[PaymentEvent] = []
    async with YagnaClient(config, transport=transport) as yagna:
        async with open_payments(
            yagna, budget=Decimal(50), emit=events.append, now=net.daemon.clock.now
        ) as payments:
            agreements = await sign_all(yagna, 10)
            for agreement_id in agreements.values():
                await payments.add_agreement(agreement_id)
                await start_activity(yagna, payments, agreement_id)
            await trio.sleep(30)
            ending_at = trio.current_time()
            for agreement_id in agreements.values():
                await terminate(yagna, agreement_id)
                payments.agreement_ended(agreement_id)
        report = payments.report
    assert report is not None
    assert report.unpaid == ()
    assert set(report.invoices_accepted) == set(agreements.values())
    return trio.current_time() - ending_at, events


async def test_the_invoices_of_a_round_are_read_side_by_side(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten invoices whose reads take a second each are paid within a few seconds of their
    agreements' ends: the processor reads the invoices that come together side by side, then
    decides them one by one (here all ten at once)."""
    monkeypatch.setattr(processor_module, "INVOICES_AT_ONCE", 10)
    async with open_localnet(specs(10), epoch=EPOCH) as net:
        took, events = await _pay_ten(SlowInvoiceReads(net.transport()), net)
        book = ledger(net)
    assert took < 4, took
    assert [type(e) for e in events].count(InvoiceAccepted) == 10
    assert all(paid(invoice) for invoice in book["invoices"])


async def test_an_invoice_whose_read_fails_is_read_again_and_paid_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three of ten invoices cannot be read for a while (a passing fault of the daemon that
    outlasts the client's retries) while the others are handled, by overlapping polls at exit
    too: the cursor never passes one still undecided, so each is read again on a later round
    and every invoice is paid exactly once."""
    async with open_localnet(specs(10), epoch=EPOCH) as net:
        transport = SlowInvoiceReads(net.transport(), failing=3)
        _, events = await _pay_ten(transport, net)
        book = ledger(net)
    assert list(transport.failures.values()) == [SlowInvoiceReads.FAILED_READS] * 3
    accepted = [e for e in events if isinstance(e, InvoiceAccepted)]
    assert sorted(e.invoice_id for e in accepted) == sorted(i["id"] for i in book["invoices"])
    assert all(paid(invoice) for invoice in book["invoices"])
