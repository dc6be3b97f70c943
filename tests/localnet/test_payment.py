"""The emulated payment API, driven through the project's own client in virtual time, on a
real agreement negotiated through the emulated market. Every reply is checked against the
payment spec (as patched for the daemon's known deviations)."""

from __future__ import annotations

import datetime as dt
import importlib
import re
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx2
import pytest
import trio
import trio.testing
from _support import negotiate_agreement
from starlette.applications import Starlette

from golem_trio.localnet.emulator import (
    Daemon,
    Ids,
    MarketState,
    NetClock,
    NodeIdentity,
    PaymentState,
    market_routes,
    payment_routes,
)
from golem_trio.localnet.emulator import build_app as build_daemon_app
from golem_trio.yagna import (
    ApiConfig,
    BadRequest,
    Gone,
    NewAllocation,
    NotFound,
    PaymentPlatform,
    YagnaClient,
)
from golem_trio.yagna._errors import ServerError
from golem_trio.yagna._models import AllocationUpdate, DocumentStatus, Rejection, RejectionReason

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
BASE = "/payment-api/v1"
ACTIVITY = "a" * 32
OTHER_ACTIVITY = "b" * 32
Json = dict[str, Any]
#: Error statuses the daemon answers that the spec does not declare (docs/daemon-notes.md §5.1:
#: unknown allocation in demandDecorations, released allocation in getAllocation; §5.2: accepting
#: from a released allocation). Their bodies are still checked to be an ``ErrorMessage``.
DOCUMENTED_ERRORS = (
    (re.compile(r"/demandDecorations"), 404),
    (re.compile(r"/allocations/[^/]+"), 410),
    (re.compile(r"/(debitNotes|invoices)/[^/]+/accept"), 410),
)


def _contract_support() -> Any:
    """The contract tests' spec validator (``tests/yagna/contract/openapi_support.py``)."""
    folder = str(Path(__file__).resolve().parents[1] / "yagna")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("contract.openapi_support")


def build_app(daemon: Daemon, market: MarketState, payment: PaymentState) -> Starlette:
    """The market and payment routes, served by the emulator's own app."""
    return build_daemon_app(
        daemon, [*market_routes(daemon, market), *payment_routes(daemon, payment)]
    )


class ValidatingTransport(httpx2.AsyncBaseTransport):
    """Calls the app in-process and checks every reply against the patched payment spec."""

    def __init__(self, app: Starlette) -> None:
        self._inner = httpx2.ASGITransport(app=app)
        self._support = _contract_support()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        reply = httpx2.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )
        if request.url.path.startswith(BASE):
            self._check(request, reply)
        return reply

    def _check(self, request: httpx2.Request, reply: httpx2.Response) -> None:
        path = request.url.path
        if path.endswith(("/send", "/cancel")) and reply.status_code == 200:
            # Provider-side send/cancel answer 200 ``null`` on the daemon, like accept (the
            # patched specs list only requestor calls among the 200-null deviations).
            assert reply.json() is None
            return
        tail = path.removeprefix(BASE)
        if any(
            pattern.fullmatch(tail) and reply.status_code == status
            for pattern, status in DOCUMENTED_ERRORS
        ):
            body = reply.json()
            assert set(body) == {"message"}, body
            assert body["message"] is None or isinstance(body["message"], str)
            return
        self._support.validate_response(request, reply)


@attrs.define
class Net:
    daemon: Daemon
    market: MarketState
    payment: PaymentState
    requestor: NodeIdentity
    provider: NodeIdentity
    agreement_id: str
    app: Starlette

    def transport(self) -> httpx2.AsyncBaseTransport:
        return ValidatingTransport(self.app)


