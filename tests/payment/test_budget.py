"""The budget ledger: unit tests with concrete figures and a Hypothesis property.

Property: whatever agreements are signed (only those the ledger can afford) and whatever honest
amounts are accepted, stopping every agreement when the exhaustion signal fires and then paying
each its worst-case final invoice never spends more than ``budget - margin``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from golem_trio.payment import (
    CPU_SEC,
    DURATION_SEC,
    AgreementTerms,
    BudgetExceeded,
    BudgetLedger,
    ExhaustedReason,
    MarginRatio,
    Tolerance,
)
from golem_trio.terms import Pricing

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXACT = Tolerance(relative=Decimal(0), absolute=Decimal(0), grace=dt.timedelta(0))
PER_SECOND = Decimal("0.01")


def make_terms(
    agreement_id: str = "ag-1",
    *,
    duration_price: Decimal = PER_SECOND,
    cpu_price: Decimal = Decimal(0),
    fixed: Decimal = Decimal(0),
    threads: int = 1,
) -> AgreementTerms:
    return AgreementTerms(
        agreement_id=agreement_id,
        provider_id="0x" + "a" * 40,
        requestor_id="0x" + "b" * 40,
        pricing=Pricing(
            counters=(CPU_SEC, DURATION_SEC),
            coefficients=(cpu_price, duration_price),
            fixed=fixed,
        ),
        threads=threads,
        approved_at=T0,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def exact_ledger(budget: str, **kwargs: Any) -> tuple[BudgetLedger, FakeClock]:
    clock = FakeClock()
    kwargs.setdefault("margin", Decimal(0))
    kwargs.setdefault("shutdown", 0.0)
    kwargs.setdefault("tolerance", EXACT)
    return BudgetLedger(Decimal(budget), clock=clock, **kwargs), clock


# --- projected ----------------------------------------------------------------------------------


def test_projected_counts_open_agreements_at_their_worst_rate() -> None:
    ledger, clock = exact_ledger("100")
    terms = make_terms(cpu_price=Decimal("0.001"), fixed=Decimal("0.5"), threads=4)
    ledger.open_agreement(terms, started_at=10.0)
    # fixed + (0.01 + 4 * 0.001) per second
    assert ledger.projected(110.0) == Decimal("0.5") + Decimal("0.014") * 100
    assert ledger.projected(10.0) == Decimal("0.5")
    assert ledger.projected(0.0) == Decimal("0.5")  # before the start: just the fixed price
    clock.now = 60.0
    assert ledger.projected() == Decimal("0.5") + Decimal("0.014") * 50


def test_projected_includes_the_billing_tolerance() -> None:
    tolerance = Tolerance()  # 1 % relative, 1e-9 absolute, 5 s grace
    ledger, _ = exact_ledger("100", tolerance=tolerance)
    terms = make_terms(fixed=Decimal("0.5"))
    ledger.open_agreement(terms, started_at=0.0)
    assert ledger.projected(100.0) == terms.max_cost(Decimal(105), tolerance)
    assert ledger.projected(100.0) == Decimal("0.5") + Decimal("1.05") * Decimal("1.01") + Decimal(
        "0.000000001"
    )


def test_projected_closed_agreements_stop_accruing_and_accepted_is_a_floor() -> None:
    ledger, _ = exact_ledger("100")
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    ledger.open_agreement(make_terms("b"), started_at=0.0)
    ledger.closed("a", at=100.0)
    assert ledger.projected(300.0) == Decimal(1) + Decimal(3)
    ledger.accepted("a", Decimal("0.4"))
    assert ledger.projected(300.0) == Decimal(4)  # still within a's worst case
    ledger.accepted("b", Decimal("5"))  # more than b can cost by 300 s: the floor wins
    assert ledger.spent == Decimal("5.4")
    assert ledger.projected(300.0) == Decimal(1) + Decimal(5)
    assert ledger.projected(0.0) >= ledger.spent


def test_settled_invoice_replaces_the_projection() -> None:
    ledger, _ = exact_ledger("100")
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    ledger.accepted("a", Decimal("0.3"))
    assert ledger.check_settle("a", Decimal("0.7"))
    assert not ledger.check_settle("a", Decimal("0.2"))  # below what was accepted
    ledger.settled("a", Decimal("0.7"))
    assert ledger.spent == Decimal("0.7")
    assert ledger.projected(10_000.0) == Decimal("0.7")
    assert ledger.time_left() is None
    assert not ledger.check_settle("a", Decimal("0.7"))
    with pytest.raises(ValueError, match="settled already"):
        ledger.settled("a", Decimal("0.7"))
    with pytest.raises(ValueError, match="settled already"):
        ledger.accepted("a", Decimal("0.1"))


# --- time_left and can_afford -------------------------------------------------------------------


def test_time_left_for_a_known_number_of_agreement_minutes() -> None:
    # 3 agreements for 10 minutes each at 0.01/s cost 18; 60 s go to stopping them.
    ledger, clock = exact_ledger("18", shutdown=60.0)
    assert ledger.time_left() is None
    for name in "abc":
        ledger.open_agreement(make_terms(name), started_at=0.0)
    assert ledger.time_left() == 540.0
    clock.now = 500.0
    assert ledger.time_left() == 40.0
    clock.now = 600.0
    assert ledger.time_left() == 0.0


def test_time_left_with_margin_and_fixed_prices() -> None:
    ledger, _ = exact_ledger("10", margin=MarginRatio(Decimal("0.2")), shutdown=10.0)
    assert ledger.margin == Decimal(2)
    assert ledger.limit == Decimal(8)
    ledger.open_agreement(make_terms("a", fixed=Decimal(2)), started_at=0.0)
    # 2 + 0.01 * (T + 10) <= 8
    assert ledger.time_left() == 590.0


def test_time_left_walks_past_accepted_amounts_above_the_rate() -> None:
    ledger, _ = exact_ledger("10")
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    ledger.open_agreement(make_terms("b"), started_at=0.0)
    ledger.accepted("a", Decimal(4))  # a costs 4 until 400 s, then 0.01/s
    # up to 400 s: 4 + 0.01 T; after: 0.02 T <= 10 gives T = 500
    assert ledger.time_left() == 500.0
    ledger.accepted("b", Decimal(5))  # b costs 5 until 500 s: 4 + 5 + 0.01 (T - 400) <= 10
    assert ledger.time_left() == 500.0
    ledger.accepted("b", Decimal("0.5"))
    assert ledger.time_left() == 450.0


def test_time_left_is_infinite_for_free_agreements_and_zero_when_over() -> None:
    ledger, _ = exact_ledger("1")
    ledger.open_agreement(make_terms("free", duration_price=Decimal(0)), started_at=0.0)
    assert ledger.time_left() == math.inf
    ledger.open_agreement(make_terms("big", fixed=Decimal(2)), started_at=0.0)
    assert ledger.time_left() == 0.0


def test_can_afford() -> None:
    ledger, clock = exact_ledger("18", shutdown=60.0)
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    ledger.open_agreement(make_terms("b"), started_at=0.0)
    clock.now = 100.0
    # a and b to 100 + d + 60, c for d + 60: 0.02 (160 + d) + 0.01 (d + 60) <= 18 gives d = 473.33
    assert ledger.can_afford(make_terms("c"), 473.0)
    assert not ledger.can_afford(make_terms("c"), 474.0)
    assert not ledger.can_afford(make_terms("c", fixed=Decimal(15)), 0.0)
    # a free one only has to leave room for a and b: 0.02 (160 + d) <= 18 gives d = 740
    assert ledger.can_afford(make_terms("c", duration_price=Decimal(0)), 740.0)
    assert not ledger.can_afford(make_terms("c", duration_price=Decimal(0)), 741.0)
    with pytest.raises(ValueError, match="duration"):
        ledger.can_afford(make_terms("c"), -1.0)


# --- spending -----------------------------------------------------------------------------------


def test_accepting_past_the_budget_raises_and_records_nothing() -> None:
    ledger, _ = exact_ledger("1", margin=Decimal("0.5"))
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    ledger.accepted("a", Decimal("0.9"))  # the margin limits the projection, not spending
    assert ledger.check_accept(Decimal("0.1"))
    assert not ledger.check_accept(Decimal("0.11"))
    with pytest.raises(BudgetExceeded) as caught:
        ledger.accepted("a", Decimal("0.11"))
    assert caught.value.amount == Decimal("0.11")
    assert caught.value.spent == Decimal("0.9")
    assert caught.value.budget == Decimal(1)
    assert caught.value.agreement_id == "a"
    assert ledger.spent == Decimal("0.9")
    assert ledger.agreements["a"].accepted == Decimal("0.9")
    with pytest.raises(BudgetExceeded):
        ledger.settled("a", Decimal("1.2"))
    assert ledger.spent == Decimal("0.9")
    assert ledger.agreements["a"].settled is None
    ledger.settled("a", Decimal(1))
    assert ledger.spent == Decimal(1)


def test_bad_input() -> None:
    ledger, _ = exact_ledger("1")
    with pytest.raises(KeyError, match="not in the ledger"):
        ledger.accepted("nope", Decimal(0))
    with pytest.raises(KeyError):
        ledger.closed("nope")
    ledger.open_agreement(make_terms("a"))
    with pytest.raises(ValueError, match="already"):
        ledger.open_agreement(make_terms("a"))
    with pytest.raises(ValueError, match=">= 0"):
        ledger.accepted("a", Decimal(-1))
    assert not ledger.check_accept(Decimal(-1))
    with pytest.raises(ValueError, match="invoice"):
        ledger.settled("a", Decimal(-1))
    with pytest.raises(ValueError, match="margin"):
        BudgetLedger(Decimal(1), margin=Decimal(2))
    with pytest.raises(ValueError, match="ratio"):
        MarginRatio(Decimal(1))
    with pytest.raises(ValueError, match="budget"):
        BudgetLedger(Decimal(-1), margin=Decimal(0))
    with pytest.raises(ValueError, match="shutdown"):
        BudgetLedger(Decimal(1), margin=Decimal(0), shutdown=-1.0)


# --- the exhaustion signal in virtual time ------------------------------------------------------


def trio_ledger(budget: str, **kwargs: Any) -> BudgetLedger:
    kwargs.setdefault("margin", Decimal(0))
    kwargs.setdefault("shutdown", 60.0)
    kwargs.setdefault("tolerance", EXACT)
    return BudgetLedger(Decimal(budget), **kwargs)


async def test_signal_stops_agreement_minutes_before_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = trio_ledger("18")
    t0 = trio.current_time()
    for name in "abc":
        ledger.open_agreement(make_terms(name))
    reason = await ledger.wait_exhausted()
    assert trio.current_time() - t0 == 540.0
    assert ledger.exhausted.is_set()
    assert ledger.exhausted_reason is reason
    assert reason.at - t0 == 540.0
    assert reason.projected == Decimal(18)
    assert reason.limit == Decimal(18)
    assert reason.agreements == ("a", "b", "c")
    assert reason.shutdown == 60.0
    assert "exhausted" in str(reason)
    assert not ledger.can_afford(make_terms("d", duration_price=Decimal(0)), 0.0)
    # Latched: a second wait returns the same reason at once.
    assert await ledger.wait_exhausted() is reason
    for name in "abc":
        ledger.closed(name, at=trio.current_time() + 60.0)
    assert ledger.projected() == Decimal(18)


async def test_signal_replans_when_an_agreement_closes_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = trio_ledger("18")
    t0 = trio.current_time()
    for name in "abc":
        ledger.open_agreement(make_terms(name))
    async with trio.open_nursery() as nursery:
        reasons: list[ExhaustedReason] = []

        async def wait() -> None:
            reasons.append(await ledger.wait_exhausted())

        nursery.start_soon(wait)
        nursery.start_soon(wait)  # any number of waiters
        await trio.sleep(100)
        ledger.closed("a")  # 1 spent; 0.02 (T + 60) <= 17 gives T = 790
    assert trio.current_time() - t0 == 790.0
    assert reasons[0] is reasons[1]
    assert reasons[0].agreements == ("b", "c")


async def test_closing_agreements_one_by_one_costs_the_wait_no_exact_plans(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster stopping closes its agreements one after the other: an exact plan costs
    # O(agreements), one per close would be quadratic. Closing only lowers the exposure, so
    # the plan made before stays a valid bound; the wait plans again at that plan's deadline.
    ledger = trio_ledger("18")
    t0 = trio.current_time()
    names = [f"ag-{i}" for i in range(30)]
    for name in names:
        ledger.open_agreement(make_terms(name, duration_price=PER_SECOND / 10))
    plans = 0
    plan = ledger._plan

    def counted(now: float) -> Any:
        nonlocal plans
        plans += 1
        return plan(now)

    monkeypatch.setattr(ledger, "_plan", counted)
    async with trio.open_nursery() as nursery:
        reasons: list[ExhaustedReason] = []

        async def wait() -> None:
            reasons.append(await ledger.wait_exhausted())

        nursery.start_soon(wait)
        await trio.sleep(10)
        assert plans == 1
        for name in names[:-1]:
            ledger.closed(name)
            await trio.sleep(1)
        assert plans == 1
    # The last one alone runs the budget out, found by a plan at the old deadline, and later
    # than all thirty would have (at the rate of the three agreements above: 540 s).
    assert reasons[0].agreements == (names[-1],)
    assert trio.current_time() - t0 > 540.0


async def test_signal_replans_when_an_agreement_opens_or_amounts_are_accepted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = trio_ledger("18")
    t0 = trio.current_time()
    ledger.open_agreement(make_terms("a"))
    ledger.open_agreement(make_terms("b"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ledger.wait_exhausted)
        await trio.sleep(300)
        assert ledger.time_left() == 540.0  # 0.02 (T + 60) <= 18 gives T = 840
        ledger.open_agreement(make_terms("c"))
        # 0.02 (T + 60) + 0.01 (T + 60 - 300) <= 18 gives T = 640
        await trio.sleep(100)
        # a costs 8 until 800 s: 8 + 0.01 (T + 60) + 0.01 (T - 240) <= 18 gives T = 590
        ledger.accepted("a", Decimal(8))
    assert trio.current_time() - t0 == 590.0


async def test_signal_fires_at_the_exact_deadline_after_reservations_and_openings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Reservations and openings only add exposure: the wait bounds it instead of planning
    # again, and must still fire exactly when the exposure reaches the limit.
    ledger = trio_ledger("18")
    ledger.open_agreement(make_terms("a"))
    expected: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ledger.wait_exhausted)
        await trio.sleep(100)
        key = object()
        assert ledger.reserve(key, make_terms("b"))
        await trio.sleep(10)
        ledger.open_agreement(make_terms("b"), reservation=key)
        ledger.release(key)
        other = object()
        assert ledger.reserve(other, make_terms("c"))
        ledger.release(other)
        expected.append(trio.current_time() + ledger.time_left())
    assert ledger.exhausted_reason is not None
    assert trio.current_time() == expected[0]
    assert ledger.exhausted_reason.agreements == ("a", "b")


async def test_cancelling_a_wait_changes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    ledger = trio_ledger("18")
    t0 = trio.current_time()
    ledger.open_agreement(make_terms("a"))
    with trio.move_on_after(100):
        await ledger.wait_exhausted()
    assert not ledger.exhausted.is_set()
    assert ledger.exhausted_reason is None
    assert ledger.time_left() == 1640.0
    reason = await ledger.wait_exhausted()
    assert reason.at - t0 == 1740.0


async def test_an_unaffordable_agreement_fires_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = trio_ledger("1")
    t0 = trio.current_time()
    ledger.open_agreement(make_terms("a", fixed=Decimal(2)))
    reason = await ledger.wait_exhausted()
    assert reason.at == t0
    assert reason.projected > reason.budget


async def test_the_wait_sleeps_on_trio_time_with_another_ledger_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def clock() -> float:
        return trio.current_time() + 1000.0

    ledger = trio_ledger("18", clock=clock)
    t0 = trio.current_time()
    ledger.open_agreement(make_terms("a"))
    assert ledger.agreements["a"].started_at == t0 + 1000.0
    reason = await ledger.wait_exhausted()
    assert trio.current_time() - t0 == pytest.approx(1740.0)
    assert reason.at == pytest.approx(t0 + 1000.0 + 1740.0)


async def test_with_nothing_open_the_wait_sleeps(autojump_clock: trio.testing.MockClock) -> None:
    ledger = trio_ledger("18")
    with trio.move_on_after(10_000) as scope:
        await ledger.wait_exhausted()
    assert scope.cancelled_caught


# --- property: the budget is a hard cap ---------------------------------------------------------

HIGH = decimal.Context(prec=96)


@attrs.frozen
class Spec:
    duration_price: Decimal
    cpu_price: Decimal
    fixed: Decimal
    threads: int
    start: int
    duration: int
    accepts: tuple[tuple[int, Decimal], ...]
    stop_share: Decimal


@attrs.frozen
class Scenario:
    budget: Decimal
    margin: Decimal | MarginRatio
    shutdown: int
    tolerance: Tolerance
    specs: tuple[Spec, ...]


prices = st.decimals(min_value=0, max_value=Decimal("0.002"), places=6)
shares = st.decimals(min_value=0, max_value=1, places=2)

specs = st.builds(
    Spec,
    duration_price=prices,
    cpu_price=prices,
    fixed=st.decimals(min_value=0, max_value=Decimal("0.5"), places=3),
    threads=st.integers(1, 16),
    start=st.integers(0, 3600),
    duration=st.integers(1, 20_000),
    accepts=st.lists(st.tuples(st.integers(0, 20_000), shares), max_size=6).map(tuple),
    stop_share=st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1)]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    budget = draw(st.decimals(min_value=Decimal("0.1"), max_value=50, places=3))
    margin = draw(
        st.one_of(
            st.decimals(min_value=0, max_value=budget / 4, places=4),
            st.builds(MarginRatio, st.decimals(min_value=0, max_value=Decimal("0.3"), places=2)),
        )
    )
    return Scenario(
        budget=budget,
        margin=margin,
        shutdown=draw(st.integers(0, 120)),
        tolerance=draw(st.sampled_from([Tolerance(), EXACT])),
        specs=tuple(draw(st.lists(specs, min_size=1, max_size=6))),
    )


def floor_float(value: Decimal) -> float:
    result = float(value)
    return math.nextafter(result, -math.inf) if Decimal(result) > value else result


def simulate(scenario: Scenario) -> tuple[BudgetLedger, dict[str, Decimal]]:
    ledger = BudgetLedger(
        scenario.budget,
        margin=scenario.margin,
        shutdown=float(scenario.shutdown),
        tolerance=scenario.tolerance,
    )
    grace = Decimal(str(scenario.tolerance.grace.total_seconds()))
    scopes: dict[str, trio.CancelScope] = {}
    finals: dict[str, Decimal] = {}

    async def stop_all_when_exhausted() -> None:
        await ledger.wait_exhausted()
        for scope in scopes.values():
            scope.cancel()

    async def run_agreement(name: str, spec: Spec) -> None:
        terms = make_terms(
            name,
            duration_price=spec.duration_price,
            cpu_price=spec.cpu_price,
            fixed=spec.fixed,
            threads=spec.threads,
        )
        await trio.sleep_until(spec.start)
        if not ledger.can_afford(terms, 0.0):
            return
        start = trio.current_time()
        ledger.open_agreement(terms, start)
        accepted = Decimal(0)
        scope = scopes[name] = trio.CancelScope(deadline=start + spec.duration)
        with scope:
            for offset, share in sorted(spec.accepts):
                await trio.sleep_until(start + offset)
                with decimal.localcontext(HIGH):
                    elapsed = Decimal(trio.current_time()) - Decimal(start)
                    target = share * terms.max_cost(elapsed + grace, scenario.tolerance)
                    more = target - accepted
                if more <= 0:
                    continue
                if ledger.check_accept(more):
                    ledger.accepted(name, more)
                    accepted += more
                else:
                    spent = ledger.spent
                    with pytest.raises(BudgetExceeded):
                        ledger.accepted(name, more)
                    assert ledger.spent == spent
            await trio.sleep_forever()
        stopped = Decimal(trio.current_time())
        stopping = Decimal(0)
        if ledger.exhausted.is_set():  # stopped early: the stopping phase takes its time
            stopping = Decimal(scenario.shutdown) * spec.stop_share
            await trio.sleep(float(stopping))
        with decimal.localcontext(HIGH):
            end = stopped + stopping
            worst = terms.max_cost(end - Decimal(start) + grace, scenario.tolerance)
        ledger.closed(name, floor_float(end))
        finals[name] = max(accepted, worst)

    async def main() -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(stop_all_when_exhausted)
            async with trio.open_nursery() as nursery:
                for index, spec in enumerate(scenario.specs):
                    nursery.start_soon(run_agreement, f"ag-{index}", spec)
            outer.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return ledger, finals


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_stopping_on_the_signal_keeps_final_invoices_within_the_budget(
    scenario: Scenario,
) -> None:
    ledger, finals = simulate(scenario)
    event("exhausted" if ledger.exhausted.is_set() else "not exhausted")
    event(f"{len(finals)} of {len(scenario.specs)} agreements signed")
    note(f"reason: {ledger.exhausted_reason}")
    assert ledger.time_left() is None
    assert ledger.projected(1e6) >= ledger.spent
    with decimal.localcontext(HIGH):
        total = sum(finals.values(), Decimal(0))
    note(f"finals: {finals}, total {total}, limit {ledger.limit}")
    assert total <= ledger.limit <= ledger.budget
    if ledger.exhausted.is_set() and ledger.limit > 0:
        event(
            f"exhausted, final invoices use {int(10 * total / ledger.limit) * 10}+ % of the limit"
        )
    for name, final in finals.items():
        assert ledger.check_settle(name, final)
        ledger.settled(name, final)
    assert ledger.spent == total
    assert ledger.spent <= ledger.budget


def test_a_top_up_moves_the_exhaustion_later_and_a_cut_earlier() -> None:
    now = [0.0]
    ledger = BudgetLedger(
        Decimal("1"), margin=MarginRatio(Decimal("0.1")), shutdown=60.0, clock=lambda: now[0]
    )
    ledger.open_agreement(make_terms("a"), started_at=0.0)
    before = ledger.time_left()
    assert before is not None
    ledger.set_budget(Decimal("2"))
    assert ledger.margin == Decimal("0.2")  # the ratio follows the budget
    raised = ledger.time_left()
    assert raised is not None
    assert raised > before
    ledger.set_budget(Decimal("1"))
    assert ledger.time_left() == before
    with pytest.raises(ValueError, match="stopping every agreement"):
        ledger.set_budget(Decimal("0.0001"))
    assert ledger.budget == Decimal("1")


def test_the_budget_cannot_go_below_what_is_spent_or_change_after_it_ran_out() -> None:
    now = [0.0]
    ledger = BudgetLedger(Decimal("1"), margin=Decimal(0), shutdown=0.0, clock=lambda: now[0])
    terms = make_terms("a")
    ledger.open_agreement(terms, started_at=0.0)
    ledger.accepted("a", Decimal("0.5"))
    with pytest.raises(ValueError, match="spent"):
        ledger.set_budget(Decimal("0.4"))
    now[0] = 10**9
    with pytest.raises(ValueError):
        ledger.set_budget(Decimal("1"))  # stopping now would already cost more


async def test_a_cut_wakes_the_exhaustion_wait(autojump_clock: trio.testing.MockClock) -> None:
    ledger = BudgetLedger(Decimal("100"), margin=Decimal(0), shutdown=0.0)
    ledger.open_agreement(make_terms("a"))
    fired: list[float] = []
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            await ledger.wait_exhausted()
            fired.append(trio.current_time())

        nursery.start_soon(wait)
        await trio.sleep(10)
        left = ledger.time_left()
        assert left is not None
        ledger.set_budget(ledger.budget / 10)
        shorter = ledger.time_left()
        assert shorter is not None
        assert shorter < left
    (at,) = fired
    assert at <= 10 + shorter + 1e-6
    with pytest.raises(RuntimeError, match="ran out"):
        ledger.set_budget(Decimal("100"))
