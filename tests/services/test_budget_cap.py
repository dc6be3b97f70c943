"""The budget caps exposure, not lifetimes (docs/architecture.md §5.4), and invoices are paid
only up to the price of the usage the daemon read (§5.3): whole engines on LocalNet, in virtual
time."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
import trio.testing
from _faults_support import Recorder, open_stage

from golem_trio.events import (
    AgreementSigned,
    BudgetLimitReached,
    ClusterCappedByBudget,
    InvoiceAccepted,
)
from golem_trio.localnet import PLANS, ProviderSpec
from golem_trio.payment import BudgetLedger
from golem_trio.services import BudgetTooSmall, InstancesLost, ServiceState, Timeouts
from golem_trio.terms import CPU_SEC, DURATION_SEC, Pricing, Terms
from golem_trio.testing import check_invariants

CPU_PRICE = Decimal("0.0001")
THREADS = 4
INTERVAL = 120  # LocalNet providers' debit-note interval, which the engine's demand leaves open


def idle_specs(count: int, *, tick: float = 1.0) -> list[ProviderSpec]:
    """Providers that bill CPU time only (as many real ones do), so idle instances cost little."""
    return [
        ProviderSpec(
            name=f"p{i}",
            price_cpu_sec=CPU_PRICE,
            price_duration_sec=Decimal(0),
            cpu_threads=THREADS,
            debit_note_interval=INTERVAL,
            tick=tick,
        )
        for i in range(count)
    ]


def instance_exposure(timeouts: Timeouts) -> Decimal:
    """The worst-case exposure of one agreement with an ``idle_specs`` provider."""
    terms = Terms(
        pricing=Pricing((CPU_SEC, DURATION_SEC), (CPU_PRICE, Decimal(0)), Decimal(0)),
        threads=THREADS,
        debit_note_interval=Decimal(INTERVAL),
    )
    ledger = BudgetLedger(
        Decimal(1000), margin=Decimal(0), shutdown=timeouts.stop_phase, clock=lambda: 0.0
    )
    return ledger.exposure_of(terms)


async def test_a_hundred_idle_instances_run_for_an_hour_on_a_budget_of_ten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeouts = Timeouts()
    budget = Decimal(10)
    # Each agreement's worst case over its unbilled window fits a hundred times in the budget;
    # their worst case over an hour would not (100 * 4 threads * 3600 s * 0.0001 = 144 GLM).
    assert 100 * instance_exposure(timeouts) < budget
    async with open_stage(
        providers=idle_specs(100, tick=30.0), budget=budget, timeouts=timeouts
    ) as stage:
        cluster = await stage.golem.run_service(Recorder, instance_params=stage.params(100))
        with trio.fail_after(600):
            await cluster.wait_running()
        began = trio.current_time()
        lowest = 100
        while trio.current_time() - began < 3600:
            await trio.sleep(60)
            lowest = min(lowest, cluster.states()[ServiceState.RUNNING])
        assert lowest == 100
        assert not [e for e in stage.events if isinstance(e, BudgetLimitReached)]
        spent = stage.golem.payments.budget.spent
        exposure = stage.golem.payments.budget.exposure()
        await cluster.stop()
    report = stage.golem.payment_report
    assert report is not None
    assert spent < budget / 100
    assert exposure <= budget
    assert report.spent < budget / 50
    assert len([e for e in stage.events if isinstance(e, InvoiceAccepted)]) == 100
    stage.check_network()


async def test_a_budget_that_carries_forty_signs_forty_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeouts = Timeouts()
    each = instance_exposure(timeouts)
    budget = (each * Decimal("40.8")).quantize(Decimal("0.000001"))
    async with open_stage(providers=idle_specs(50), budget=budget, timeouts=timeouts) as stage:
        cluster = await stage.golem.run_service(Recorder, instance_params=stage.params(50))
        with trio.fail_after(600):
            running = await cluster.wait_running(40)
        assert len(running) == 40
        with pytest.raises(BudgetTooSmall) as caught:
            await cluster.wait_running()
        error = caught.value
        assert isinstance(error, InstancesLost)
        assert (error.wanted, error.carried) == (50, 40)
        assert error.budget == budget
        assert error.instance_exposure == each
        assert "carries 40 instance(s)" in str(error)
        assert str(budget) in str(error)
        # Still forty after a while: nothing more is signed, and nothing is stopped.
        await trio.sleep(600)
        assert cluster.states()[ServiceState.RUNNING] == 40
        assert cluster.states()[ServiceState.PENDING] == 10
        assert not [e for e in stage.events if isinstance(e, BudgetLimitReached)]
        await cluster.stop()
    signed = [e for e in stage.events if isinstance(e, AgreementSigned)]
    assert len(signed) == 40
    capped = [e for e in stage.events if isinstance(e, ClusterCappedByBudget)]
    assert capped
    assert (capped[-1].requested, capped[-1].carried) == (50, 40)
    assert capped[-1].budget == budget
    assert capped[-1].instance_exposure == each
    assert capped[-1].exposure <= budget
    stage.check_network()


async def test_dishonest_providers_are_paid_only_their_honest_invoices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # LocalNet's `dishonest` plan at its default inflation; agreements of a few minutes, each
    # instance working (so its usage, and what an inflated invoice adds, is not negligible).
    plan = PLANS["dishonest"]
    assert plan.inflation == Decimal("1.5")
    timeouts = Timeouts(shutdown=20.0, cleanup=10.0, close=2.0, expiration_margin=60.0)
    async with open_stage(
        providers=[ProviderSpec(name=f"p{i}", debit_note_interval=60) for i in range(15)],
        budget=Decimal(20),
        timeouts=timeouts,
        faults=plan,
    ) as stage:
        cluster = await stage.golem.run_service(
            Recorder,
            instance_params=stage.params(15, work_every=5.0, run_error_after=None),
        )
        await trio.sleep(270)
        await cluster.stop()
        await trio.sleep(120)  # the invoices of the last agreements come in
    book = stage.book
    # Every invariant: among them every honest invoice paid, no dishonest document paid,
    # and the allocation spent exactly what was accepted (the notes of an agreement whose
    # inflated invoice was rejected included).
    assert check_invariants(book, budget=Decimal(20)) == []
    invoices = book["invoices"]
    dishonest = [i for i in invoices if not i.get("honest", True)]
    assert dishonest, "the plan forged no invoice: the test proves nothing"
    assert all(str(i["status"]) not in ("ACCEPTED", "SETTLED") for i in dishonest)
    honest = [i for i in invoices if i.get("honest", True)]
    assert all(str(i["status"]) in ("ACCEPTED", "SETTLED") for i in honest)
    assert stage.leftover == []
