"""A budget sized for a known number of agreement-minutes, on LocalNet in virtual time: the
exhaustion signal stops the work before the worst case could pass the budget, and what is paid
stays within it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import trio
import trio.testing

from golem_trio.localnet import ProviderSpec, ledger, open_localnet
from golem_trio.market import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, open_negotiation
from golem_trio.payment import ExhaustedReason, PaymentProcessor, Tolerance, open_payments
from golem_trio.yagna import ApiConfig, DemandOfferBase, Deploy, Reason, Start, YagnaClient

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PLATFORM = "erc20-holesky-tglm"
PROVIDERS = 4
PRICE_START = Decimal("0.1")
# Priced by duration only, so what is billed grows as fast as the worst case: the budget runs out
# by the planned agreement-minutes. (The budget caps exposure, what is accepted plus the worst
# case of the time not billed yet, so a CPU price that idle activities never use would let them
# run far longer.)
PRICE_DURATION_SEC = Decimal("0.00023")
PRICE_CPU_SEC = Decimal("0")
WORK_SECONDS = 10 * 60  # planned minutes of work per agreement
SHUTDOWN = 60  # the budget ledger's default shutdown allowance, in seconds


def specs() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name=f"p{i}",
            price_cpu_sec=PRICE_CPU_SEC,
            price_duration_sec=PRICE_DURATION_SEC,
            price_start=PRICE_START,
            cpu_threads=1,
            debit_note_interval=60,
        )
        for i in range(PROVIDERS)
    ]


def worst_cost(elapsed: Decimal) -> Decimal:
    """The most billing accepts for one single-thread agreement after ``elapsed`` seconds
    (``AgreementTerms.max_cost`` with the default tolerance, grace included)."""
    tolerance = Tolerance()
    seconds = elapsed + Decimal(int(tolerance.grace.total_seconds()))
    variable = (PRICE_DURATION_SEC + PRICE_CPU_SEC) * seconds
    return PRICE_START + variable * (1 + tolerance.relative) + tolerance.absolute


def demand() -> DemandOfferBase:
    expiration = int((EPOCH.timestamp() + 3 * 3600) * 1000)
    properties = {
        "golem.srv.comp.expiration": expiration,
        "golem.node.debug.subnet": "public",
        ACCEPT_TIMEOUT: 120,
        DEBIT_NOTE_INTERVAL: 60,
    }
    return DemandOfferBase(properties, "(golem.node.debug.subnet=public)")


async def start_activity(yagna: YagnaClient, payments: PaymentProcessor, agreement_id: str) -> None:
    activity_id = await yagna.activity.create_activity(agreement_id)
    payments.activity_started(agreement_id, activity_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    assert results[-1].is_batch_finished


async def test_budget_for_agreement_minutes_stops_the_work_within_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Four agreements, each worst-case for its planned work plus the shutdown allowance.
    budget = PROVIDERS * worst_cost(Decimal(WORK_SECONDS + SHUTDOWN))
    async with open_localnet(specs(), epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            async with open_payments(
                yagna, budget=budget, invoice_wait=600, now=net.daemon.clock.now
            ) as payments:
                async with open_negotiation(
                    yagna, demand(), platform=PLATFORM, now=net.daemon.clock.now
                ) as market:
                    signed = [await market.sign() for _ in range(PROVIDERS)]
                agreements = [info.agreement_id for info in signed]
                opened_from = trio.current_time()
                for agreement_id in agreements:
                    await payments.add_agreement(agreement_id)
                opened_until = trio.current_time()
                for agreement_id in agreements:
                    await start_activity(yagna, payments, agreement_id)

                reasons: list[ExhaustedReason] = []
                stopped_at: list[float] = []

                async with trio.open_nursery() as nursery:

                    async def watch() -> None:
                        reasons.append(await payments.budget.wait_exhausted())
                        stopped_at.append(trio.current_time())
                        nursery.cancel_scope.cancel()

                    for _ in agreements:
                        nursery.start_soon(trio.sleep_forever)
                    nursery.start_soon(watch)

                for agreement_id in agreements:
                    await yagna.market.terminate_agreement(
                        agreement_id, Reason("budget spent", {"golem.requestor.code": "Success"})
                    )
                    payments.agreement_ended(agreement_id)
            report = payments.report
        book = ledger(net)
        states = {a.state.value for a in net.market.agreements.values()}

    assert report is not None
    (reason,) = reasons
    (fired,) = stopped_at
    # The worst case reaches the budget at the mean start + work + shutdown: the signal came
    # before that, and not before half of the planned agreement-minutes.
    assert fired <= opened_until + WORK_SECONDS
    assert fired >= opened_from + WORK_SECONDS / 2
    # (The exposure may pass the budget at the signal: a debit note just accepted whose next
    # window no longer fits fires it at once.)
    assert reason.spent <= budget
    assert set(reason.agreements) == set(agreements)
    assert states == {"Terminated"}
    # Every invoice paid, and the daemon's accounts within the budget and equal to the report.
    invoices = book["invoices"]
    assert {i["agreementId"] for i in invoices} == set(agreements)
    assert all(str(i["status"]) in ("ACCEPTED", "SETTLED") for i in invoices)
    invoiced = sum((Decimal(i["amount"]) for i in invoices), Decimal(0))
    assert invoiced <= budget
    assert report.invoices_accepted == {i["agreementId"]: Decimal(i["amount"]) for i in invoices}
    assert report.unpaid == ()
    (allocation,) = book["allocations"]
    assert allocation["released"]
    assert report.allocation_released
    assert Decimal(allocation["spentAmount"]) == report.spent == invoiced
    print("budget", budget, "fired at", fired - opened_from, "s", "spent", report.spent)
