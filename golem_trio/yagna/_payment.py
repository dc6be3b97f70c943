"""Payment API (``/payment-api/v1``), requestor side: allocations, debit notes, invoices.

Cancellation, for every method: a checkpoint; if cancelled, the request may or may not have
reached the daemon (a cancelled ``accept_debit_note`` may have accepted it; accepting again is
harmless, the daemon treats it as idempotent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal

from ._convert import encode, format_timestamp
from ._http import HttpLayer
from ._models import (
    Acceptance,
    Account,
    Allocation,
    AllocationUpdate,
    DebitNote,
    DebitNoteEvent,
    DriverStatusProperty,
    Expenditure,
    Invoice,
    InvoiceEvent,
    MarketDecoration,
    NewAllocation,
    Payment,
    Rejection,
)

__all__ = ["DEFAULT_REQUESTOR_EVENTS", "PaymentApi"]

#: The daemon's default for ``X-Requestor-Events``: which document events a requestor sees.
DEFAULT_REQUESTOR_EVENTS = ("RECEIVED", "CANCELLED")


def _events_header(kinds: Iterable[str] | None) -> dict[str, str]:
    return {} if kinds is None else {"X-Requestor-Events": ",".join(kinds)}


def _after(value: dt.datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


class PaymentApi:
    """Typed calls of the payment API. Get one from :attr:`YagnaClient.payment`."""

    def __init__(self, http: HttpLayer) -> None:
        self._http = http
        self._base = http.config.payment_base

    # --- allocations -----------------------------------------------------------------------------

    async def create_allocation(self, allocation: NewAllocation) -> Allocation:
        """Reserve funds. Not retried (it would reserve twice)."""
        result: Allocation = await self._http.call_json(
            "createAllocation",
            "POST",
            f"{self._base}/allocations",
            Allocation,
            body=encode(allocation),
        )
        return result

    async def get_allocations(
        self, *, after_timestamp: dt.datetime | None = None, max_items: int | None = None
    ) -> list[Allocation]:
        result: list[Allocation] = await self._http.call_json(
            "getAllocations",
            "GET",
            f"{self._base}/allocations",
            list[Allocation],
            params={"afterTimestamp": _after(after_timestamp), "maxItems": max_items},
            safe=True,
        )
        return result

    async def get_allocation(self, allocation_id: str) -> Allocation:
        """:class:`Gone` once released."""
        result: Allocation = await self._http.call_json(
            "getAllocation",
            "GET",
            f"{self._base}/allocations/{allocation_id}",
            Allocation,
            safe=True,
        )
        return result

    async def amend_allocation(self, allocation_id: str, update: AllocationUpdate) -> Allocation:
        """Change the total or the wait (idempotent, so retried)."""
        result: Allocation = await self._http.call_json(
            "amendAllocation",
            "PUT",
            f"{self._base}/allocations/{allocation_id}",
            Allocation,
            body=encode(update),
            safe=True,
        )
        return result

    async def release_allocation(self, allocation_id: str) -> None:
        """Give the rest of the funds back. Retried; a repeat that finds it released counts
        as done."""
        await self._http.call(
            "releaseAllocation",
            "DELETE",
            f"{self._base}/allocations/{allocation_id}",
            safe=True,
            gone_ok=True,
        )

    async def get_expenditures(self, allocation_id: str) -> list[Expenditure]:
        """What an allocation paid, per agreement (daemon only, not in the specs)."""
        result: list[Expenditure] = await self._http.call_json(
            "getAllocationExpenditures",
            "GET",
            f"{self._base}/allocations/{allocation_id}/expenditures",
            list[Expenditure],
            safe=True,
        )
        return result

    async def get_demand_decorations(self, allocation_ids: Sequence[str]) -> MarketDecoration:
        """The properties and constraints a demand paid from these allocations must carry."""
        result: MarketDecoration = await self._http.call_json(
            "getDemandDecorations",
            "GET",
            f"{self._base}/demandDecorations",
            MarketDecoration,
            params={"allocationIds": ",".join(allocation_ids)},
            safe=True,
        )
        return result

    async def get_requestor_accounts(self) -> list[Account]:
        result: list[Account] = await self._http.call_json(
            "getRequestorAccounts",
            "GET",
            f"{self._base}/requestorAccounts",
            list[Account],
            safe=True,
        )
        return result

    # --- debit notes -----------------------------------------------------------------------------

    async def get_debit_notes(
        self, *, after_timestamp: dt.datetime | None = None, max_items: int | None = None
    ) -> list[DebitNote]:
        result: list[DebitNote] = await self._http.call_json(
            "getDebitNotes",
            "GET",
            f"{self._base}/debitNotes",
            list[DebitNote],
            params={"afterTimestamp": _after(after_timestamp), "maxItems": max_items},
            safe=True,
        )
        return result

    async def get_debit_note(self, debit_note_id: str) -> DebitNote:
        result: DebitNote = await self._http.call_json(
            "getDebitNote", "GET", f"{self._base}/debitNotes/{debit_note_id}", DebitNote, safe=True
        )
        return result

    async def get_payments_for_debit_note(self, debit_note_id: str) -> list[Payment]:
        result: list[Payment] = await self._http.call_json(
            "getPaymentsForDebitNote",
            "GET",
            f"{self._base}/debitNotes/{debit_note_id}/payments",
            list[Payment],
            safe=True,
        )
        return result

    async def get_debit_note_events(
        self,
        *,
        wait: float = 5.0,
        after_timestamp: dt.datetime | None = None,
        max_events: int | None = None,
        app_session_id: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[DebitNoteEvent]:
        """Long-poll debit-note events newer than ``after_timestamp`` (persistent, oldest
        first). ``kinds`` sets ``X-Requestor-Events`` (daemon default: RECEIVED, CANCELLED)."""
        result: list[DebitNoteEvent] = await self._http.call_json(
            "getDebitNoteEvents",
            "GET",
            f"{self._base}/debitNoteEvents",
            list[DebitNoteEvent],
            params={
                "timeout": wait,
                "afterTimestamp": _after(after_timestamp),
                "maxEvents": max_events,
                "appSessionId": app_session_id,
            },
            headers=_events_header(kinds),
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result

    async def accept_debit_note(
        self,
        debit_note_id: str,
        total_amount_accepted: Decimal,
        allocation_id: str,
        *,
        wait: float | None = None,
    ) -> None:
        """Accept a debit note. The amount must equal its ``total_amount_due`` exactly.

        The daemon waits up to ``wait`` s (default 15) for the provider to acknowledge and
        answers 504 (:class:`ServerError`) otherwise; accepting again is harmless, so this is
        retried.
        """
        await self._http.call(
            "acceptDebitNote",
            "POST",
            f"{self._base}/debitNotes/{debit_note_id}/accept",
            body=encode(Acceptance(total_amount_accepted, allocation_id)),
            params={"timeout": wait},
            safe=True,
            long_poll=wait if wait is not None else 15.0,
        )

    async def reject_debit_note(self, debit_note_id: str, rejection: Rejection) -> None:
        """Reject a debit note. The daemon 0.17 answers 501 (not implemented), raised as
        :class:`ServerError`: terminate the agreement instead."""
        await self._http.call(
            "rejectDebitNote",
            "POST",
            f"{self._base}/debitNotes/{debit_note_id}/reject",
            body=encode(rejection),
        )

    # --- invoices --------------------------------------------------------------------------------

    async def get_invoices(
        self, *, after_timestamp: dt.datetime | None = None, max_items: int | None = None
    ) -> list[Invoice]:
        result: list[Invoice] = await self._http.call_json(
            "getInvoices",
            "GET",
            f"{self._base}/invoices",
            list[Invoice],
            params={"afterTimestamp": _after(after_timestamp), "maxItems": max_items},
            safe=True,
        )
        return result

    async def get_invoice(self, invoice_id: str) -> Invoice:
        result: Invoice = await self._http.call_json(
            "getInvoice", "GET", f"{self._base}/invoices/{invoice_id}", Invoice, safe=True
        )
        return result

    async def get_payments_for_invoice(self, invoice_id: str) -> list[Payment]:
        result: list[Payment] = await self._http.call_json(
            "getPaymentsForInvoice",
            "GET",
            f"{self._base}/invoices/{invoice_id}/payments",
            list[Payment],
            safe=True,
        )
        return result

    async def get_invoice_events(
        self,
        *,
        wait: float = 5.0,
        after_timestamp: dt.datetime | None = None,
        max_events: int | None = None,
        app_session_id: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[InvoiceEvent]:
        """Long-poll invoice events; as :meth:`get_debit_note_events`."""
        result: list[InvoiceEvent] = await self._http.call_json(
            "getInvoiceEvents",
            "GET",
            f"{self._base}/invoiceEvents",
            list[InvoiceEvent],
            params={
                "timeout": wait,
                "afterTimestamp": _after(after_timestamp),
                "maxEvents": max_events,
                "appSessionId": app_session_id,
            },
            headers=_events_header(kinds),
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result

    async def accept_invoice(
        self,
        invoice_id: str,
        total_amount_accepted: Decimal,
        allocation_id: str,
        *,
        wait: float | None = None,
    ) -> None:
        """Accept an invoice; the amount must equal its ``amount`` exactly. Retried, as
        :meth:`accept_debit_note`."""
        await self._http.call(
            "acceptInvoice",
            "POST",
            f"{self._base}/invoices/{invoice_id}/accept",
            body=encode(Acceptance(total_amount_accepted, allocation_id)),
            params={"timeout": wait},
            safe=True,
            long_poll=wait if wait is not None else 15.0,
        )

    async def reject_invoice(
        self, invoice_id: str, rejection: Rejection, *, wait: float | None = None
    ) -> None:
        """Reject an invoice with a reason (400 if it was already accepted). Not retried."""
        await self._http.call(
            "rejectInvoice",
            "POST",
            f"{self._base}/invoices/{invoice_id}/reject",
            body=encode(rejection),
            params={"timeout": wait},
            long_poll=wait if wait is not None else 15.0,
        )

    # --- payments --------------------------------------------------------------------------------

    async def get_payments(
        self,
        *,
        wait: float = 5.0,
        after_timestamp: dt.datetime | None = None,
        max_events: int | None = None,
        network: str | None = None,
        driver: str | None = None,
    ) -> list[Payment]:
        """Long-poll payments sent (or received) newer than ``after_timestamp``."""
        result: list[Payment] = await self._http.call_json(
            "getPayments",
            "GET",
            f"{self._base}/payments",
            list[Payment],
            params={
                "timeout": wait,
                "afterTimestamp": _after(after_timestamp),
                "maxEvents": max_events,
                "network": network,
                "driver": driver,
            },
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result

    async def get_payment(self, payment_id: str) -> Payment:
        result: Payment = await self._http.call_json(
            "getPayment", "GET", f"{self._base}/payments/{payment_id}", Payment, safe=True
        )
        return result

    async def payments_status(
        self, *, network: str | None = None, driver: str | None = None
    ) -> list[DriverStatusProperty]:
        """Problems the payment drivers report (insufficient gas or tokens...); ``[]`` if none."""
        result: list[DriverStatusProperty] = await self._http.call_json(
            "paymentsStatus",
            "GET",
            f"{self._base}/payments/status",
            list[DriverStatusProperty],
            params={"network": network, "driver": driver},
            safe=True,
        )
        return result
