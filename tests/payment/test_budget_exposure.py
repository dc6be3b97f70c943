"""The budget ledger caps exposure (docs/architecture.md §5.4): what is accepted plus each open
agreement's worst case over the window it has not been billed for, plus the shutdown allowance.

Properties (Hypothesis, pure ledger): agreements are signed only while their exposure fits;
debit notes come at their interval with honest amounts; whenever the exhaustion signal fires,
every agreement is stopped within the allowance and paid the largest invoice billing would
accept. Then spend never exceeds the budget, and the signal never fires while the exposure
fits.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from golem_trio.payment import CPU_SEC, DURATION_SEC, AgreementTerms, BudgetLedger, Tolerance
from golem_trio.terms import Pricing

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def terms(
    agreement_id: str,
    *,
    cpu: Decimal = Decimal("0.0001"),
    duration: Decimal = Decimal(0),
    fixed: Decimal = Decimal(0),
    threads: int = 4,
    interval: int | None = 120,
) -> AgreementTerms:
    return AgreementTerms(
        agreement_id=agreement_id,
        provider_id="0x" + "a" * 40,
        requestor_id="0x" + "b" * 40,
        pricing=Pricing((CPU_SEC, DURATION_SEC), (cpu, duration), fixed),
        threads=threads,
        debit_note_interval=None if interval is None else Decimal(interval),
        approved_at=T0,
    )


def test_an_agreement_counts_its_unbilled_window_not_its_lifetime() -> None:
    clock = Clock()
    tolerance = Tolerance()
    ledger = BudgetLedger(Decimal(10), margin=Decimal(0), shutdown=51.0, clock=clock)
    t = terms("a")
    rate = Decimal("0.0004") * Decimal("1.01")
    # Window: interval + grace; then the allowance; then grace on the billed time.
    window = Decimal(120 + 5 + 51 + 5)
    assert ledger.exposure_of(t) == rate * window + tolerance.absolute
    ledger.open_agreement(t)
    assert ledger.exposure() == ledger.exposure_of(t)
    # Up to its checkpoint the exposure does not grow; after it, at the worst rate.
    clock.now = 100.0
    assert ledger.exposure() == ledger.exposure_of(t)
    clock.now = 135.0
    assert ledger.exposure() == ledger.exposure_of(t) + rate * 10
    # A note accepted at 120 s (honest: a third of the worst case) moves the window on.
    ledger.accepted("a", Decimal("0.016"), noted_at=120.0)
    assert ledger.exposure() == Decimal("0.016") + ledger.exposure_of(t)
    # An hour of idle instances, noted every interval, never comes near a budget of 10.
    for minute in range(2, 60, 2):
        clock.now = minute * 60.0
        ledger.accepted("a", Decimal(0), noted_at=clock.now)
    assert ledger.exposure() < Decimal("0.1")
    left = ledger.time_left()
    assert left is not None
    assert left > 100


def test_a_budget_that_carries_forty_reserves_forty() -> None:
    clock = Clock()
    ledger = BudgetLedger(Decimal(10), margin=Decimal(0), shutdown=51.0, clock=clock)
    each = ledger.exposure_of(terms("x"))
    ledger.set_budget(each * Decimal("40.5"))
    keys = [object() for _ in range(50)]
    admitted = [ledger.reserve(key, terms(f"a{i}")) for i, key in enumerate(keys)]
    assert admitted == [True] * 40 + [False] * 10
    assert ledger.reservations == 40
    assert not ledger.fits(terms("more"))
    # A reservation becomes the agreement it was made for; releasing it makes room.
    ledger.open_agreement(terms("a0"), reservation=keys[0])
    assert ledger.reservations == 39
    assert ledger.exposure() == each * 40
    ledger.release(keys[1])
    assert ledger.fits(terms("more"))
    assert ledger.reserve(keys[40], terms("a40"))
    # A key holds one reservation: reserving again replaces it.
    assert ledger.reserve(keys[40], terms("a40"))
    assert ledger.reservations == 39


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 12))
    agreements = []
    for i in range(count):
        agreements.append(
            {
                "terms": terms(
                    f"a{i}",
                    cpu=Decimal(draw(st.integers(0, 60))) / 100000,
                    duration=Decimal(draw(st.integers(0, 10))) / 100000,
                    fixed=Decimal(draw(st.integers(0, 5))) / 1000,
                    threads=draw(st.integers(1, 8)),
                    interval=draw(st.sampled_from([None, 30, 60, 120, 300])),
                ),
                "start": draw(st.integers(0, 600)),
                # share of the worst case each note bills (honest usage)
                "usage": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
                "lateness": draw(st.integers(0, 10)),
            }
        )
    return {
        "budget": Decimal(draw(st.integers(1, 2000))) / 1000,
        "shutdown": float(draw(st.integers(0, 90))),
        "agreements": agreements,
    }


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_spend_never_exceeds_the_budget_and_nothing_stops_while_it_fits(
    scenario: dict[str, Any],
) -> None:
    clock = Clock()
    tolerance = Tolerance()
    grace = Decimal(5)
    budget = scenario["budget"]
    shutdown = scenario["shutdown"]
    assert isinstance(budget, Decimal)
    assert isinstance(shutdown, float)
    ledger = BudgetLedger(budget, margin=Decimal(0), shutdown=shutdown, clock=clock)
    plan = scenario["agreements"]
    assert isinstance(plan, list)
    # Per open agreement: start, last note time, amount accepted.
    opened: dict[str, dict[str, Any]] = {}
    fired_at: float | None = None
    # (The exposure may pass the limit when a note is accepted: its next window does not fit,
    # and the signal fires at once, as below.)
    for now in range(0, 1800, 5):
        clock.now = float(now)
        for spec in plan:
            t = spec["terms"]
            if spec["start"] == now and t.agreement_id not in opened:
                key = object()
                if ledger.reserve(key, t):
                    ledger.open_agreement(t, reservation=key)
                    opened[t.agreement_id] = {"start": clock.now, "noted": None, "spec": spec}
        # Debit notes: at each interval (some late), for an honest share of the worst case.
        for agreement_id, state in opened.items():
            spec = state["spec"]
            t = spec["terms"]
            if t.debit_note_interval is None:
                continue
            last = state["noted"] if state["noted"] is not None else state["start"]
            due = last + float(t.debit_note_interval) + spec["lateness"]
            if clock.now >= due:
                elapsed = Decimal(clock.now - state["start"])
                worst = t.pricing.fixed + (t.max_cost(elapsed, tolerance) - t.pricing.fixed) * (
                    Decimal(str(spec["usage"]))
                )
                spend = ledger.agreements[agreement_id]
                amount = max(worst, spend.accepted)
                if not ledger.check_accept(amount - spend.accepted):
                    continue  # refused: the agreement keeps its window until stopped
                ledger.accepted(agreement_id, amount - spend.accepted, noted_at=clock.now)
                state["noted"] = clock.now
        # The exhaustion wait, until the next step: sleep until the deadline, fire if it is
        # still due (after this step's agreements and notes, as the engine's wait runs on).
        deadline = ledger._deadline(clock.now)
        while deadline is not None and deadline < now + 5 and fired_at is None:
            clock.now = max(deadline, clock.now)
            deadline = ledger._deadline(clock.now)
            if deadline is not None and deadline <= clock.now:
                # It fires only when the exposure no longer fits a moment later.
                assert ledger.exposure(clock.now + 1e-3) > ledger.limit
                fired_at = clock.now
        if fired_at is not None:
            break
    # Stop everything at the signal (or at the end) within the allowance; each agreement is
    # invoiced the largest amount billing accepts for its end.
    stop = clock.now if fired_at is None else fired_at
    total = Decimal(0)
    for agreement_id, state in opened.items():
        t = state["spec"]["terms"]
        spend = ledger.agreements[agreement_id]
        last = state["noted"] if state["noted"] is not None else state["start"]
        checkpoint = last + (
            float(t.debit_note_interval) + 5 if t.debit_note_interval is not None else -math.inf
        )
        # Stopped at the signal, or (with nothing fired) at the end of the run; a late note
        # never arrives after the signal.
        # In Decimal: a float sum may round up past the exact end the ledger stops at.
        end = Decimal(max(stop, min(checkpoint, stop))) + Decimal(shutdown)
        lifetime = t.pricing.fixed + (
            t.max_cost(end - Decimal(state["start"]) + grace, tolerance) - t.pricing.fixed
        )
        if state["noted"] is not None:
            since = end - Decimal(state["noted"]) + grace
            lifetime = min(
                lifetime, spend.accepted + t.max_cost(since, tolerance) - t.pricing.fixed
            )
        total += max(spend.accepted, lifetime)
    if fired_at is not None:
        assert total <= budget
    assert ledger.spent <= budget