async def approved_agreement(market: MarketState, requestor: str, provider: str) -> str:
    """Negotiate one agreement through the market's own methods, up to its approval."""
    return await negotiate_agreement(
        market, requestor, provider, valid_to=EPOCH + dt.timedelta(hours=1)
    )


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with trio.open_nursery() as nursery:
        daemon = Daemon(NetClock(EPOCH), Ids(3), nursery)
        requestor = daemon.add_identity("requestor")
        provider = daemon.add_identity("provider")
        market = MarketState(daemon)
        agreement_id = await approved_agreement(market, requestor.node_id, provider.node_id)
        activities = {ACTIVITY: agreement_id, OTHER_ACTIVITY: agreement_id}
        payment = PaymentState(daemon, market, activity_agreement=activities.get)
        app = build_app(daemon, market, payment)
        yield Net(daemon, market, payment, requestor, provider, agreement_id, app)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def yagna(net: Net) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=net.requestor.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=net.transport()) as client:
        yield client


@pytest.fixture
async def raw(net: Net) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain client as the requestor; every reply checked against the spec."""
    async with httpx2.AsyncClient(
        transport=net.transport(),
        base_url=f"http://localnet{BASE}",
        headers={"Authorization": f"Bearer {net.requestor.app_key}"},
    ) as client:
        yield client


@pytest.fixture
async def provider(net: Net) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain client as the provider; every reply checked against the spec."""
    async with httpx2.AsyncClient(
        transport=net.transport(),
        base_url=f"http://localnet{BASE}",
        headers={"Authorization": f"Bearer {net.provider.app_key}"},
    ) as client:
        yield client


async def issue_debit_note(
    provider: httpx2.AsyncClient, amount: str, *, payable: bool = False, activity: str = ACTIVITY
) -> str:
    body: Json = {"activityId": activity, "totalAmountDue": amount, "usageCounterVector": [1, 2.5]}
    if payable:
        body["paymentDueDate"] = (EPOCH + dt.timedelta(days=1)).isoformat()
    reply = await provider.post("/debitNotes", json=body)
    assert reply.status_code == 201, reply.text
    note = reply.json()
    assert note["status"] == "ISSUED"
    reply = await provider.post(f"/debitNotes/{note['debitNoteId']}/send")
    assert (reply.status_code, reply.json()) == (200, None)
    return str(note["debitNoteId"])


async def issue_invoice(net: Net, provider: httpx2.AsyncClient, amount: str) -> str:
    reply = await provider.post(
        "/invoices",
        json={
            "agreementId": net.agreement_id,
            "activityIds": [ACTIVITY],
            "amount": amount,
            "paymentDueDate": (EPOCH + dt.timedelta(days=1)).isoformat(),
        },
    )
    assert reply.status_code == 201, reply.text
    invoice_id = str(reply.json()["invoiceId"])
    reply = await provider.post(f"/invoices/{invoice_id}/send")
    assert (reply.status_code, reply.json()) == (200, None)
    return invoice_id


async def test_allocations_are_created_amended_and_released(
    autojump_clock: trio.testing.MockClock, net: Net, yagna: YagnaClient, raw: httpx2.AsyncClient
) -> None:
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("10")))
    assert allocation.payment_platform == "erc20-holesky-tglm"
    assert allocation.address == net.requestor.node_id
    assert (allocation.spent_amount, allocation.remaining_amount) == (Decimal(0), Decimal(10))
    as_object = PaymentPlatform(driver="erc20", network="polygon", token="glm")
    other = await yagna.payment.create_allocation(
        NewAllocation(Decimal("2.5"), payment_platform=as_object)
    )
    assert other.payment_platform == "erc20-polygon-glm"
    listed = await yagna.payment.get_allocations()
    assert [a.allocation_id for a in listed] == [allocation.allocation_id, other.allocation_id]

    amended = await yagna.payment.amend_allocation(
        allocation.allocation_id, AllocationUpdate(total_amount=Decimal("20"))
    )
    assert amended.total_amount == 20
    assert amended.remaining_amount == 20

    decoration = await yagna.payment.get_demand_decorations([allocation.allocation_id])
    properties = {p.key: p.value for p in decoration.properties}
    assert properties == {
        "golem.com.payment.platform.erc20-holesky-tglm.address": net.requestor.node_id,
        "golem.com.payment.protocol.version": "3",
    }
    assert decoration.constraints == [
        "(golem.com.payment.platform.erc20-holesky-tglm.address=*)",
        "(golem.com.payment.protocol.version>1)",
    ]
    both = await yagna.payment.get_demand_decorations(
        [allocation.allocation_id, other.allocation_id]
    )
    assert both.constraints[0].startswith("(|(golem.com.payment.platform.erc20-holesky-tglm")
    with pytest.raises(NotFound):
        await yagna.payment.get_demand_decorations(["nope"])
    (account,) = await yagna.payment.get_requestor_accounts()
    assert (account.address, account.send, account.receive) == (net.requestor.node_id, True, False)

    await yagna.payment.release_allocation(allocation.allocation_id)
    with pytest.raises(Gone):
        await yagna.payment.get_allocation(allocation.allocation_id)
    with pytest.raises(NotFound):
        await yagna.payment.get_allocation("0" * 36)
    reply = await raw.delete(f"/allocations/{allocation.allocation_id}")
    assert reply.status_code == 410
    reply = await raw.delete(f"/allocations/{other.allocation_id}")
    assert (reply.status_code, reply.json()) == (200, None)
    assert await yagna.payment.get_allocations() == []


