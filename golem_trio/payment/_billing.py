"""Billing rules: whether a debit note or an invoice may be paid.

This module is the single place where the SDK decides to pay. It is pure, synchronous and
deterministic: no I/O and no clock (the caller passes ``now``). The services layer feeds it the
documents it receives and acts on the :data:`Decision`:

- :class:`Accept` - accept the document for exactly ``amount`` (the daemon compares exactly);
- :class:`Reject` - do not pay; for an invoice, reject it with ``reason``; for a debit note that
  is not ours (or arrives after the invoice) there is nothing to terminate, only report it;
- :class:`Terminate` - a debit note of a live agreement is wrong. The daemon cannot reject debit
  notes (``501``), so the agreement is terminated with ``{"golem.requestor.code": code}``.

Requestor codes used with :class:`Terminate` (``golem.requestor.code``, GAP-3 where it has one):

- ``TooManyDebitNotes`` (GAP-3): notes arrive faster than the negotiated interval;
- ``TooManyPayableDebitNotes`` (GAP-3): a payable note when no mid-agreement payments were
  agreed, payable notes faster than the payment timeout, or a due date earlier than agreed;
- ``InvalidDebitNote``: the amount decreased, the usage is out of its time bounds or does not
  match the amount, or the amount exceeds the most an honest provider could charge.

Every decision is kept as a :class:`BillingRecord` with the figures behind it. A document seen
again (same id, issuer and agreement) gets the same decision. Time bounds run from the
agreement's approval, or from :meth:`AgreementBilling.activity_started`, up to the earliest of
now, the activity's or agreement's end and the agreement's ``validTo``.

Tolerances (see :class:`~golem_trio.terms.Tolerance`): costs and usage bounds get 1 % relative
slack, elapsed time gets 5 s of grace for clock skew between us and the provider, amounts get
1e-9 GLM of absolute slack for rounding, and notes may come at 80 % of the negotiated interval
(timers jitter).

The agreement's terms (:class:`~golem_trio.terms.AgreementTerms`: prices, usage vector, payment
terms, the most an honest provider can charge) are read by :mod:`golem_trio.terms`, with the
same parser the market chooses offers with; this module only decides.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import attrs

from golem_trio.terms import AgreementTerms, Tolerance
from golem_trio.yagna import DebitNote, Invoice, RejectionReason

__all__ = [
    "INVALID_DEBIT_NOTE",
    "TOO_MANY_DEBIT_NOTES",
    "TOO_MANY_PAYABLE_DEBIT_NOTES",
    "Accept",
    "AgreementBilling",
    "BillingLedger",
    "BillingRecord",
    "Decision",
    "Reject",
    "Terminate",
]

TOO_MANY_DEBIT_NOTES = "TooManyDebitNotes"
TOO_MANY_PAYABLE_DEBIT_NOTES = "TooManyPayableDebitNotes"
INVALID_DEBIT_NOTE = "InvalidDebitNote"


# --- decisions ---------------------------------------------------------------------------------


Figures: TypeAlias = dict[str, Any]


@attrs.frozen
class Accept:
    """Accept the document for exactly ``amount`` (its own amount)."""

    amount: Decimal
    figures: Figures = attrs.field(factory=dict)


@attrs.frozen
class Reject:
    """Do not pay. ``amount_accepted`` is what stays accepted (for the ``Rejection`` body)."""

    reason: RejectionReason
    message: str
    figures: Figures = attrs.field(factory=dict)
    amount_accepted: Decimal = Decimal(0)


@attrs.frozen
class Terminate:
    """Do not pay this debit note and terminate the agreement with
    ``{"message": message, "golem.requestor.code": code}``."""

    reason: RejectionReason
    code: str
    message: str
    figures: Figures = attrs.field(factory=dict)


Decision: TypeAlias = Accept | Reject | Terminate


@attrs.frozen
class BillingRecord:
    """One decision and what it was about, for events and audits."""

    kind: Literal["debit_note", "invoice"]
    document_id: str
    agreement_id: str
    activity_id: str | None
    at: dt.datetime
    amount: Decimal
    decision: Decision


def _seconds_between(later: dt.datetime, earlier: dt.datetime) -> Decimal:
    return Decimal(str((later - earlier).total_seconds()))


@attrs.define
class _Activity:
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    accepted: Decimal = Decimal(0)
    last_note_at: dt.datetime | None = None
    #: Whether the caller announced the start (then the first note is paced from it too).
    announced: bool = False
    #: The daemon's last reading of the activity's usage counters, and when it was taken.
    usage: tuple[Decimal, ...] | None = None
    usage_at: dt.datetime | None = None


@attrs.define
class AgreementBilling:
    """The billing state of one agreement: accepted documents and the decisions taken."""

    terms: AgreementTerms
    tolerance: Tolerance = attrs.field(factory=Tolerance)
    ended_at: dt.datetime | None = None
    #: Refuse notes for activities not announced with :meth:`activity_started`. Otherwise a
    #: provider could bill invented activities, each up to one activity's maximum cost.
    strict_activities: bool = False
    _activities: dict[str, _Activity] = attrs.field(factory=dict, init=False)
    _decided: dict[str, Decision] = attrs.field(factory=dict, init=False)
    _records: list[BillingRecord] = attrs.field(factory=list, init=False)
    _last_payable_at: dt.datetime | None = attrs.field(default=None, init=False)
    _invoice_id: str | None = attrs.field(default=None, init=False)
    _invoice_accepted: Decimal | None = attrs.field(default=None, init=False)

    # --- facts from the caller ---

    def activity_started(self, activity_id: str, at: dt.datetime) -> None:
        """Time bounds of the activity's usage start at ``at`` (default: the approval)."""
        activity = self._activities.setdefault(activity_id, _Activity(at))
        activity.started_at = at
        activity.announced = True

    def activity_usage(
        self, activity_id: str, usage: Sequence[float | Decimal], at: dt.datetime
    ) -> bool:
        """The daemon read the activity's usage counters ``usage`` (in the order of the usage
        vector) at ``at``: its invoice share is then bounded by their price plus the worst case
        of the time since. A reading that does not fit the usage vector (its length, or a
        counter negative or not finite) is ignored; returns whether it was kept."""
        counters = self.terms.pricing.counters
        if len(usage) != len(counters):
            return False
        values: list[Decimal] = []
        for value in usage:
            number = value if isinstance(value, Decimal) else Decimal(str(value))
            if not number.is_finite() or number < 0:
                return False
            values.append(number)
        activity = self._activity(activity_id)
        activity.usage = tuple(values)
        activity.usage_at = at
        return True

    def activity_ended(self, activity_id: str, at: dt.datetime) -> None:
        activity = self._activities.setdefault(activity_id, _Activity(self.terms.approved_at))
        activity.ended_at = at

    def agreement_ended(self, at: dt.datetime) -> None:
        self.ended_at = at

    # --- answers ---

    @property
    def unread_activities(self) -> tuple[str, ...]:
        """The activities known to this agreement whose usage no reading has bounded yet."""
        return tuple(a for a, activity in self._activities.items() if activity.usage is None)

    @property
    def records(self) -> tuple[BillingRecord, ...]:
        return tuple(self._records)

    @property
    def accepted_total(self) -> Decimal:
        """What this agreement is committed to pay: the accepted invoice, else the sum of each
        activity's last accepted (cumulative) debit note."""
        if self._invoice_accepted is not None:
            return self._invoice_accepted
        return sum((a.accepted for a in self._activities.values()), Decimal(0))

    @property
    def invoice_received(self) -> bool:
        return self._invoice_id is not None

    def _elapsed(self, start: dt.datetime, now: dt.datetime, end: dt.datetime | None) -> Decimal:
        stop = now
        for limit in (end, self.ended_at, self.terms.valid_to):
            if limit is not None and limit < stop:
                stop = limit
        elapsed = _seconds_between(stop, start) + Decimal(str(self.tolerance.grace.total_seconds()))
        return max(elapsed, Decimal(0))

    def _identity(
        self, issuer: str, recipient: str, agreement_id: str
    ) -> tuple[str, Figures] | None:
        terms = self.terms
        figures: Figures = {
            "issuer_id": issuer,
            "recipient_id": recipient,
            "agreement_id": agreement_id,
            "expected_issuer_id": terms.provider_id,
            "expected_recipient_id": terms.requestor_id,
            "expected_agreement_id": terms.agreement_id,
        }
        if agreement_id != terms.agreement_id:
            return "the document is for another agreement", figures
        if issuer != terms.provider_id:
            return "the document was not issued by the agreement's provider", figures
        if recipient != terms.requestor_id:
            return "the document is not addressed to us", figures
        return None

    def _record(
        self,
        kind: Literal["debit_note", "invoice"],
        key: str,
        document: tuple[str, str, str | None],
        now: dt.datetime,
        amount: Decimal,
        decision: Decision,
    ) -> Decision:
        document_id, agreement_id, activity_id = document
        self._decided[key] = decision
        self._records.append(
            BillingRecord(kind, document_id, agreement_id, activity_id, now, amount, decision)
        )
        return decision

    def check_debit_note(self, note: DebitNote, now: dt.datetime) -> Decision:
        """Decide on one debit note; accepting it updates the ledger."""
        # Keyed by issuer and agreement too, so a forged copy cannot decide for the real one.
        key = f"debit_note:{note.debit_note_id}:{note.issuer_id}:{note.agreement_id}"
        previous = self._decided.get(key)
        if previous is not None:
            return previous
        decision = self._debit_note(note, now)
        if isinstance(decision, Accept):
            activity = self._activity(note.activity_id)
            activity.accepted = note.total_amount_due
            activity.last_note_at = note.timestamp
            if note.payment_due_date is not None:
                self._last_payable_at = note.timestamp
        return self._record(
            "debit_note",
            key,
            (note.debit_note_id, note.agreement_id, note.activity_id),
            now,
            note.total_amount_due,
            decision,
        )

    def _activity(self, activity_id: str) -> _Activity:
        return self._activities.setdefault(activity_id, _Activity(self.terms.approved_at))

    def _debit_note(self, note: DebitNote, now: dt.datetime) -> Decision:
        terms, tol = self.terms, self.tolerance
        amount = note.total_amount_due
        wrong = self._identity(note.issuer_id, note.recipient_id, note.agreement_id)
        if wrong is not None:
            return Reject(RejectionReason.UNSOLICITED_SERVICE, wrong[0], wrong[1])
        known = self._activities.get(note.activity_id)
        accepted = known.accepted if known is not None else Decimal(0)
        if self._invoice_id is not None:
            return Reject(
                RejectionReason.UNSOLICITED_SERVICE,
                "a debit note after the agreement's invoice",
                {"invoice_id": self._invoice_id},
                accepted,
            )
        if self.strict_activities and known is None:
            return Terminate(
                RejectionReason.UNSOLICITED_SERVICE,
                INVALID_DEBIT_NOTE,
                f"a debit note for activity {note.activity_id!r}, which we did not start",
                {"amount": amount, "activity_id": note.activity_id},
            )
        activity = known if known is not None else _Activity(terms.approved_at)

        def terminate(reason: RejectionReason, code: str, message: str, **figures: Any) -> Decision:
            return Terminate(reason, code, message, {"amount": amount, **figures})

        # Pace: notes of one activity at least interval * ratio apart (provider timestamps),
        # and the first one no sooner after an announced start (grace for clock skew there).
        if terms.debit_note_interval is not None:
            minimum = terms.debit_note_interval * tol.interval_ratio
            if activity.last_note_at is not None:
                gap = _seconds_between(note.timestamp, activity.last_note_at)
                if gap < minimum:
                    return terminate(
                        RejectionReason.BAD_SERVICE,
                        TOO_MANY_DEBIT_NOTES,
                        f"debit notes {gap} s apart, the agreed interval is "
                        f"{terms.debit_note_interval} s",
                        gap_sec=gap,
                        min_gap_sec=minimum,
                    )
            elif activity.announced:
                grace = Decimal(str(tol.grace.total_seconds()))
                gap = _seconds_between(note.timestamp, activity.started_at)
                if gap + grace < minimum:
                    return terminate(
                        RejectionReason.BAD_SERVICE,
                        TOO_MANY_DEBIT_NOTES,
                        f"the first debit note came {gap} s after the activity started, the "
                        f"agreed interval is {terms.debit_note_interval} s",
                        gap_sec=gap,
                        min_gap_sec=minimum,
                    )
        # Payable notes only with mid-agreement payments, no faster than the payment timeout.
        if note.payment_due_date is not None:
            if terms.payment_timeout is None:
                return terminate(
                    RejectionReason.BAD_SERVICE,
                    TOO_MANY_PAYABLE_DEBIT_NOTES,
                    "a payable debit note, but no mid-agreement payments were agreed",
                    payment_due_date=note.payment_due_date,
                )
            minimum = terms.payment_timeout * tol.interval_ratio
            if self._last_payable_at is not None:
                gap = _seconds_between(note.timestamp, self._last_payable_at)
                if gap < minimum:
                    return terminate(
                        RejectionReason.BAD_SERVICE,
                        TOO_MANY_PAYABLE_DEBIT_NOTES,
                        f"payable debit notes {gap} s apart, the agreed payment timeout is "
                        f"{terms.payment_timeout} s",
                        gap_sec=gap,
                        min_gap_sec=minimum,
                    )
            due_in = _seconds_between(note.payment_due_date, note.timestamp)
            if due_in < minimum:
                return terminate(
                    RejectionReason.BAD_SERVICE,
                    TOO_MANY_PAYABLE_DEBIT_NOTES,
                    f"payment due {due_in} s after issue, the agreed payment timeout is "
                    f"{terms.payment_timeout} s",
                    due_in_sec=due_in,
                    min_due_in_sec=minimum,
                )
        # Amounts are cumulative per activity.
        if amount < accepted:
            return terminate(
                RejectionReason.BAD_SERVICE,
                INVALID_DEBIT_NOTE,
                f"the amount fell from {accepted} to {amount}",
                previously_accepted=accepted,
            )
        elapsed = self._elapsed(activity.started_at, now, activity.ended_at)
        if note.usage_counter_vector is not None:
            problem = self._check_usage(note.usage_counter_vector, amount, elapsed)
            if problem is not None:
                return terminate(
                    RejectionReason.INCORRECT_AMOUNT, INVALID_DEBIT_NOTE, problem[0], **problem[1]
                )
        maximum = terms.max_cost(elapsed, tol)
        if amount > maximum:
            return terminate(
                RejectionReason.INCORRECT_AMOUNT,
                INVALID_DEBIT_NOTE,
                f"the amount {amount} exceeds the most {elapsed} s can cost ({maximum})",
                elapsed_sec=elapsed,
                max_amount=maximum,
            )
        return Accept(amount, {"amount": amount, "elapsed_sec": elapsed, "max_amount": maximum})

    def _growth(self, since: dt.datetime, now: dt.datetime, activity: _Activity) -> Decimal:
        """The most an activity can honestly add from ``since`` to its end (tolerance and grace
        included, the fixed price not)."""
        grace = Decimal(str(self.tolerance.grace.total_seconds()))
        after = self._elapsed(since, now, activity.ended_at) - grace
        growth = self.terms.max_cost(max(after, Decimal(0)) + grace, self.tolerance)
        return growth - self.terms.pricing.fixed

    def _usage_price(self, usage: tuple[Decimal, ...]) -> Decimal:
        """The price of ``usage`` with the relative tolerance on its variable part."""
        pricing = self.terms.pricing
        price = pricing.cost(usage)
        return price + (price - pricing.fixed) * self.tolerance.relative

    def _check_usage(
        self, vector: list[float], amount: Decimal, elapsed: Decimal
    ) -> tuple[str, Figures] | None:
        terms, tol = self.terms, self.tolerance
        counters = terms.pricing.counters
        figures: Figures = {"usage": list(vector), "elapsed_sec": elapsed}
        if len(vector) != len(counters):
            return f"{len(vector)} usage counters, the agreement has {len(counters)}", figures
        if not all(math.isfinite(v) and v >= 0 for v in vector):
            return "a usage counter is negative or not finite", figures
        usage = tuple(Decimal(str(v)) for v in vector)
        for counter, value in zip(counters, usage, strict=True):
            bound = terms.max_usage(counter, elapsed)
            if bound is not None and value > bound * (1 + tol.relative):
                figures |= {"counter": counter, "max_usage": bound}
                return f"{counter} = {value} exceeds its bound {bound} after {elapsed} s", figures
        price = terms.pricing.cost(usage)
        slack = (price - terms.pricing.fixed) * tol.relative + tol.absolute
        figures["usage_price"] = price
        if abs(amount - price) > slack:
            return f"the amount {amount} does not match the usage's price {price}", figures
        return None

    def check_invoice(self, invoice: Invoice, now: dt.datetime) -> Decision:
        """Decide on the agreement's invoice; accepting it closes the agreement's billing."""
        key = f"invoice:{invoice.invoice_id}:{invoice.issuer_id}:{invoice.agreement_id}"
        previous = self._decided.get(key)
        if previous is not None:
            return previous
        decision = self._invoice(invoice, now)
        if isinstance(decision, Accept):
            self._invoice_accepted = invoice.amount
        document = (invoice.invoice_id, invoice.agreement_id, None)
        return self._record("invoice", key, document, now, invoice.amount, decision)

    def _invoice(self, invoice: Invoice, now: dt.datetime) -> Decision:
        amount = invoice.amount
        accepted = self.accepted_total
        wrong = self._identity(invoice.issuer_id, invoice.recipient_id, invoice.agreement_id)
        if wrong is not None:
            return Reject(RejectionReason.UNSOLICITED_SERVICE, wrong[0], wrong[1])
        if self._invoice_id is not None:
            return Reject(
                RejectionReason.UNSOLICITED_SERVICE,
                "the agreement already has an invoice",
                {"invoice_id": self._invoice_id, "amount": amount},
                accepted,
            )
        self._invoice_id = invoice.invoice_id
        figures: Figures = {"amount": amount, "accepted_before": accepted}
        if amount < accepted:
            return Reject(
                RejectionReason.INCORRECT_AMOUNT,
                f"the invoice {amount} is below the {accepted} already accepted",
                figures,
                accepted,
            )
        # The most honest cost: each known activity (started, or seen in a debit note) over its
        # own time bounds; an agreement with no known activity counts one from the approval.
        starts = [(a.started_at, a.ended_at) for a in self._activities.values()]
        if not starts:
            starts = [(self.terms.approved_at, None)]
        maximum = sum(
            (self.terms.max_cost(self._elapsed(s, now, e), self.tolerance) for s, e in starts),
            Decimal(0),
        )
        # Tighter where debit notes were accepted: each activity's last accepted amount plus
        # the most it can have accrued between that note and its end. Tighter still where the
        # daemon read the activity's usage: the price of that usage plus the most the time
        # after the reading can add.
        grace = Decimal(str(self.tolerance.grace.total_seconds()))
        since_notes = Decimal(0)
        by_usage = Decimal(0)
        for activity in self._activities.values():
            if activity.last_note_at is None:
                bound = self.terms.max_cost(
                    self._elapsed(activity.started_at, now, activity.ended_at), self.tolerance
                )
            else:
                bound = activity.accepted + self._growth(activity.last_note_at, now, activity)
            since_notes += bound
            if activity.usage is not None and activity.usage_at is not None:
                # The reading and the activity's end are on the daemon's clock: no grace.
                read = self._usage_price(activity.usage)
                after = self._elapsed(activity.usage_at, now, activity.ended_at) - grace
                growth = self.terms.max_cost(max(after, Decimal(0)), self.tolerance)
                bound = min(bound, read + growth - self.terms.pricing.fixed)
            by_usage += bound
        if self._activities:
            maximum = min(maximum, since_notes, by_usage)
        figures |= {"max_amount": maximum, "activities": len(starts)}
        if amount > maximum:
            return Reject(
                RejectionReason.INCORRECT_AMOUNT,
                f"the invoice {amount} exceeds the most the agreement can cost ({maximum})",
                figures,
                accepted,
            )
        return Accept(amount, figures)


