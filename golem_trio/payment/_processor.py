"""The payment processor: one allocation, debit notes and invoices paid (or refused) as they come.

:func:`open_payments` creates an allocation sized to the budget, polls the daemon's debit-note
and invoice events in two tasks, validates each document with the :class:`BillingLedger`, checks
the :class:`BudgetLedger` and then accepts the document for exactly its amount, rejects it with a
reason, or terminates its agreement with a GAP-3 ``golem.requestor.code``. Every decision is
emitted as an event. On exit it waits (bounded) for the invoices still due, pays the valid ones,
releases the allocation and leaves a :class:`PaymentReport`.

Every rule lives in :mod:`._billing`; announcing activities with
:meth:`PaymentProcessor.activity_started` makes them tighter (the first debit note is paced from
the start).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TypeAlias

import attrs
import trio

from golem_trio.terms import AgreementTerms, Tolerance
from golem_trio.yagna import (
    EVENT_WAIT,
    TRANSIENT_ERRORS,
    ActivityUsage,
    AllocationUpdate,
    DaemonTimeout,
    DebitNote,
    DocumentStatus,
    Invoice,
    NewAllocation,
    Reason,
    Rejection,
    RideOut,
    YagnaClient,
    YagnaError,
    is_transient,
)

from ._billing import Accept, BillingLedger, Decision, Reject, Terminate
from ._budget import BudgetExceeded, BudgetLedger

__all__ = [
    "AgreementTerminatedForBilling",
    "DebitNoteAccepted",
    "DebitNoteRefused",
    "InvoiceAccepted",
    "InvoiceRejected",
    "PaymentEvent",
    "PaymentProcessor",
    "PaymentReport",
    "Unpaid",
    "open_payments",
]

logger = logging.getLogger("golem_trio.payment")

#: The reason given for documents refused because the budget would be exceeded.
BUDGET_EXCEEDED = "BudgetExceeded"


# --- events ------------------------------------------------------------------------------------


@attrs.frozen
class DebitNoteAccepted:
    """The note was accepted for ``amount``; ``increase`` is what it added to the spend."""

    debit_note_id: str
    agreement_id: str
    activity_id: str | None
    amount: Decimal
    increase: Decimal


@attrs.frozen
class DebitNoteRefused:
    """The note was not paid. ``reason`` is the billing rule's code (``golem.requestor.code`` or
    a :class:`RejectionReason` value) or ``"BudgetExceeded"``; the daemon cannot reject debit
    notes, so nothing is sent for it (see :class:`AgreementTerminatedForBilling`)."""

    debit_note_id: str
    agreement_id: str
    activity_id: str | None
    amount: Decimal
    reason: str
    message: str


@attrs.frozen
class InvoiceAccepted:
    invoice_id: str
    agreement_id: str
    amount: Decimal


@attrs.frozen
class InvoiceRejected:
    """The invoice was not paid. ``sent`` tells whether the rejection reached the daemon
    (``False`` for a budget refusal, which leaves a valid invoice unpaid, or a failed call)."""

    invoice_id: str
    agreement_id: str
    amount: Decimal
    amount_accepted: Decimal
    reason: str
    message: str
    sent: bool


@attrs.frozen
class AgreementTerminatedForBilling:
    """The agreement was terminated because of a bad debit note."""

    agreement_id: str
    debit_note_id: str
    code: str
    message: str
    terminated: bool


PaymentEvent: TypeAlias = (
    DebitNoteAccepted
    | DebitNoteRefused
    | InvoiceAccepted
    | InvoiceRejected
    | AgreementTerminatedForBilling
)


@attrs.frozen
class Unpaid:
    """An agreement whose invoice was not paid at exit, and why."""

    agreement_id: str
    reason: str
    amount: Decimal | None = None


@attrs.frozen
class PaymentReport:
    """What the processor paid and what stays unpaid, available after exit."""

    allocation_id: str
    budget: Decimal
    spent: Decimal
    debit_notes_accepted: int
    debit_notes_refused: int
    invoices_accepted: dict[str, Decimal]
    invoices_rejected: int
    unpaid: tuple[Unpaid, ...]
    allocation_released: bool
    #: The application session the documents were read for (``None``: the whole feeds).
    app_session_id: str | None = None
    #: Documents of agreements another application made, left alone (seen only without a
    #: session: with one, the daemon does not report them).
    documents_ignored: int = 0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Seconds the processor waits for one usage reading of its own (see
#: :meth:`PaymentProcessor._read_usage`).
USAGE_READ_BOUND = 5.0
#: Invoice polls in flight while the processor waits for the last invoices at exit, begun
#: ``1 / DRAIN_POLLS`` s apart. A real daemon looks for new events when a poll begins and then
#: once a second until it ends, so one poll may sit on an invoice for up to a second;
#: staggered polls see it within about ``1 / DRAIN_POLLS`` s. (A daemon that answers a poll as
#: soon as an event comes, as LocalNet's emulator does, answers the first one.)
DRAIN_POLLS = 4
#: Invoices of one round read from the daemon at once (they are decided one by one).
INVOICES_AT_ONCE = 4


@attrs.frozen
class _Send:
    """A decision's call to the daemon, made by :meth:`PaymentProcessor._send`.

    ``call`` makes it; ``in_effect`` reads the document back and says whether the daemon holds
    it as decided already (asked before each retry, so a call whose reply was lost is not
    made twice); ``done`` and ``failed`` record the outcome."""

    operation: str
    call: Callable[[], Awaitable[object]]
    in_effect: Callable[[], Awaitable[bool]]
    done: Callable[[], None]
    failed: Callable[[str], None]


# --- the processor -----------------------------------------------------------------------------


class PaymentProcessor:
    """Handle to the running processor; get one from :func:`open_payments`.

    Its synchronous methods may be called from any task of the trio run.
    """

    def __init__(
        self,
        yagna: YagnaClient,
        *,
        allocation_id: str,
        requestor_id: str,
        budget: BudgetLedger,
        billing: BillingLedger,
        emit: Callable[[PaymentEvent], None] | None,
        now: Callable[[], dt.datetime],
        poll_wait: float,
        call_timeout: float,
        app_session_id: str | None = None,
        since: dt.datetime | None = None,
    ) -> None:
        self._yagna = yagna
        #: The application session the engine's agreements are confirmed under; the document
        #: feeds are read for that session only (``None``: the identity's whole feeds).
        self.app_session_id = app_session_id
        self.allocation_id = allocation_id
        self.requestor_id = requestor_id
        self.budget = budget
        self.billing = billing
        self._emit = emit
        self._now = now
        self._poll_wait = poll_wait
        self._call_timeout = call_timeout
        self._events: list[PaymentEvent] = []
        # Both feeds are read from ``since`` on (the allocation's creation): older documents
        # belong to earlier applications.
        self._notes_after: dt.datetime | None = since
        self._invoices_after: dt.datetime | None = since
        #: Documents of agreements this processor neither registered nor made: left alone.
        self.ignored = 0
        self._terminated: set[str] = set()
        self._invoiced: set[str] = set()
        self._paid: dict[str, Decimal] = {}
        self._unpaid: dict[str, Unpaid] = {}
        self._changed = trio.Event()
        self._seen: set[str] = set()
        #: Documents being decided now (a subset of ``_seen``).
        self._deciding: set[str] = set()
        #: activity id -> when we started it, until its first debit note.
        #: agreement id -> (timestamp, amount) of its last accepted debit note.
        self.report: PaymentReport | None = None
        self._hurried = False
        self._drain_scope: trio.CancelScope | None = None
        #: Where decisions' calls run (set by :func:`open_payments`), how many are under way,
        #: and their scopes (cancelled when the processor gives up on them at exit).
        self._senders: trio.Nursery | None = None
        self._sending = 0
        self._send_scopes: set[trio.CancelScope] = set()

    @property
    def events(self) -> tuple[PaymentEvent, ...]:
        """Every event emitted so far, in order."""
        return tuple(self._events)

    # --- facts from the caller ---

    async def add_agreement(
        self,
        agreement_id: str,
        *,
        reservation: object | None = None,
        terms: AgreementTerms | None = None,
    ) -> AgreementTerms:
        """Register an approved agreement's terms for billing and the budget (where it takes
        the place of the budget ``reservation`` made before signing it): ``terms`` when the
        caller made the agreement and knows both its sides, else as the daemon's copy of the
        agreement has them.

        Raises :class:`BillingTermsError` for unusable terms (nothing is registered then).
        Cancellation: a checkpoint; if cancelled, nothing is registered.
        """
        if terms is None:
            agreement = await self._yagna.market.get_agreement(agreement_id)
            terms = AgreementTerms.from_agreement(agreement, self.requestor_id)
        else:
            await trio.lowlevel.checkpoint()
            if terms.agreement_id != agreement_id or terms.requestor_id != self.requestor_id:
                raise ValueError(f"terms of another agreement or requestor: {terms!r}")
        if self.billing.get(agreement_id) is None:
            self.billing.add(terms)
            self.budget.open_agreement(terms, reservation=reservation)
        self._notify()
        return terms

    def activity_started(self, agreement_id: str, activity_id: str) -> None:
        """The activity was created now: its usage counts from now, and its first debit note
        must come no sooner than the negotiated interval allows."""
        billing = self.billing.get(agreement_id)
        if billing is None:
            raise KeyError(f"agreement {agreement_id!r} is not registered")
        at = self._now()
        billing.activity_started(activity_id, at)

    def activity_usage(self, agreement_id: str, activity_id: str, usage: ActivityUsage) -> bool:
        """The daemon's reading of the activity's usage counters (``GET …/usage``): the
        agreement's invoice is then accepted only up to the price of that usage plus the worst
        case of the time after the reading. Returns whether the reading was usable."""
        billing = self.billing.get(agreement_id)
        if billing is None or usage.current_usage is None:
            return False
        now = self._now()
        at = dt.datetime.fromtimestamp(usage.timestamp, dt.UTC) if usage.timestamp else now
        return billing.activity_usage(activity_id, usage.current_usage, min(at, now))

    def agreement_ended(self, agreement_id: str) -> None:
        """The agreement ended now: it bounds billed time and stops accruing in the budget."""
        billing = self.billing.get(agreement_id)
        if billing is None:
            return
        if billing.ended_at is None:
            billing.agreement_ended(self._now())
        self.budget.closed(agreement_id)

    async def set_budget(self, budget: Decimal) -> None:
        """Make the allocation and the budget ``budget``: a top-up or a cut while work runs.

        A top-up amends the allocation first (the daemon refuses one the account cannot fund:
        then nothing changes) and then lets the budget ledger re-plan; a cut goes to the ledger
        first, so spending is held to it even if the daemon then refuses to shrink the
        allocation. Raises what :meth:`BudgetLedger.set_budget` raises (checked before the
        daemon is asked) and the daemon's errors. Cancellation: if cancelled while the daemon
        is asked, a top-up may be in the allocation and not in the ledger (spending stays
        within the old budget).
        """
        update = AllocationUpdate(total_amount=budget)
        if budget >= self.budget.budget:
            self.budget.check_budget(budget)
            await self._yagna.payment.amend_allocation(self.allocation_id, update)
            self.budget.set_budget(budget)
        else:
            self.budget.set_budget(budget)
            await self._yagna.payment.amend_allocation(self.allocation_id, update)

    def hurry(self) -> None:
        """Stop waiting for outstanding invoices at exit (those not in yet stay unpaid and
        are reported); the allocation is still released."""
        self._hurried = True
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    # --- internals ---

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _record(self, event: PaymentEvent) -> None:
        self._events.append(event)
        if self._emit is not None:
            self._emit(event)

    def _all_invoiced(self) -> bool:
        return all(a in self._invoiced for a in self.billing.agreements)

    async def _poll_debit_notes(self) -> None:
        """Poll debit-note events until cancelled, riding out the daemon's faults
        (:data:`~golem_trio.yagna.TRANSIENT_ERRORS`: each is reported to the client's monitor
        and retried after a bounded, jittered pause); other errors end the task."""
        ride = self._yagna.monitor.ride_out("getDebitNoteEvents")
        while True:
            try:
                await self._debit_note_rounds(ride)
            except TRANSIENT_ERRORS as exc:
                await ride.failed(exc)

    async def _debit_note_rounds(self, ride: RideOut) -> None:
        while True:
            events = await self._yagna.payment.get_debit_note_events(
                wait=self._poll_wait,
                after_timestamp=self._notes_after,
                app_session_id=self.app_session_id,
            )
            ride.succeeded()
            for event in events:
                if "Received" in event.event_type and event.debit_note_id not in self._seen:
                    await self._handle("debit note", event.debit_note_id, self._debit_note)
                self._notes_after = event.event_date

    async def _poll_invoices(self) -> None:
        """Poll invoice events until cancelled, riding out the daemon's faults as
        :meth:`_poll_debit_notes` does."""
        await self._invoice_rounds(until=lambda: False)

    async def _invoice_rounds(self, *, until: Callable[[], bool]) -> None:
        """Invoice rounds until ``until()`` holds, riding out the daemon's faults."""
        await trio.lowlevel.checkpoint()
        ride = self._yagna.monitor.ride_out("getInvoiceEvents")
        while not until():
            try:
                await self._invoice_round()
            except TRANSIENT_ERRORS as exc:
                await ride.failed(exc)
            else:
                ride.succeeded()

    async def _invoice_round(self) -> None:
        events = await self._yagna.payment.get_invoice_events(
            wait=self._poll_wait,
            after_timestamp=self._invoices_after,
            app_session_id=self.app_session_id,
        )
        # Rounds may overlap (the final wait's polls). A round claims the invoices it will
        # decide, reads them side by side, then decides them one by one in the feed's order (an
        # agreement's first invoice is the one paid). It skips those another round claimed, and
        # its cursor stops before them: that round may fail on one, which is then read again.
        claimed = {
            e.invoice_id
            for e in events
            if "Received" in e.event_type
            and e.invoice_id not in self._seen
            and e.invoice_id not in self._deciding
        }
        self._deciding.update(claimed)
        try:
            read = await self._read_invoices(list(claimed))
            held = False
            for event in events:
                if "Received" in event.event_type:
                    if event.invoice_id in claimed and event.invoice_id not in self._seen:
                        await self._handle(
                            "invoice", event.invoice_id, functools.partial(self._invoice, read=read)
                        )
                    elif event.invoice_id in self._deciding and event.invoice_id not in claimed:
                        held = True
                if not held:
                    after = self._invoices_after
                    self._invoices_after = (
                        event.event_date if after is None else max(after, event.event_date)
                    )
        finally:
            # What this round did not get to decide is free for the next one.
            if claimed:
                self._deciding.difference_update(claimed)
                self._notify()
        if held:
            # Polling again at once would bring the same invoices back while the other round
            # still decides them: wait until a decision is made.
            await self._changed.wait()

    async def _read_invoices(self, invoice_ids: list[str]) -> dict[str, Invoice]:
        """The invoices the daemon could give, read side by side (at most
        :data:`INVOICES_AT_ONCE` at a time, each bounded by ``call_timeout``); one it could
        not give is read again, and its error handled, when the invoice is decided.

        Cancellation: shielded (each read is bounded), as the decisions that follow are: the
        invoices of a poll that came are decided even when the polling is cancelled."""
        read: dict[str, Invoice] = {}
        if len(invoice_ids) < 2:
            await trio.lowlevel.checkpoint()
            return read
        limiter = trio.CapacityLimiter(INVOICES_AT_ONCE)

        async def one(invoice_id: str) -> None:
            async with limiter:
                with trio.move_on_after(self._call_timeout):
                    await trio.lowlevel.checkpoint()
                    try:
                        read[invoice_id] = await self._yagna.payment.get_invoice(invoice_id)
                    except YagnaError as exc:
                        logger.debug("reading invoice %s ahead: %s", invoice_id, exc)

        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for invoice_id in invoice_ids:
                    nursery.start_soon(one, invoice_id)
        return read

    async def _handle(
        self, kind: str, document_id: str, handler: Callable[[str], Awaitable[None]]
    ) -> None:
        """Handle one received document, shielded and bounded by ``call_timeout``. When the
        daemon fails or the bound passes before the document was decided, it is read again on
        the next round: the error propagates (a :data:`TRANSIENT_ERRORS` one, which the
        round's loop rides out) and the feed's cursor stays before the document's event."""
        self._seen.add(document_id)
        self._deciding.add(document_id)
        try:
            with trio.move_on_after(self._call_timeout, shield=True) as scope:
                await handler(document_id)
        except BaseException:
            self._seen.discard(document_id)
            raise
        finally:
            self._deciding.discard(document_id)
            self._notify()
        if scope.cancelled_caught:
            self._seen.discard(document_id)
            raise DaemonTimeout(
                f"{kind} {document_id}", f"not decided within {self._call_timeout} s"
            )

    async def _debit_note(self, debit_note_id: str) -> None:
        await trio.lowlevel.checkpoint()
        try:
            note = await self._yagna.payment.get_debit_note(debit_note_id)
        except YagnaError as exc:
            if is_transient(exc):
                # The daemon failed, not the note: read it again on the next round.
                raise
            return
        if self._made_elsewhere("debit note", debit_note_id, note.agreement_id):
            return
        decision = self.billing.check_debit_note(note, self._now())
        if isinstance(decision, Accept):
            await self._accept_note(note, decision)
        elif isinstance(decision, Terminate):
            self._refuse_note(note, decision.code, decision.message)
            await self._terminate(note, decision)
        else:
            self._refuse_note(note, decision.reason.value, decision.message)

    def _made_elsewhere(self, kind: str, document_id: str, agreement_id: str) -> bool:
        """Whether a document belongs to an agreement another application made; such a
        document is left alone (neither accepted nor rejected) and counted.

        With an application session the daemon reports the session's documents only, so every
        document that comes is of an agreement this engine made, registered or not (an
        unregistered one is refused as billing says). Without a session the processor cannot
        tell: a document of an agreement it did not register is left alone."""
        if self.app_session_id is not None or self.billing.get(agreement_id) is not None:
            return False
        self.ignored += 1
        logger.debug("%s %s of agreement %s: not ours, left alone", kind, document_id, agreement_id)
        return True

    def _refuse_note(self, note: DebitNote, reason: str, message: str) -> None:
        self._record(
            DebitNoteRefused(
                note.debit_note_id,
                note.agreement_id,
                note.activity_id,
                note.total_amount_due,
                reason,
                message,
            )
        )

    async def _accept_note(self, note: DebitNote, decision: Accept) -> None:
        await trio.lowlevel.checkpoint()
        spend = self.budget.agreements.get(note.agreement_id)
        already = spend.accepted if spend is not None else Decimal(0)
        increase = max(decision.amount - already, Decimal(0))
        # The agreement's unbilled window runs from when the note was issued (ledger clock).
        age = (self._now() - note.timestamp).total_seconds()
        try:
            self.budget.accepted(note.agreement_id, increase, noted_at=self.budget.now() - age)
        except BudgetExceeded as exc:
            self._refuse_note(note, BUDGET_EXCEEDED, str(exc))
            return
        accepted = DebitNoteAccepted(
            note.debit_note_id, note.agreement_id, note.activity_id, decision.amount, increase
        )

        async def in_effect() -> bool:
            now = await self._yagna.payment.get_debit_note(note.debit_note_id)
            return now.status in (DocumentStatus.ACCEPTED, DocumentStatus.SETTLED)

        self._send_soon(
            _Send(
                "acceptDebitNote",
                lambda: self._yagna.payment.accept_debit_note(
                    note.debit_note_id, decision.amount, self.allocation_id
                ),
                in_effect,
                lambda: self._record(accepted),
                lambda error: self._refuse_note(note, "AcceptFailed", error),
            )
        )

    async def _terminate(self, note: DebitNote, decision: Terminate) -> None:
        await trio.lowlevel.checkpoint()
        if note.agreement_id in self._terminated:
            return
        self._terminated.add(note.agreement_id)
        terminated = True
        try:
            await self._yagna.market.terminate_agreement(
                note.agreement_id,
                Reason(decision.message, {"golem.requestor.code": decision.code}),
            )
        except YagnaError:
            terminated = False
        self.agreement_ended(note.agreement_id)
        self._record(
            AgreementTerminatedForBilling(
                note.agreement_id, note.debit_note_id, decision.code, decision.message, terminated
            )
        )

    async def _invoice(self, invoice_id: str, read: Mapping[str, Invoice] | None = None) -> None:
        """Decide an invoice: ``read`` may hold it already (read ahead)."""
        await trio.lowlevel.checkpoint()
        invoice = None if read is None else read.get(invoice_id)
        if invoice is None:
            try:
                invoice = await self._yagna.payment.get_invoice(invoice_id)
            except YagnaError as exc:
                if is_transient(exc):
                    raise  # read it again on the next round
                return
        if self._made_elsewhere("invoice", invoice_id, invoice.agreement_id):
            return
        await self._read_usage(invoice.agreement_id)
        decision: Decision = self.billing.check_invoice(invoice, self._now())
        known = self.billing.get(invoice.agreement_id) is not None
        if isinstance(decision, Accept):
            await self._accept_invoice(invoice, decision)
        elif isinstance(decision, Reject):
            await self._reject_invoice(invoice, decision)
            if known and invoice.agreement_id not in self._paid:
                self._unpaid[invoice.agreement_id] = Unpaid(
                    invoice.agreement_id, f"invoice rejected: {decision.message}", invoice.amount
                )
        if known:
            self._invoiced.add(invoice.agreement_id)
            self._notify()

    async def _accept_invoice(self, invoice: Invoice, decision: Accept) -> None:
        await trio.lowlevel.checkpoint()
        agreement_id = invoice.agreement_id
        try:
            self.budget.settled(agreement_id, decision.amount)
        except (BudgetExceeded, ValueError) as exc:
            self._unpaid[agreement_id] = Unpaid(agreement_id, str(exc), invoice.amount)
            self._record(
                InvoiceRejected(
                    invoice.invoice_id,
                    agreement_id,
                    invoice.amount,
                    self.budget.agreements[agreement_id].accepted,
                    BUDGET_EXCEEDED,
                    str(exc),
                    sent=False,
                )
            )
            return
        self._unpaid[agreement_id] = Unpaid(
            agreement_id, "accepting: the daemon has not confirmed it", invoice.amount
        )

        async def in_effect() -> bool:
            now = await self._yagna.payment.get_invoice(invoice.invoice_id)
            return now.status in (DocumentStatus.ACCEPTED, DocumentStatus.SETTLED)

        def done() -> None:
            self._paid[agreement_id] = decision.amount
            self._unpaid.pop(agreement_id, None)
            self._record(InvoiceAccepted(invoice.invoice_id, agreement_id, decision.amount))

        def failed(error: str) -> None:
            self._unpaid[agreement_id] = Unpaid(
                agreement_id, f"accepting failed: {error}", invoice.amount
            )

        self._send_soon(
            _Send(
                "acceptInvoice",
                lambda: self._yagna.payment.accept_invoice(
                    invoice.invoice_id, decision.amount, self.allocation_id
                ),
                in_effect,
                done,
                failed,
            )
        )

    async def _reject_invoice(self, invoice: Invoice, decision: Reject) -> None:
        await trio.lowlevel.checkpoint()

        def rejected(sent: bool) -> InvoiceRejected:
            return InvoiceRejected(
                invoice.invoice_id,
                invoice.agreement_id,
                invoice.amount,
                decision.amount_accepted,
                decision.reason.value,
                decision.message,
                sent,
            )

        async def in_effect() -> bool:
            now = await self._yagna.payment.get_invoice(invoice.invoice_id)
            return now.status is DocumentStatus.REJECTED

        self._send_soon(
            _Send(
                "rejectInvoice",
                lambda: self._yagna.payment.reject_invoice(
                    invoice.invoice_id,
                    Rejection(decision.reason, decision.amount_accepted, decision.message),
                ),
                in_effect,
                lambda: self._record(rejected(True)),
                lambda _error: self._record(rejected(False)),
            )
        )

    async def _read_usage(self, agreement_id: str) -> None:
        """Read the usage of the agreement's activities that no reading bounds yet (the
        provider ended the agreement before the engine read it, say), so the invoice is checked
        against the usage too; bounded by :data:`USAGE_READ_BOUND`, and nothing happens for an
        activity the daemon cannot answer for."""
        await trio.lowlevel.checkpoint()
        billing = self.billing.get(agreement_id)
        if billing is None:
            return
        with trio.move_on_after(USAGE_READ_BOUND):
            await trio.lowlevel.checkpoint()
            for activity_id in billing.unread_activities:
                try:
                    usage = await self._yagna.activity.get_usage(activity_id)
                except YagnaError as exc:
                    logger.debug("usage of activity %s: %s", activity_id, exc)
                    continue
                self.activity_usage(agreement_id, activity_id, usage)

    # --- sending decisions ---

    def _send_soon(self, send: _Send) -> None:
        if self._senders is None:
            raise RuntimeError("the processor is not running")
        self._sending += 1
        self._senders.start_soon(self._send, send)

    async def _send(self, send: _Send) -> None:
        """Make a decision's call, riding out the daemon's faults until it goes through or
        the daemon refuses it; the processor gives up on it only at exit (after the invoice
        wait). Shielded: cancelling the processor's tasks does not cut it short."""
        scope = trio.CancelScope(shield=True)
        self._send_scopes.add(scope)
        failure: str | None = "given up at exit: the daemon did not answer"
        try:
            with scope:
                await trio.lowlevel.checkpoint()
                failure = await self._deliver(send)
        finally:
            self._send_scopes.discard(scope)
            self._sending -= 1
            if failure is None:
                send.done()
            else:
                logger.warning("%s: %s", send.operation, failure)
                send.failed(failure)
            self._notify()

    async def _deliver(self, send: _Send) -> str | None:
        """``None`` once the daemon holds the document as decided, else why not."""
        ride = self._yagna.monitor.ride_out(send.operation)
        retried = False
        while True:
            await trio.lowlevel.checkpoint()
            try:
                if not (retried and await send.in_effect()):
                    await send.call()
            except TRANSIENT_ERRORS as exc:
                retried = True
                await ride.failed(exc)
                continue
            except YagnaError as exc:
                return str(exc)
            ride.succeeded()
            return None

    def _give_up_sending(self) -> None:
        for scope in list(self._send_scopes):
            scope.cancel()

    async def _drain_invoices(self) -> None:
        """Poll invoices until every registered agreement has had one decided, riding out
        the daemon's faults, then wait for the decisions' calls to go through (the caller
        bounds the wait). Up to :data:`DRAIN_POLLS` polls are in flight, staggered, each a
        round of its own (a document comes to one of them; the others skip it as seen)."""
        async with trio.open_nursery() as polls:
            for _ in range(DRAIN_POLLS):
                if self._all_invoiced():
                    break
                polls.start_soon(functools.partial(self._invoice_rounds, until=self._all_invoiced))
                with trio.move_on_after(1 / DRAIN_POLLS):
                    await self._invoiced_all()
            await self._invoiced_all()
            polls.cancel_scope.cancel()
        while self._sending:
            await self._changed.wait()

    async def _invoiced_all(self) -> None:
        await trio.lowlevel.checkpoint()
        while not self._all_invoiced():
            await self._changed.wait()

    def _make_report(self, released: bool) -> PaymentReport:
        unpaid = dict(self._unpaid)
        for agreement_id in self.billing.agreements:
            if agreement_id not in self._paid and agreement_id not in unpaid:
                unpaid[agreement_id] = Unpaid(agreement_id, "no invoice received")
        return PaymentReport(
            allocation_id=self.allocation_id,
            budget=self.budget.budget,
            spent=self.budget.spent,
            debit_notes_accepted=sum(isinstance(e, DebitNoteAccepted) for e in self._events),
            debit_notes_refused=sum(isinstance(e, DebitNoteRefused) for e in self._events),
            invoices_accepted=dict(self._paid),
            invoices_rejected=sum(
                isinstance(e, InvoiceRejected) and e.reason != BUDGET_EXCEEDED for e in self._events
            ),
            unpaid=tuple(unpaid.values()),
            allocation_released=released,
            app_session_id=self.app_session_id,
            documents_ignored=self.ignored,
        )


