"""The budget ledger: a hard cap on what the requestor spends.

:class:`BudgetLedger` keeps, per agreement, what was accepted (debit notes, then the invoice) and
what the agreement may still cost at its agreed linear prices, assuming the worst: every thread
busy for the whole time, plus the :class:`~golem_trio.payment.Tolerance` that billing grants
honest providers. From that it projects the spend and answers three questions:

- :meth:`BudgetLedger.time_left`: how long the open agreements may keep running before they must
  be stopped, so that stopping them (the *shutdown allowance*) and their final invoices still fit
  under ``budget - margin``;
- :meth:`BudgetLedger.can_afford`: whether a new agreement may be signed for a given duration;
- :meth:`BudgetLedger.wait_exhausted`: run as a task (``nursery.start_soon``), it sleeps until
  :meth:`~BudgetLedger.time_left` runs out, re-planning whenever an agreement opens or closes or
  an amount is accepted, then sets :attr:`BudgetLedger.exhausted` with the figures behind it.

The *exposure* for a stop at time ``T`` (ledger clock) is what can still be spent if every open
agreement is told to stop at ``T``::

    Σ settled invoices
    + Σ closed agreements   B_i(closed_at_i)
    + Σ open agreements     B_i(max(T, checkpoint_i) + shutdown)

    B_i(end) = max(accepted_i, min(W_i(end - started_at_i),
                                   accepted_i + W_i(end - noted_at_i) - fixed_i))
    checkpoint_i = (noted_at_i or started_at_i) + debit_note_interval_i + grace

where ``W_i(elapsed) = terms_i.max_cost(max(elapsed, 0) + grace, tolerance)`` is the largest
invoice billing would accept for an agreement that ran ``elapsed`` seconds (one activity), and
``noted_at_i`` is when the last accepted debit note was issued (the second bound only counts once
one was accepted). So an open agreement counts what was accepted plus its worst case over the
window it has not been billed for yet: from its last accepted note up to the next one it must
accept or refuse (``checkpoint_i``; an agreement without a debit-note interval has no such
checkpoint and is counted up to ``T``), plus the shutdown allowance. Billing accepts no invoice
above ``B_i`` of the agreement's end (see :mod:`._billing`), so an agreement stopped within the
allowance costs at most its share. The exposure is non-decreasing in ``T``; the latest safe stop
time is found from a piecewise-linear bound that equals it up to the checkpoints.

Before an agreement is signed, :meth:`BudgetLedger.reserve` checks that its worst-case exposure
still fits and holds it until the agreement opens (:meth:`BudgetLedger.open_agreement` with the
reservation) or is given up (:meth:`BudgetLedger.release`).

:attr:`BudgetLedger.spent` (what was accepted) never exceeds the budget:
:meth:`~BudgetLedger.accepted` and :meth:`~BudgetLedger.settled` raise :class:`BudgetExceeded`
instead, and change nothing. Money moves only after the ledger agreed, so callers ask first
(:meth:`~BudgetLedger.check_accept`, :meth:`~BudgetLedger.check_settle`).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import cast

import attrs
import trio

from golem_trio.terms import AgreementTerms, Terms, Tolerance

from .._errors import GolemError

__all__ = [
    "AgreementSpend",
    "BudgetExceeded",
    "BudgetLedger",
    "ExhaustedReason",
    "MarginRatio",
]

# Enough digits for exact sums of prices times float times (a float has at most 17 significant
# digits, but its exact decimal expansion is longer); divisions round towards earlier deadlines.
_CONTEXT = decimal.Context(prec=96, rounding=decimal.ROUND_HALF_EVEN)


def _dec(value: float) -> Decimal:
    """A float time as the exact decimal it stands for."""
    return Decimal(value)


def _floor_float(value: Decimal) -> float:
    """The largest float that is not above ``value``."""
    result = float(value)
    if Decimal(result) > value:
        result = math.nextafter(result, -math.inf)
    return result


class BudgetExceeded(GolemError):
    """Accepting ``amount`` would take what was spent past the budget; nothing was recorded."""

    def __init__(self, agreement_id: str, amount: Decimal, spent: Decimal, budget: Decimal) -> None:
        super().__init__(
            f"accepting {amount} for agreement {agreement_id!r} would spend "
            f"{spent + amount} of a {budget} budget"
        )
        self.agreement_id = agreement_id
        self.amount = amount
        self.spent = spent
        self.budget = budget


@attrs.frozen
class MarginRatio:
    """A margin given as a share of the budget: ``MarginRatio(Decimal("0.05"))`` keeps 5 %."""

    ratio: Decimal = attrs.field()

    @ratio.validator
    def _check(self, _attribute: object, value: Decimal) -> None:
        if not Decimal(0) <= value < 1:
            raise ValueError(f"a margin ratio must be in [0, 1), got {value}")

    def of(self, budget: Decimal) -> Decimal:
        return budget * self.ratio


@attrs.frozen
class AgreementSpend:
    """What the ledger knows about one agreement (times on the ledger's clock)."""

    terms: AgreementTerms
    started_at: float
    closed_at: float | None
    accepted: Decimal
    settled: Decimal | None

    @property
    def agreement_id(self) -> str:
        return self.terms.agreement_id

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and self.settled is None


@attrs.frozen
class ExhaustedReason:
    """Why the budget ran out: stopping the ``agreements`` still open at ``at`` (ledger clock) and
    paying every final invoice may cost up to ``projected``, which would pass ``budget - margin``
    if they ran any longer. ``shutdown`` is the allowance counted for stopping them."""

    at: float
    projected: Decimal
    spent: Decimal
    budget: Decimal
    margin: Decimal
    shutdown: float
    agreements: tuple[str, ...]

    @property
    def limit(self) -> Decimal:
        return self.budget - self.margin

    def __str__(self) -> str:
        return (
            f"budget exhausted: stopping {len(self.agreements)} agreement(s) may cost up to "
            f"{self.projected} of {self.budget} (margin {self.margin}, spent {self.spent})"
        )


@attrs.define
class _Agreement:
    terms: Terms
    started_at: float
    #: The worst case is linear in the billed time: ``base + rate * seconds`` (tolerance in),
    #: kept here so projections over many agreements stay cheap.
    base: Decimal
    rate: Decimal
    #: Seconds after the last accepted note (or the start) by which the next one must come;
    #: ``None`` without a negotiated interval.
    window: Decimal | None = None
    closed_at: float | None = None
    accepted: Decimal = Decimal(0)
    settled: Decimal | None = None
    #: When the last accepted debit note was issued (ledger clock).
    noted_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and self.settled is None


@attrs.frozen
class _Plan:
    """One exact plan of the exhaustion wait (see :meth:`BudgetLedger._plan`)."""

    deadline: float | None
    at: Decimal
    value: Decimal
    slope: Decimal
    replans: int
    grown_value: Decimal
    grown_rate: Decimal


def _default_clock() -> float:
    return trio.current_time()


class BudgetLedger:
    """Spend accepted and projected against a hard ``budget`` (GLM).

    Args:
        budget: the most that may ever be spent.
        margin: kept free by the projection (an absolute amount, or a :class:`MarginRatio` of the
            budget): running agreements are stopped when the worst case would pass
            ``budget - margin``. :attr:`spent` alone may use the whole budget.
        shutdown: seconds counted between the exhaustion signal and the end of every open
            agreement: the stopping phase's deadline plus destroying the activity and terminating
            the agreement. Agreements that take longer to end may be billed beyond the budget.
        tolerance: the slack billing grants honest providers (the ledger's worst case is the
            largest invoice billing would accept); use the billing ledger's.
        clock: the ledger's clock in seconds, trio's by default. All times passed in and out are
            on this clock.

    The synchronous methods may be called from any task of the trio run that owns the ledger
    (or outside any run when ``clock`` does not need one). An agreement has one activity; its
    fixed price is counted once.
    """

    def __init__(
        self,
        budget: Decimal,
        *,
        margin: Decimal | MarginRatio,
        shutdown: float = 60.0,
        tolerance: Tolerance | None = None,
        clock: Callable[[], float] = _default_clock,
    ) -> None:
        if not budget.is_finite() or budget < 0:
            raise ValueError(f"the budget must be a finite amount >= 0, got {budget}")
        absolute = margin.of(budget) if isinstance(margin, MarginRatio) else margin
        if not absolute.is_finite() or not Decimal(0) <= absolute <= budget:
            raise ValueError(f"the margin must be between 0 and the budget, got {absolute}")
        if not math.isfinite(shutdown) or shutdown < 0:
            raise ValueError(f"the shutdown allowance must be >= 0 seconds, got {shutdown}")
        self._budget = budget
        self._margin_ratio = margin if isinstance(margin, MarginRatio) else None
        self._margin = absolute
        self._shutdown = shutdown
        self._tolerance = tolerance if tolerance is not None else Tolerance()
        self._grace = Decimal(str(self._tolerance.grace.total_seconds()))
        self._clock = clock
        self._agreements: dict[str, _Agreement] = {}
        self._reservations: dict[object, _Agreement] = {}
        self._spent = Decimal(0)
        self._changed = trio.Event()
        self._exhausted = trio.Event()
        self._reason: ExhaustedReason | None = None
        # What the exhaustion wait needs to skip exact plans (O(agreements) each): how many
        # changes asked for a new plan, and running sums that bound, linearly in time, the
        # exposure added since by new agreements and reservations (see ``_grew``).
        self._replans = 0
        self._grown_value = Decimal(0)
        self._grown_rate = Decimal(0)
        self._last_plan: _Plan | None = None

    # --- figures ---

    @property
    def budget(self) -> Decimal:
        return self._budget

    @property
    def margin(self) -> Decimal:
        """The margin as an amount."""
        return self._margin

    @property
    def limit(self) -> Decimal:
        """``budget - margin``: what the projection must stay within."""
        return self._budget - self._margin

    @property
    def shutdown(self) -> float:
        """Seconds counted for stopping an open agreement once told to stop."""
        return self._shutdown

    @shutdown.setter
    def shutdown(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"the shutdown allowance must be >= 0 seconds, got {seconds}")
        self._shutdown = seconds
        self._notify()

    def now(self) -> float:
        """The ledger's clock."""
        return self._clock()

    @property
    def changed(self) -> trio.Event:
        """Set (and replaced) whenever the figures change: an agreement opens or closes, an
        amount is accepted, a reservation is made or released, the budget changes."""
        return self._changed

    @property
    def spent(self) -> Decimal:
        """Everything accepted so far (debit notes, and invoices in their place once settled)."""
        return self._spent

    @property
    def agreements(self) -> Mapping[str, AgreementSpend]:
        """A snapshot of every agreement the ledger knows."""
        return {
            key: AgreementSpend(
                cast(AgreementTerms, a.terms), a.started_at, a.closed_at, a.accepted, a.settled
            )
            for key, a in self._agreements.items()
        }

    @property
    def exhausted(self) -> trio.Event:
        """Set (once, for good) when the budget ran out; see :meth:`wait_exhausted`."""
        return self._exhausted

    @property
    def exhausted_reason(self) -> ExhaustedReason | None:
        return self._reason

    def set_budget(self, budget: Decimal) -> None:
        """Change the budget (a top-up or a cut) while agreements run; the exhaustion plan is
        made again from it (a cut can make the budget run out at once, never below what
        stopping every agreement now would cost).

        A margin given as a :class:`MarginRatio` follows the new budget; an absolute one stays.
        Raises ``ValueError`` for a budget below what is spent already or below an absolute
        margin, ``RuntimeError`` once the budget ran out (the work was stopped for good).
        """
        self._margin = self.check_budget(budget)
        self._budget = budget
        self._notify()

    def check_budget(self, budget: Decimal) -> Decimal:
        """What :meth:`set_budget` checks, without changing anything; the margin it would
        keep."""
        if self._reason is not None:
            raise RuntimeError("the budget ran out already; the work it paid for was stopped")
        if not budget.is_finite() or budget < self._spent:
            raise ValueError(f"the budget must be at least what is spent ({self._spent})")
        margin = self._margin_ratio.of(budget) if self._margin_ratio else self._margin
        if margin > budget:
            raise ValueError(f"the budget must be at least the margin ({margin})")
        # A cut must still pay for stopping everything now: spend can never exceed a budget.
        with decimal.localcontext(_CONTEXT):
            stopping = self._stop_cost(_dec(self._clock()), self._all())
        if budget - margin < stopping:
            raise ValueError(
                f"the budget must cover stopping every agreement now ({stopping} + margin)"
            )
        return margin

    # --- facts from the caller ---

    def open_agreement(
        self,
        terms: AgreementTerms,
        started_at: float | None = None,
        *,
        reservation: object | None = None,
    ) -> None:
        """Count an approved agreement from ``started_at`` (default: now, or when its
        ``reservation`` was made, which it takes the place of).

        Reserve before signing (:meth:`reserve`): the agreement is counted even when it does not
        fit (it is signed), and then the exhaustion signal fires at once.
        """
        if terms.agreement_id in self._agreements:
            raise ValueError(f"agreement {terms.agreement_id!r} is already in the ledger")
        held = self._reservations.pop(reservation, None) if reservation is not None else None
        start = self._clock() if started_at is None else started_at
        if held is not None and started_at is None:
            start = min(start, held.started_at)
        agreement = self._new(terms, start)
        self._agreements[terms.agreement_id] = agreement
        self._notify(grew=agreement)

    def exposure_of(self, terms: Terms) -> Decimal:
        """The worst-case exposure of one new agreement on ``terms``: what it may cost by its
        first checkpoint plus the shutdown allowance (see the module's docstring)."""
        now = self._clock()
        with decimal.localcontext(_CONTEXT):
            return self._cost(self._new(terms, now), _dec(now))

    def exposure(self, at: float | None = None) -> Decimal:
        """What can still be spent if every open agreement (and reservation) is told to stop
        at ``at`` (default: now): the figure the budget is exhausted on."""
        when = _dec(self._clock() if at is None else at)
        with decimal.localcontext(_CONTEXT):
            return self._stop_cost(when, self._all())

    def fits(self, terms: Terms) -> bool:
        """Whether one more agreement on ``terms`` would fit now (see :meth:`reserve`)."""
        if self._reason is not None:
            return False
        now = self._clock()
        with decimal.localcontext(_CONTEXT):
            new = self._new(terms, now)
            at = _dec(now)
            plan = self._last_plan
            if plan is not None and plan.replans == self._replans and plan.at <= at:
                # The bound of the last plan shows room: no need to sum every agreement.
                value, rate = self._upper(plan)
                if value + rate * at + self._cost(new, at) <= self.limit:
                    return True
            return self._stop_cost(at, [*self._all(), new]) <= self.limit

    def reserve(self, key: object, terms: Terms) -> bool:
        """Hold room for an agreement about to be signed on ``terms`` under ``key`` (replacing
        what ``key`` held), if its worst-case exposure fits with everything else under
        ``budget - margin``; returns whether it did. Never once the budget ran out."""
        self._reservations.pop(key, None)
        fits = self.fits(terms)
        held = None
        if fits:
            held = self._reservations[key] = self._new(terms, self._clock())
        self._notify(grew=held, shrank=held is None)
        return fits

    def release(self, key: object) -> None:
        """Give up what ``key`` held (the agreement was not signed)."""
        if self._reservations.pop(key, None) is not None:
            self._notify(shrank=True)

    @property
    def reservations(self) -> int:
        """How many agreements are reserved and not yet opened."""
        return len(self._reservations)

    def closed(self, agreement_id: str, at: float | None = None) -> None:
        """The agreement ended at ``at`` (default: now); it accrues no more. The first end
        recorded counts."""
        agreement = self._get(agreement_id)
        if agreement.closed_at is None:
            now = self._clock()
            agreement.closed_at = now if at is None else at
            # Closed by now, it costs what it did by its end, without the stopping allowance:
            # only lower, so the wait's bound stays valid and no exact plan is needed (a
            # cluster stopping closes its agreements one after the other).
            self._notify(shrank=agreement.closed_at <= now)

    def check_accept(self, amount: Decimal) -> bool:
        """Whether ``amount`` more may be accepted without spending past the budget."""
        with decimal.localcontext(_CONTEXT):
            return amount >= 0 and self._spent + amount <= self._budget

    def accepted(
        self, agreement_id: str, amount: Decimal, *, noted_at: float | None = None
    ) -> None:
        """``amount`` more was accepted for the agreement (a debit note's increase over what was
        accepted before); ``noted_at`` is when that note was issued (ledger clock), from which
        the agreement's unbilled window then runs. Raises :class:`BudgetExceeded`, recording
        nothing, if it would spend past the budget; accept the document only after this
        returns."""
        agreement = self._get(agreement_id)
        if amount < 0:
            raise ValueError(f"an accepted amount must be >= 0, got {amount}")
        if agreement.settled is not None:
            raise ValueError(f"agreement {agreement_id!r} is settled already")
        if not self.check_accept(amount):
            raise BudgetExceeded(agreement_id, amount, self._spent, self._budget)
        with decimal.localcontext(_CONTEXT):
            agreement.accepted += amount
            self._spent += amount
        if noted_at is not None:
            agreement.noted_at = noted_at
        self._notify()

    def check_settle(self, agreement_id: str, amount: Decimal) -> bool:
        """Whether the agreement's invoice for ``amount`` may be accepted within the budget."""
        agreement = self._get(agreement_id)
        if agreement.settled is not None or amount < agreement.accepted:
            return False
        with decimal.localcontext(_CONTEXT):
            return self._spent + (amount - agreement.accepted) <= self._budget

    def settled(self, agreement_id: str, amount: Decimal) -> None:
        """The agreement's invoice for ``amount`` (its whole cost) is accepted: the agreement is
        closed and costs exactly that. Raises :class:`BudgetExceeded`, recording nothing, if it
        would spend past the budget, and :class:`ValueError` for an amount below what was
        accepted already or a second invoice."""
        agreement = self._get(agreement_id)
        if agreement.settled is not None:
            raise ValueError(f"agreement {agreement_id!r} is settled already")
        if amount < agreement.accepted:
            raise ValueError(
                f"the invoice {amount} is below the {agreement.accepted} accepted already"
            )
        with decimal.localcontext(_CONTEXT):
            extra = amount - agreement.accepted
            if self._spent + extra > self._budget:
                raise BudgetExceeded(agreement_id, extra, self._spent, self._budget)
            spent = self._spent + extra
        if agreement.closed_at is None:
            agreement.closed_at = self._clock()
        agreement.settled = amount
        agreement.accepted = amount
        self._spent = spent
        self._notify()

    # --- answers ---

    def projected(self, at: float | None = None) -> Decimal:
        """The most the agreements can cost if the open ones run until ``at`` (default: now):
        what was accepted, plus what each open agreement may cost by ``at`` and each closed one
        by its end beyond that. Never less than :attr:`spent`."""
        when = _dec(self._clock() if at is None else at)
        with decimal.localcontext(_CONTEXT):
            return self._projection(when)

    def time_left(self) -> float | None:
        """Seconds the open agreements may keep running before stopping them (taking
        :attr:`shutdown` seconds) and paying their final invoices could pass ``budget - margin``;
        ``0.0`` when that is the case already, ``math.inf`` when they accrue nothing, and
        ``None`` when no agreement is open."""
        if not any(a.is_open for a in self._agreements.values()):
            return None
        now = self._clock()
        deadline = self._deadline(now)
        if deadline is None:
            return math.inf
        return max(0.0, deadline - now)

    def can_afford(self, terms: AgreementTerms, duration: float) -> bool:
        """Whether an agreement with ``terms`` may be signed now and run ``duration`` seconds
        alongside the open ones (and all then be stopped and paid) within ``budget - margin``.
        Always ``False`` once the budget is exhausted."""
        if self._reason is not None:
            return False
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"the duration must be >= 0 seconds, got {duration}")
        now = self._clock()
        with decimal.localcontext(_CONTEXT):
            new = self._new(terms, now)
            stop = _dec(now) + _dec(duration)
            return self._stop_cost(stop, [*self._all(), new]) <= self.limit

    # --- exhaustion ---

    async def wait_exhausted(self) -> ExhaustedReason:
        """Sleep until the budget runs out, then set :attr:`exhausted` and return the reason.

        The wait sleeps on trio's clock until :meth:`time_left` runs out and re-plans whenever
        an agreement opens, closes or is settled, or an amount is accepted. Any number of tasks
        may wait; the first to see the budget run out records the reason, which is then final.
        Returns at once (after a checkpoint) when the budget ran out already. Nothing is missed
        by starting it late: the plan is made from the figures, not from notifications.

        Cancellation: cancelling a wait changes nothing in the ledger; if the budget had not run
        out, it has not, and a later wait picks up from the current figures.
        """
        await trio.lowlevel.checkpoint()
        plan: _Plan | None = None
        while self._reason is None:
            changed = self._changed
            now = self._clock()
            # An exact plan costs O(agreements); after changes that only added agreements or
            # reservations (a cluster starting), a bound says whether it is due yet.
            wake_at = None if plan is None else self._replan_at(plan)
            if wake_at is None or wake_at <= now:
                plan = self._plan(now)
                wake_at = plan.deadline
                if wake_at is not None and wake_at <= now:
                    self._fire(now)
                    break
            if wake_at is None:
                await changed.wait()
                continue
            if self._clock is _default_clock:
                wake = wake_at
            else:
                wake = trio.current_time() + (wake_at - now)
            with trio.move_on_at(wake):
                await changed.wait()
        assert self._reason is not None
        return self._reason

    # --- internals ---

    def _get(self, agreement_id: str) -> _Agreement:
        try:
            return self._agreements[agreement_id]
        except KeyError:
            raise KeyError(f"agreement {agreement_id!r} is not in the ledger") from None

    def _notify(self, *, grew: _Agreement | None = None, shrank: bool = False) -> None:
        """Wake whoever waits on the figures. ``grew``: the change only added this agreement
        (or reservation); ``shrank``: it can only have lowered the exposure (a reservation
        removed, an agreement closed). Any other change makes the exhaustion wait plan again
        exactly."""
        if grew is not None:
            self._grew(grew)
        elif not shrank:
            self._replans += 1
        self._changed.set()
        self._changed = trio.Event()

    def _grew(self, agreement: _Agreement) -> None:
        # A new agreement's cost for a stop at T >= t (now) is at most its cost at t plus
        # rate * (T - t): ``_bill`` grows with the stop at most at the rate. Summed as
        # ``value - rate * t`` and ``rate``, so a bound at T is ``value + rate * T``.
        with decimal.localcontext(_CONTEXT):
            now = _dec(self._clock())
            self._grown_value += self._cost(agreement, now) - agreement.rate * now
            self._grown_rate += agreement.rate

    def _plan(self, now: float) -> _Plan:
        """An exact plan at ``now``: the deadline (:meth:`_deadline`), and what bounds the
        exposure until the next plan (the exposure now and its fastest growth)."""
        with decimal.localcontext(_CONTEXT):
            at = _dec(now)
            value, growth = self._bound(at)
            slope = sum((rate for _start, rate in growth), Decimal(0))
            exact = self._exact_deadline(at, (value, growth))
        deadline = None if exact is None else now if exact <= at else _floor_float(exact)
        plan = _Plan(deadline, at, value, slope, self._replans, self._grown_value, self._grown_rate)
        self._last_plan = plan
        return plan

    def _upper(self, plan: _Plan) -> tuple[Decimal, Decimal]:
        """A bound of the exposure for a stop at any T from now on, as ``value + rate * T``,
        valid while no change since ``plan`` asked for a new plan: the plan's exposure growing
        at its fastest, plus what was added since (removals only lower it)."""
        value = plan.value - plan.slope * plan.at + (self._grown_value - plan.grown_value)
        return value, plan.slope + (self._grown_rate - plan.grown_rate)

    def _replan_at(self, plan: _Plan) -> float | None:
        """When the wait must plan again exactly: now, if a change asked for it; else the
        earlier of the plan's deadline and the first time the exposure could reach the limit,
        bounded from above by the plan's exposure growing at its fastest plus what was added
        since (removals only lower it)."""
        if plan.replans != self._replans:
            return self._clock()
        with decimal.localcontext(_CONTEXT):
            value, rate = self._upper(plan)
            room = self.limit - value
            if rate <= 0:
                reach = None if room >= 0 else self._clock()
            else:
                with decimal.localcontext() as ctx:
                    ctx.rounding = decimal.ROUND_FLOOR
                    reach = _floor_float(room / rate)
        if reach is None:
            return plan.deadline
        return reach if plan.deadline is None else min(plan.deadline, reach)

    def _all(self) -> list[_Agreement]:
        return [*self._agreements.values(), *self._reservations.values()]

    def _new(self, terms: Terms, started_at: float) -> _Agreement:
        with decimal.localcontext(_CONTEXT):
            base = terms.max_cost(Decimal(0), self._tolerance)
            window = None
            if terms.debit_note_interval is not None:
                window = terms.debit_note_interval + self._grace
            return _Agreement(terms, started_at, base, self._rate(terms), window)

    def _bill(self, agreement: _Agreement, end: Decimal) -> Decimal:
        """The largest invoice billing would accept if the agreement ends at ``end``: the worst
        case over its lifetime, or (once a debit note was accepted) what was accepted plus the
        worst case since that note, whichever is smaller; never below what was accepted."""
        a = agreement
        lifetime = a.base + a.rate * (max(end - _dec(a.started_at), Decimal(0)) + self._grace)
        if a.noted_at is not None:
            since = max(end - _dec(a.noted_at), Decimal(0)) + self._grace
            variable = a.base - a.terms.pricing.fixed
            lifetime = min(lifetime, a.accepted + variable + a.rate * since)
        return max(a.accepted, lifetime)

    def _checkpoint(self, agreement: _Agreement) -> Decimal | None:
        """When the agreement's next debit note must have come (ledger clock)."""
        if agreement.window is None:
            return None
        anchor = agreement.noted_at if agreement.noted_at is not None else agreement.started_at
        return _dec(anchor) + agreement.window

    def _cost(self, agreement: _Agreement, stop: Decimal) -> Decimal:
        """What the agreement may cost in all if told to stop at ``stop``."""
        if agreement.settled is not None:
            return agreement.settled
        if agreement.closed_at is not None:
            return self._bill(agreement, _dec(agreement.closed_at))
        checkpoint = self._checkpoint(agreement)
        end = stop if checkpoint is None else max(stop, checkpoint)
        return self._bill(agreement, end + _dec(self._shutdown))

    def _projection(self, at: Decimal) -> Decimal:
        """The agreements' cost if the open ones ran until ``at`` (no allowance, no window)."""
        total = Decimal(0)
        for a in self._agreements.values():
            if a.settled is not None:
                total += a.settled
            else:
                end = at if a.closed_at is None else _dec(a.closed_at)
                total += self._bill(a, end)
        return total

    def _stop_cost(self, stop: Decimal, agreements: Iterable[_Agreement]) -> Decimal:
        """The exposure: worst total if the open agreements are told to stop at ``stop``."""
        return sum((self._cost(a, stop) for a in agreements), Decimal(0))

    def _rate(self, terms: Terms) -> Decimal:
        """The worst cost per second of one activity, tolerance included."""
        return terms.max_rate(self._tolerance)

    def _deadline(self, now: float) -> float | None:
        """The latest time (not before ``now`` unless already too late, then ``now``) at which
        the open agreements may be told to stop; ``None`` if they may run forever."""
        with decimal.localcontext(_CONTEXT):
            exact = self._exact_deadline(_dec(now))
            if exact is None:
                return None
            return now if exact <= _dec(now) else _floor_float(exact)

    def _bound(self, now: Decimal) -> tuple[Decimal, list[tuple[Decimal, Decimal]]]:
        """The exposure at ``now`` and, per open agreement that accrues, ``(from, rate)``: a
        piecewise-linear bound of the exposure for a stop at ``T >= now`` is the value plus
        ``Σ rate * max(T - from, 0)``. Up to its checkpoint an open agreement's exposure does
        not grow; after it, by at most its rate (exactly, but for the clamps of
        :meth:`_bill`)."""
        value = Decimal(0)
        growth: list[tuple[Decimal, Decimal]] = []
        for a in self._all():
            cost = self._cost(a, now)
            value += cost
            if a.is_open and a.rate > 0:
                checkpoint = self._checkpoint(a)
                start = now if checkpoint is None else max(now, checkpoint)
                # What was accepted is a floor: growth starts once the worst case passes it.
                end = start + _dec(self._shutdown)
                line = a.base + a.rate * (end - _dec(a.started_at) + self._grace)
                if a.noted_at is not None:
                    variable = a.base - a.terms.pricing.fixed
                    since = a.accepted + variable + a.rate * (end - _dec(a.noted_at) + self._grace)
                    line = min(line, since)
                if line < cost:
                    start += (cost - line) / a.rate
                growth.append((start, a.rate))
        return value, growth

    def _exact_deadline(
        self, now: Decimal, bound: tuple[Decimal, list[tuple[Decimal, Decimal]]] | None = None
    ) -> Decimal | None:
        limit = self.limit
        value, growth = bound if bound is not None else self._bound(now)
        if value > limit:
            return now
        if not growth:
            return None
        growth.sort()
        # Walk the points where each agreement starts to grow.
        tau = now
        slope = Decimal(0)
        for start, rate in growth:
            if start > tau:
                step = value + slope * (start - tau)
                if step > limit:
                    break
                value, tau = step, start
            slope += rate
        with decimal.localcontext() as ctx:
            ctx.rounding = decimal.ROUND_FLOOR
            deadline = tau + (limit - value) / slope
        # Guard against rounding: the exposure at the deadline must fit.
        agreements = self._all()
        step_size = max(abs(deadline), Decimal(1)) * Decimal("1e-40")
        while deadline > now and self._stop_cost(deadline, agreements) > limit:
            deadline -= step_size
            step_size *= 2
        return max(deadline, now)

    def _fire(self, now: float) -> None:
        with decimal.localcontext(_CONTEXT):
            agreements = self._all()
            projected = self._stop_cost(_dec(now), agreements)
        self._reason = ExhaustedReason(
            at=now,
            projected=projected,
            spent=self._spent,
            budget=self._budget,
            margin=self._margin,
            shutdown=self._shutdown,
            agreements=tuple(
                a.terms.agreement_id
                for a in self._agreements.values()
                if a.is_open and isinstance(a.terms, AgreementTerms)
            ),
        )
        self._exhausted.set()
        self._notify()