@attrs.define
class BillingLedger:
    """Billing state of all our agreements; routes documents to their :class:`AgreementBilling`.

    A document for an agreement the ledger does not know is rejected as unsolicited.
    """

    tolerance: Tolerance = attrs.field(factory=Tolerance)
    strict_activities: bool = False
    _agreements: dict[str, AgreementBilling] = attrs.field(factory=dict, init=False)
    _records: list[BillingRecord] = attrs.field(factory=list, init=False)

    def add(self, terms: AgreementTerms) -> AgreementBilling:
        billing = self._agreements.get(terms.agreement_id)
        if billing is None:
            billing = AgreementBilling(
                terms, self.tolerance, strict_activities=self.strict_activities
            )
            self._agreements[terms.agreement_id] = billing
        return billing

    def get(self, agreement_id: str) -> AgreementBilling | None:
        return self._agreements.get(agreement_id)

    @property
    def agreements(self) -> Mapping[str, AgreementBilling]:
        return dict(self._agreements)

    @property
    def records(self) -> tuple[BillingRecord, ...]:
        """Every decision in order, including those on documents of unknown agreements."""
        return tuple(self._records)

    @property
    def accepted_total(self) -> Decimal:
        return sum((b.accepted_total for b in self._agreements.values()), Decimal(0))

    def _unknown(
        self,
        kind: Literal["debit_note", "invoice"],
        document_id: str,
        agreement_id: str,
        activity_id: str | None,
        amount: Decimal,
        now: dt.datetime,
    ) -> Decision:
        decision = Reject(
            RejectionReason.UNSOLICITED_SERVICE,
            "the document is for an agreement we do not have",
            {"agreement_id": agreement_id, "amount": amount},
        )
        self._records.append(
            BillingRecord(kind, document_id, agreement_id, activity_id, now, amount, decision)
        )
        return decision

    def check_debit_note(self, note: DebitNote, now: dt.datetime) -> Decision:
        billing = self._agreements.get(note.agreement_id)
        if billing is None:
            return self._unknown(
                "debit_note",
                note.debit_note_id,
                note.agreement_id,
                note.activity_id,
                note.total_amount_due,
                now,
            )
        before = len(billing.records)
        decision = billing.check_debit_note(note, now)
        self._records.extend(billing.records[before:])
        return decision

    def check_invoice(self, invoice: Invoice, now: dt.datetime) -> Decision:
        billing = self._agreements.get(invoice.agreement_id)
        if billing is None:
            return self._unknown(
                "invoice", invoice.invoice_id, invoice.agreement_id, None, invoice.amount, now
            )
        before = len(billing.records)
        decision = billing.check_invoice(invoice, now)
        self._records.extend(billing.records[before:])
        return decision