@asynccontextmanager
async def open_payments(
    yagna: YagnaClient,
    *,
    budget: Decimal,
    platform: str = "erc20-holesky-tglm",
    invoice_wait: float = 300.0,
    emit: Callable[[PaymentEvent], None] | None = None,
    margin: Decimal = Decimal(0),
    tolerance: Tolerance | None = None,
    now: Callable[[], dt.datetime] = _utcnow,
    poll_wait: float = EVENT_WAIT,
    call_timeout: float = 30.0,
    app_session_id: str | None = None,
) -> AsyncIterator[PaymentProcessor]:
    """Create an allocation of ``budget`` on ``platform`` and pay from it while open.

    Inside, two tasks poll debit-note and invoice events (persistently, from the last event
    seen). Each debit note is validated and accepted for exactly its amount at once, whatever
    else runs; a note that breaks a rule gets its agreement terminated with the rule's
    ``golem.requestor.code``; a note of an agreement not registered with
    :meth:`PaymentProcessor.add_agreement` is never paid. Valid invoices are accepted for
    exactly their amount, bad ones rejected with a reason. Nothing is accepted past ``budget``:
    such documents are refused with an event. Every decision goes to ``emit`` (called
    synchronously from the processor's tasks; it must not block) and to
    :attr:`PaymentProcessor.events`. ``now`` is the clock documents are judged by.

    Both feeds are read from the allocation's creation on, so documents of earlier applications
    on the same daemon never come. With ``app_session_id`` (the session the caller confirms its
    agreements under) they are read for that session only: documents of other applications
    never come at all. Without it, a document of an agreement not registered is left alone
    (counted in :attr:`PaymentReport.documents_ignored`), never accepted nor rejected.

    On exit (normal, error or cancellation) the processor waits up to ``invoice_wait`` seconds
    for the invoices of every registered agreement, pays the valid ones, releases the allocation
    (waiting at most ``call_timeout``) and sets :attr:`PaymentProcessor.report`.

    Cancellation: cancelling the block stops the polling tasks; each document being handled is
    finished first (its handling is shielded, bounded by ``call_timeout``). The final invoice
    wait and the release are shielded and bounded, so they happen even when cancelled, and
    ``Cancelled`` then propagates. If entering is cancelled, no allocation is left behind unless
    the creation request itself was cut short after reaching the daemon.
    """
    identity = await yagna.identity.get_identity()
    budget_ledger = BudgetLedger(budget, margin=margin, tolerance=tolerance)
    billing = BillingLedger(tolerance if tolerance is not None else Tolerance())
    allocation = await yagna.payment.create_allocation(
        NewAllocation(budget, payment_platform=platform)
    )
    processor = PaymentProcessor(
        yagna,
        allocation_id=allocation.allocation_id,
        requestor_id=identity.identity,
        budget=budget_ledger,
        billing=billing,
        emit=emit,
        now=now,
        poll_wait=poll_wait,
        call_timeout=call_timeout,
        app_session_id=app_session_id,
        since=allocation.timestamp,
    )
    released = False
    try:
        # The decisions' calls outlive the polls: they may go on during the final wait.
        async with trio.open_nursery() as senders:
            processor._senders = senders
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(processor._poll_debit_notes)
                    nursery.start_soon(processor._poll_invoices)
                    try:
                        yield processor
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                with trio.move_on_after(invoice_wait, shield=True) as drain:
                    processor._drain_scope = drain
                    if processor._hurried:
                        drain.cancel()
                    await processor._drain_invoices()
                processor._drain_scope = None
                processor._give_up_sending()
    finally:
        processor._senders = None
        with trio.move_on_after(call_timeout, shield=True):
            try:
                await yagna.payment.release_allocation(allocation.allocation_id)
                released = True
            except YagnaError:
                released = False
        processor.report = processor._make_report(released)
