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

The projection for a stop at time ``T`` (ledger clock) is::

    Σ settled invoices
    + Σ closed agreements   max(accepted_i, W_i(closed_at_i - started_at_i))
    + Σ open agreements     max(accepted_i, W_i(T + shutdown - started_at_i))

where ``W_i(elapsed) = terms_i.max_cost(max(elapsed, 0) + grace, tolerance)`` is the largest
invoice billing would accept for an agreement that ran ``elapsed`` seconds (one activity). It is
piecewise linear and non-decreasing in ``T``, so the latest safe stop time is found exactly.

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

import attrs
import trio

from golem_trio.terms import AgreementTerms, Tolerance

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
    terms: AgreementTerms
    started_at: float
    #: The worst case is linear in the billed time: ``base + rate * seconds`` (tolerance in),
    #: kept here so projections over many agreements stay cheap.
    base: Decimal
    rate: Decimal
    closed_at: float | None = None
    accepted: Decimal = Decimal(0)
    settled: Decimal | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and self.settled is None


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
        self._spent = Decimal(0)
        self._changed = trio.Event()
        self._exhausted = trio.Event()
        self._reason: ExhaustedReason | None = None

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
        return self._shutdown

    @property
    def spent(self) -> Decimal:
        """Everything accepted so far (debit notes, and invoices in their place once settled)."""
        return self._spent

    @property
    def agreements(self) -> Mapping[str, AgreementSpend]:
        """A snapshot of every agreement the ledger knows."""
        return {
            key: AgreementSpend(a.terms, a.started_at, a.closed_at, a.accepted, a.settled)
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
            stopping = self._stop_cost(_dec(self._clock()), self._agreements.values())
        if budget - margin < stopping:
            raise ValueError(
                f"the budget must cover stopping every agreement now ({stopping} + margin)"
            )
        return margin

    # --- facts from the caller ---

    def open_agreement(self, terms: AgreementTerms, started_at: float | None = None) -> None:
        """Count an approved agreement from ``started_at`` (default: now).

        Call :meth:`can_afford` before signing: the agreement is counted even when it does not
        fit (it is signed), and then the exhaustion signal fires at once.
        """
        if terms.agreement_id in self._agreements:
            raise ValueError(f"agreement {terms.agreement_id!r} is already in the ledger")
        start = self._clock() if started_at is None else started_at
        self._agreements[terms.agreement_id] = self._new(terms, start)
        self._notify()

    def closed(self, agreement_id: str, at: float | None = None) -> None:
        """The agreement ended at ``at`` (default: now); it accrues no more. The first end
        recorded counts."""
        agreement = self._get(agreement_id)
        if agreement.closed_at is None:
            agreement.closed_at = self._clock() if at is None else at
            self._notify()

    def check_accept(self, amount: Decimal) -> bool:
        """Whether ``amount`` more may be accepted without spending past the budget."""
        with decimal.localcontext(_CONTEXT):
            return amount >= 0 and self._spent + amount <= self._budget

    def accepted(self, agreement_id: str, amount: Decimal) -> None:
        """``amount`` more was accepted for the agreement (a debit note's increase over what was
        accepted before). Raises :class:`BudgetExceeded`, recording nothing, if it would spend
        past the budget; accept the document only after this returns."""
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
        new = self._new(terms, now)
        with decimal.localcontext(_CONTEXT):
            stop = _dec(now) + _dec(duration)
            return self._stop_cost(stop, [*self._agreements.values(), new]) <= self.limit

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
        while self._reason is None:
            changed = self._changed
            now = self._clock()
            deadline = self._deadline(now)
            if deadline is not None and deadline <= now:
                self._fire(now)
                break
            if deadline is None:
                await changed.wait()
                continue
            if self._clock is _default_clock:
                wake = deadline
            else:
                wake = trio.current_time() + (deadline - now)
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

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _new(self, terms: AgreementTerms, started_at: float) -> _Agreement:
        with decimal.localcontext(_CONTEXT):
            base = terms.max_cost(Decimal(0), self._tolerance)
            return _Agreement(terms, started_at, base, self._rate(terms))

    def _worst(self, agreement: _Agreement, end: Decimal) -> Decimal:
        """The largest invoice billing would accept if the agreement ends at ``end``
        (``AgreementTerms.max_cost`` of the billed time, grace included: linear in it)."""
        elapsed = max(end - _dec(agreement.started_at), Decimal(0))
        return agreement.base + agreement.rate * (elapsed + self._grace)

    def _cost(self, agreement: _Agreement, end_if_open: Decimal) -> Decimal:
        if agreement.settled is not None:
            return agreement.settled
        end = end_if_open if agreement.closed_at is None else _dec(agreement.closed_at)
        return max(agreement.accepted, self._worst(agreement, end))

    def _projection(self, at: Decimal) -> Decimal:
        return sum((self._cost(a, at) for a in self._agreements.values()), Decimal(0))

    def _stop_cost(self, stop: Decimal, agreements: Iterable[_Agreement]) -> Decimal:
        """Worst total if the open agreements are told to stop at ``stop``."""
        end = stop + _dec(self._shutdown)
        return sum((self._cost(a, end) for a in agreements), Decimal(0))

    def _rate(self, terms: AgreementTerms) -> Decimal:
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

    def _exact_deadline(self, now: Decimal) -> Decimal | None:
        agreements = list(self._agreements.values())
        limit = self.limit
        if self._stop_cost(now, agreements) > limit:
            return now
        # Each open agreement costs max(floor, base + rate * tau) when stopped at now + tau,
        # with floor = max(accepted, W(0)): piecewise linear, so walk the breakpoints.
        end = now + _dec(self._shutdown)
        value = Decimal(0)
        slope = Decimal(0)
        pending: list[tuple[Decimal, Decimal]] = []
        for a in agreements:
            value += self._cost(a, end)
            if not a.is_open:
                continue
            rate = a.rate
            if rate == 0:
                continue
            at_start = self._worst(a, _dec(a.started_at))
            floor = max(a.accepted, at_start)
            linear = at_start + rate * (end - _dec(a.started_at))
            if linear >= floor:
                slope += rate
            else:
                pending.append(((floor - linear) / rate, rate))
        pending.sort()
        tau = Decimal(0)
        for point, rate in pending:
            if value + slope * (point - tau) > limit:
                break
            value += slope * (point - tau)
            tau = point
            slope += rate
        if slope == 0:
            return None
        with decimal.localcontext() as ctx:
            ctx.rounding = decimal.ROUND_FLOOR
            tau += (limit - value) / slope
        deadline = now + tau
        # Guard against rounding: the projection at the deadline must fit.
        step = max(abs(deadline), Decimal(1)) * Decimal("1e-40")
        while deadline > now and self._stop_cost(deadline, agreements) > limit:
            deadline -= step
            step *= 2
        return max(deadline, now)

    def _fire(self, now: float) -> None:
        with decimal.localcontext(_CONTEXT):
            agreements = list(self._agreements.values())
            projected = self._stop_cost(_dec(now), agreements)
        self._reason = ExhaustedReason(
            at=now,
            projected=projected,
            spent=self._spent,
            budget=self._budget,
            margin=self._margin,
            shutdown=self._shutdown,
            agreements=tuple(a.terms.agreement_id for a in agreements if a.is_open),
        )
        self._exhausted.set()
        self._notify()