async def test_allocations_are_released_at_their_timeout(
    autojump_clock: trio.testing.MockClock, net: Net, yagna: YagnaClient
) -> None:
    timeout = net.daemon.clock.now() + dt.timedelta(seconds=60)
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(1), timeout=timeout))
    assert allocation.timeout == timeout
    await trio.sleep(61)
    with pytest.raises(Gone):
        await yagna.payment.get_allocation(allocation.allocation_id)
    assert net.payment.ledger()["allocations"][0]["released"] is True


async def test_allocation_input_errors(
    autojump_clock: trio.testing.MockClock, net: Net, raw: httpx2.AsyncClient
) -> None:
    net.payment.balances[net.requestor.node_id] = Decimal(100)
    reply = await raw.post("/allocations", json={"totalAmount": 60})
    assert reply.status_code == 201
    assert reply.json()["totalAmount"] == "60"
    reply = await raw.post("/allocations", json={"totalAmount": "50"})
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["detail"].startswith("Insufficient funds")
    assert (problem["availableFunds"], problem["reservedFunds"]) == ("100", "60")
    for platform in ("erc20-holesky-glm", "erc20-holesky-tGLM", {"token": "glm"}, "dummy"):
        reply = await raw.post(
            "/allocations", json={"totalAmount": "1", "paymentPlatform": platform}
        )
        assert reply.status_code == 400, platform
        assert reply.json()["type"] == "/payment-api/v1/allocations/bad-payment-platform"
    reply = await raw.post("/allocations", json={"paymentPlatform": "erc20-holesky-tglm"})
    assert reply.status_code == 400


