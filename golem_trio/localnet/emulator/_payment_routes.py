"""Routes of the emulated payment API (``/payment-api/v1``), requestor and provider sides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._core import Daemon, DaemonError
from ._http import (
    Handler,
    authenticate,
    json_body,
    json_response,
    query_float,
    query_int,
    query_time,
)
from ._payment import PaymentState

__all__ = ["payment_routes"]

PREFIX = "/payment-api/v1"
#: Long polls wait this long when not told (docs/daemon-notes.md §5.2).
EVENT_TIMEOUT = 5.0
#: How long the daemon waits for the other side to acknowledge (its default; spec says 5).
ACK_TIMEOUT = 15.0


def payment_routes(daemon: Daemon, payment: PaymentState) -> list[Route]:
    """The payment API's routes, each named after its OpenAPI ``operationId``."""

    def ack_timeout(request: Request) -> None:
        # Documents reach the in-process peer at once, so the ack never times out; the query
        # is still checked as the daemon checks it.
        query_float(request, "timeout", ACK_TIMEOUT)

    def max_items(request: Request, name: str) -> int | None:
        value = query_int(request, name)
        if value is not None and value < 0:
            raise DaemonError(400, f"Query deserialize error: invalid {name}")
        return value

    # --- allocations ---

    async def create_allocation(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.create_allocation(me.node_id, await json_body(request)), 201)

    async def get_allocations(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(
            payment.list_allocations(
                me.node_id, query_time(request, "afterTimestamp"), max_items(request, "maxItems")
            )
        )

    async def get_allocation(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.get_allocation(me.node_id, request.path_params["id"]))

    async def amend_allocation(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        return json_response(payment.amend_allocation(me.node_id, request.path_params["id"], body))

    async def release_allocation(request: Request) -> Response:
        me = authenticate(daemon, request)
        payment.release_allocation(me.node_id, request.path_params["id"])
        return json_response(None)

    async def get_allocation_expenditures(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.expenditures(me.node_id, request.path_params["id"]))

    async def get_demand_decorations(request: Request) -> Response:
        me = authenticate(daemon, request)
        text = request.query_params.get("allocationIds")
        if text is None:
            raise DaemonError(400, "Query deserialize error: missing field `allocationIds`")
        ids = [part for part in text.split(",") if part]
        return json_response(payment.demand_decorations(me.node_id, ids))

    async def get_requestor_accounts(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.accounts(me.node_id, send=True))

    async def get_provider_accounts(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.accounts(me.node_id, send=False))

    # --- debit notes ---

    async def issue_debit_note(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.issue_debit_note(me.node_id, await json_body(request)), 201)

    async def get_debit_notes(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(
            payment.list_debit_notes(
                me.node_id, query_time(request, "afterTimestamp"), max_items(request, "maxItems")
            )
        )

    async def get_debit_note(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.debit_note(me.node_id, request.path_params["id"]).json())

    async def send_debit_note(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        payment.send_debit_note(me.node_id, request.path_params["id"])
        return json_response(None)

    async def cancel_debit_note(request: Request) -> Response:
        authenticate(daemon, request)
        raise DaemonError(501, None)

    async def accept_debit_note(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        body = await json_body(request)
        payment.accept_debit_note(me.node_id, request.path_params["id"], body)
        return json_response(None)

    async def reject_debit_note(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        payment.reject_debit_note(me.node_id, request.path_params["id"], body)
        return json_response(None)

    async def get_debit_note_events(request: Request) -> Response:
        me = authenticate(daemon, request)
        events = await payment.collect_debit_note_events(
            me.node_id,
            query_float(request, "timeout", EVENT_TIMEOUT),
            query_time(request, "afterTimestamp"),
            max_items(request, "maxEvents"),
            request.query_params.get("appSessionId"),
            requestor_events=request.headers.get("x-requestor-events"),
            provider_events=request.headers.get("x-provider-events"),
        )
        return json_response(events)

    # --- invoices ---

    async def issue_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.issue_invoice(me.node_id, await json_body(request)), 201)

    async def get_invoices(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(
            payment.list_invoices(
                me.node_id, query_time(request, "afterTimestamp"), max_items(request, "maxItems")
            )
        )

    async def get_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.invoice(me.node_id, request.path_params["id"]).json())

    async def send_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        payment.send_invoice(me.node_id, request.path_params["id"])
        return json_response(None)

    async def cancel_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        payment.cancel_invoice(me.node_id, request.path_params["id"])
        return json_response(None)

    async def accept_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        body = await json_body(request)
        payment.accept_invoice(me.node_id, request.path_params["id"], body)
        return json_response(None)

    async def reject_invoice(request: Request) -> Response:
        me = authenticate(daemon, request)
        ack_timeout(request)
        body = await json_body(request)
        payment.reject_invoice(me.node_id, request.path_params["id"], body)
        return json_response(None)

    async def get_invoice_events(request: Request) -> Response:
        me = authenticate(daemon, request)
        events = await payment.collect_invoice_events(
            me.node_id,
            query_float(request, "timeout", EVENT_TIMEOUT),
            query_time(request, "afterTimestamp"),
            max_items(request, "maxEvents"),
            request.query_params.get("appSessionId"),
            requestor_events=request.headers.get("x-requestor-events"),
            provider_events=request.headers.get("x-provider-events"),
        )
        return json_response(events)

    async def debit_note_payments(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.payments_for_debit_note(me.node_id, request.path_params["id"]))

    async def invoice_payments(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.payments_for_invoice(me.node_id, request.path_params["id"]))

    # --- payments ---

    async def get_payments(request: Request) -> Response:
        me = authenticate(daemon, request)
        found = await payment.collect_payments(
            me.node_id,
            query_float(request, "timeout", EVENT_TIMEOUT),
            query_time(request, "afterTimestamp"),
            max_items(request, "maxEvents"),
            request.query_params.get("network"),
            request.query_params.get("driver"),
        )
        return json_response(found)

    async def get_payment(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(payment.payment(me.node_id, request.path_params["id"]))

    async def payments_status(request: Request) -> Response:
        authenticate(daemon, request)
        # No chain, so no driver problems to report.
        return json_response([])

    p = PREFIX
    table: list[tuple[str, str, Handler, str]] = [
        ("/allocations", "POST", create_allocation, "createAllocation"),
        ("/allocations", "GET", get_allocations, "getAllocations"),
        ("/allocations/{id}", "GET", get_allocation, "getAllocation"),
        ("/allocations/{id}", "PUT", amend_allocation, "amendAllocation"),
        ("/allocations/{id}", "DELETE", release_allocation, "releaseAllocation"),
        (
            "/allocations/{id}/expenditures",
            "GET",
            get_allocation_expenditures,
            "getAllocationExpenditures",
        ),
        ("/demandDecorations", "GET", get_demand_decorations, "getDemandDecorations"),
        ("/requestorAccounts", "GET", get_requestor_accounts, "getRequestorAccounts"),
        ("/providerAccounts", "GET", get_provider_accounts, "getProviderAccounts"),
        ("/debitNotes", "POST", issue_debit_note, "issueDebitNote"),
        ("/debitNotes", "GET", get_debit_notes, "getDebitNotes"),
        ("/debitNotes/{id}", "GET", get_debit_note, "getDebitNote"),
        ("/debitNotes/{id}/payments", "GET", debit_note_payments, "getPaymentsForDebitNote"),
        ("/debitNotes/{id}/send", "POST", send_debit_note, "sendDebitNote"),
        ("/debitNotes/{id}/cancel", "POST", cancel_debit_note, "cancelDebitNote"),
        ("/debitNotes/{id}/accept", "POST", accept_debit_note, "acceptDebitNote"),
        ("/debitNotes/{id}/reject", "POST", reject_debit_note, "rejectDebitNote"),
        ("/debitNoteEvents", "GET", get_debit_note_events, "getDebitNoteEvents"),
        ("/invoices", "POST", issue_invoice, "issueInvoice"),
        ("/invoices", "GET", get_invoices, "getInvoices"),
        ("/invoices/{id}", "GET", get_invoice, "getInvoice"),
        ("/invoices/{id}/payments", "GET", invoice_payments, "getPaymentsForInvoice"),
        ("/invoices/{id}/send", "POST", send_invoice, "sendInvoice"),
        ("/invoices/{id}/cancel", "POST", cancel_invoice, "cancelInvoice"),
        ("/invoices/{id}/accept", "POST", accept_invoice, "acceptInvoice"),
        ("/invoices/{id}/reject", "POST", reject_invoice, "rejectInvoice"),
        ("/invoiceEvents", "GET", get_invoice_events, "getInvoiceEvents"),
        # ``status`` before ``{id}``: Starlette takes the first route that matches.
        ("/payments/status", "GET", payments_status, "paymentsStatus"),
        ("/payments", "GET", get_payments, "getPayments"),
        ("/payments/{id}", "GET", get_payment, "getPayment"),
    ]
    return [
        Route(f"{p}{path}", handler, methods=[method], name=name)
        for path, method, handler, name in table
    ]