async def test_debit_notes_are_accepted_exactly_and_charge_the_allocation(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
    provider: httpx2.AsyncClient,
) -> None:
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("1")))
    alloc_id = allocation.allocation_id
    first = await issue_debit_note(provider, "0.25")
    (received,) = await yagna.payment.get_debit_note_events(wait=1)
    assert (received.event_type, received.debit_note_id) == ("DebitNoteReceivedEvent", first)
    note = await yagna.payment.get_debit_note(first)
    assert note.status is DocumentStatus.RECEIVED
    assert note.agreement_id == net.agreement_id
    assert (note.issuer_id, note.recipient_id) == (net.provider.node_id, net.requestor.node_id)
    assert note.usage_counter_vector == [1.0, 2.5]
    assert note.payment_due_date is None

    with pytest.raises(BadRequest, match="Invalid amount accepted"):
        await yagna.payment.accept_debit_note(first, Decimal("0.2"), alloc_id)
    with pytest.raises(BadRequest):
        await yagna.payment.accept_debit_note(first, Decimal("0.25"), "unknown-allocation")
    # Decimal equality, not text: 0.250 is 0.25.
    await yagna.payment.accept_debit_note(first, Decimal("0.250"), alloc_id)
    await yagna.payment.accept_debit_note(first, Decimal("0.25"), alloc_id)  # idempotent
    assert (await yagna.payment.get_allocation(alloc_id)).spent_amount == Decimal("0.25")

    # The next note carries the running total: only the difference is charged.
    second = await issue_debit_note(provider, "0.75")
    assert (await yagna.payment.get_debit_note(second)).previous_debit_note_id == first
    await yagna.payment.accept_debit_note(second, Decimal("0.75"), alloc_id)
    allocation = await yagna.payment.get_allocation(alloc_id)
    assert (allocation.spent_amount, allocation.remaining_amount) == (
        Decimal("0.75"),
        Decimal("0.25"),
    )
    (row,) = await yagna.payment.get_expenditures(alloc_id)
    assert (row.agreement_id, row.activity_id, row.accepted_amount) == (
        net.agreement_id,
        ACTIVITY,
        Decimal("0.75"),
    )

    # More than the allocation has left: refused, nothing charged.
    third = await issue_debit_note(provider, "1.5")
    reply = await raw.post(
        f"/debitNotes/{third}/accept", json={"totalAmountAccepted": "1.5", "allocationId": alloc_id}
    )
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("Not enough funds")
    assert (await yagna.payment.get_allocation(alloc_id)).spent_amount == Decimal("0.75")
    assert (await yagna.payment.get_debit_note(third)).status is DocumentStatus.RECEIVED

    # Rejecting a debit note is not implemented by the daemon.
    with pytest.raises(ServerError):
        await yagna.payment.reject_debit_note(
            third, Rejection(RejectionReason.INCORRECT_AMOUNT, Decimal(0))
        )
    reply = await raw.post(
        f"/debitNotes/{third}/reject",
        json={"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"},
    )
    assert (reply.status_code, reply.json()) == (501, {"message": None})

    # Released allocation: 410.
    await yagna.payment.release_allocation(alloc_id)
    with pytest.raises(Gone):
        await yagna.payment.accept_debit_note(third, Decimal("1.5"), alloc_id)

    reply = await raw.get(f"/debitNotes/{'0' * 36}")
    assert (reply.status_code, reply.json()) == (404, {"message": None})
    listed = await yagna.payment.get_debit_notes()
    assert [n.debit_note_id for n in listed] == [first, second, third]
    # No payment: these notes were not payable.
    assert await yagna.payment.get_payments(wait=1) == []


async def test_debit_note_events_are_persistent_and_selected_by_kind(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    provider: httpx2.AsyncClient,
) -> None:
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("5")))
    first = await issue_debit_note(provider, "1")
    await trio.sleep(1)
    second = await issue_debit_note(provider, "2", payable=True)
    events = await yagna.payment.get_debit_note_events(wait=1)
    assert [e.debit_note_id for e in events] == [first, second]
    after = await yagna.payment.get_debit_note_events(wait=1, after_timestamp=events[0].event_date)
    assert [e.debit_note_id for e in after] == [second]
    assert await yagna.payment.get_debit_note_events(wait=1, max_events=1) == events[:1]
    assert await yagna.payment.get_debit_note_events(wait=1, app_session_id="app-1") == events
    assert await yagna.payment.get_debit_note_events(wait=1, app_session_id="other") == []

    # A long poll wakes up on the next event.
    async def accept_soon() -> None:
        await trio.sleep(2)
        await yagna.payment.accept_debit_note(second, Decimal(2), allocation.allocation_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_soon)
        (accepted,) = await yagna.payment.get_debit_note_events(
            wait=30, after_timestamp=events[-1].event_date, kinds=["ACCEPTED"]
        )
    assert (accepted.event_type, accepted.debit_note_id) == ("DebitNoteAcceptedEvent", second)
    # Default kinds (RECEIVED, CANCELLED) do not show the acceptance or the settlement.
    assert await yagna.payment.get_debit_note_events(wait=1) == events
    kinds = await yagna.payment.get_debit_note_events(wait=1, kinds=["ACCEPTED", "SETTLED"])
    assert [e.event_type for e in kinds] == ["DebitNoteAcceptedEvent", "DebitNoteSettledEvent"]

    # The provider sees what became of its notes (its default kinds), and never the receipt.
    reply = await provider.get("/debitNoteEvents", params={"timeout": 1})
    assert [e["eventType"] for e in reply.json()] == [
        "DebitNoteAcceptedEvent",
        "DebitNoteSettledEvent",
    ]
    reply = await provider.get("/debitNoteEvents", params={"timeout": 1, "appSessionId": "prov-1"})
    assert len(reply.json()) == 2
    in_process = await net.payment.collect_debit_note_events(net.provider.node_id, 0)
    assert [e["debitNoteId"] for e in in_process] == [second, second]


async def test_payable_debit_notes_and_invoices_are_paid(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
    provider: httpx2.AsyncClient,
) -> None:
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("10")))
    alloc_id = allocation.allocation_id
    plain = await issue_debit_note(provider, "1")
    await yagna.payment.accept_debit_note(plain, Decimal(1), alloc_id)
    payable = await issue_debit_note(provider, "2", payable=True)
    await yagna.payment.accept_debit_note(payable, Decimal(2), alloc_id)
    assert (await yagna.payment.get_debit_note(payable)).status is DocumentStatus.SETTLED
    (first_payment,) = await yagna.payment.get_payments(wait=1)
    assert first_payment.amount == 2
    assert first_payment.activity_payments[0].activity_id == ACTIVITY
    assert (first_payment.payer_id, first_payment.payee_id) == (
        net.requestor.node_id,
        net.provider.node_id,
    )
    assert await yagna.payment.get_payment(first_payment.payment_id) == first_payment

    invoice_id = await issue_invoice(net, provider, "3.5")
    (received,) = await yagna.payment.get_invoice_events(wait=1)
    assert (received.event_type, received.invoice_id) == ("InvoiceReceivedEvent", invoice_id)
    invoice = await yagna.payment.get_invoice(invoice_id)
    assert (invoice.amount, invoice.activity_ids) == (Decimal("3.5"), [ACTIVITY])
    with pytest.raises(BadRequest, match="Invalid amount accepted"):
        await yagna.payment.accept_invoice(invoice_id, Decimal(3), alloc_id)
    await yagna.payment.accept_invoice(invoice_id, Decimal("3.5"), alloc_id)
    await yagna.payment.accept_invoice(invoice_id, Decimal("3.5"), alloc_id)  # idempotent
    assert (await yagna.payment.get_invoice(invoice_id)).status is DocumentStatus.SETTLED
    # Only what the invoice adds to the accepted debit notes is charged ...
    allocation = await yagna.payment.get_allocation(alloc_id)
    assert (allocation.spent_amount, allocation.remaining_amount) == (
        Decimal("3.5"),
        Decimal("6.5"),
    )
    # ... and only what was not paid yet is paid.
    payments = await yagna.payment.get_payments(
        wait=1, after_timestamp=first_payment.timestamp, network="holesky", driver="erc20"
    )
    (second_payment,) = payments
    assert second_payment.amount == Decimal("1.5")
    assert second_payment.agreement_payments[0].agreement_id == net.agreement_id
    assert await yagna.payment.get_payments(wait=1, network="polygon") == []
    settled = await yagna.payment.get_invoice_events(
        wait=1, after_timestamp=received.event_date, kinds=["SETTLED"]
    )
    assert [e.event_type for e in settled] == ["InvoiceSettledEvent"]
    # Funds moved from the requestor's wallet to the provider's.
    assert net.payment.balance(net.requestor.node_id) == Decimal("996.5")
    assert net.payment.balance(net.provider.node_id) == Decimal("1003.5")

    # A rejection comes too late now.
    reply = await raw.post(
        f"/invoices/{invoice_id}/reject",
        json={"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"},
    )
    assert (reply.status_code, reply.json()["message"]) == (400, "Invoice settled")
    reply = await raw.get(f"/payments/{'0' * 36}")
    assert (reply.status_code, reply.json()) == (404, {"message": None})

    ledger = net.payment.ledger()
    assert [(n["debitNoteId"], n["status"]) for n in ledger["debitNotes"]] == [
        (plain, "ACCEPTED"),
        (payable, "SETTLED"),
    ]
    assert ledger["invoices"] == [
        {
            "invoiceId": invoice_id,
            "agreementId": net.agreement_id,
            "amount": "3.5",
            "status": "SETTLED",
            # Every accept request (the wrong amount, the acceptance, the repeat) and the late
            # rejection reached the invoice: the ledger says who touched it.
            "acceptRequests": [alloc_id, alloc_id, alloc_id],
            "rejectRequests": 1,
        }
    ]
    assert ledger["allocations"] == [
        {"allocationId": alloc_id, "totalAmount": "10", "spentAmount": "3.5", "released": False}
    ]
    assert [p["amount"] for p in ledger["payments"]] == ["2", "1.5"]


async def test_invoices_can_be_rejected_and_the_provider_is_told(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
    provider: httpx2.AsyncClient,
) -> None:
    invoice_id = await issue_invoice(net, provider, "2")
    rejection = Rejection(RejectionReason.INCORRECT_AMOUNT, Decimal("1"), "too much")
    await yagna.payment.reject_invoice(invoice_id, rejection)
    await yagna.payment.reject_invoice(invoice_id, rejection)  # again: 200
    assert (await yagna.payment.get_invoice(invoice_id)).status is DocumentStatus.REJECTED
    (event,) = await yagna.payment.get_invoice_events(wait=1, kinds=["REJECTED"])
    assert event.event_type == "InvoiceRejectedEvent"
    assert event.rejection == rejection
    reply = await provider.get("/invoiceEvents", params={"timeout": 1})
    assert [e["eventType"] for e in reply.json()] == ["InvoiceRejectedEvent"]
    assert reply.json()[0]["rejection"]["rejectionReason"] == "INCORRECT_AMOUNT"
    # A rejected invoice can still be accepted.
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("5")))
    await yagna.payment.accept_invoice(invoice_id, Decimal(2), allocation.allocation_id)
    with pytest.raises(BadRequest):
        await yagna.payment.reject_invoice(invoice_id, rejection)
    reply = await raw.post(f"/invoices/{invoice_id}/reject", json={"rejectionReason": "NOPE"})
    assert reply.status_code == 400


async def test_cancelled_invoice_cannot_be_accepted(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    provider: httpx2.AsyncClient,
) -> None:
    invoice_id = await issue_invoice(net, provider, "2")
    reply = await provider.post(f"/invoices/{invoice_id}/cancel")
    assert (reply.status_code, reply.json()) == (200, None)
    events = await yagna.payment.get_invoice_events(wait=1)
    assert [e.event_type for e in events] == ["InvoiceReceivedEvent", "InvoiceCancelledEvent"]
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("5")))
    with pytest.raises(BadRequest, match="cancelled"):
        await yagna.payment.accept_invoice(invoice_id, Decimal(2), allocation.allocation_id)


async def test_provider_side_errors(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
    provider: httpx2.AsyncClient,
) -> None:
    reply = await provider.post("/debitNotes", json={"activityId": "c" * 32, "totalAmountDue": 1})
    assert reply.status_code == 400
    # The requestor is not the provider of the agreement.
    reply = await raw.post("/debitNotes", json={"activityId": ACTIVITY, "totalAmountDue": "1"})
    assert reply.status_code == 400
    reply = await provider.post(
        "/invoices",
        json={
            "agreementId": "f" * 64,
            "amount": "1",
            "paymentDueDate": EPOCH.isoformat(),
        },
    )
    assert reply.status_code == 400
    reply = await provider.post(f"/debitNotes/{'0' * 36}/send")
    assert (reply.status_code, reply.json()) == (404, {"message": None})
    # An issued but unsent note is the provider's only.
    reply = await provider.post("/debitNotes", json={"activityId": ACTIVITY, "totalAmountDue": 1})
    assert reply.status_code == 201
    note_id = reply.json()["debitNoteId"]
    assert reply.json()["totalAmountDue"] == "1"
    with pytest.raises(NotFound):
        await yagna.payment.get_debit_note(note_id)
    assert await yagna.payment.get_debit_notes() == []
    reply = await provider.get("/debitNotes")
    assert [n["debitNoteId"] for n in reply.json()] == [note_id]
    # In process, as an emulated provider calls it.
    net.payment.send_debit_note(net.provider.node_id, note_id)
    assert (await yagna.payment.get_debit_note(note_id)).status is DocumentStatus.RECEIVED
