"""The ledger: what happened on a LocalNet, read in Python and at ``GET /localnet/ledger``.

The requestor side goes through the project's client over the in-process transport, in virtual
time; the provider side calls the emulated daemon's state directly (no provider agents run)."""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest
import trio
import trio.testing
from _support import negotiate_agreement
from starlette.applications import Starlette
from starlette.routing import Mount

from golem_trio.localnet import LocalNet, open_localnet
from golem_trio.localnet.emulator import (
    LEDGER_PATH,
    MarketState,
    NodeIdentity,
    format_time,
    ledger,
    ledger_routes,
)
from golem_trio.localnet.emulator._ledger import _document
from golem_trio.yagna import ApiConfig, NewAllocation, Reason, YagnaClient

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
Json = dict[str, Any]


async def negotiate(market: MarketState, requestor: str, provider: str) -> str:
    """An agreement negotiated through the market's own methods and confirmed (Pending)."""
    return await negotiate_agreement(
        market,
        requestor,
        provider,
        valid_to=EPOCH + dt.timedelta(hours=1),
        approve=False,
        unsubscribe=True,
    )


def served_app(net: LocalNet) -> Starlette:
    """The daemon's app with the ledger route in front (as LocalNet serves it once wired)."""
    return Starlette(routes=[*ledger_routes(net), Mount("/", app=net.app)])


@pytest.fixture
async def net() -> AsyncIterator[LocalNet]:
    async with open_localnet([], seed=5, epoch=EPOCH) as net:
        yield net


@pytest.fixture
def provider(net: LocalNet) -> NodeIdentity:
    return net.daemon.add_identity("provider")


@pytest.fixture
async def yagna(net: LocalNet) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=httpx2.ASGITransport(app=served_app(net))) as client:
        yield client


async def test_the_ledger_records_agreements_activities_documents_and_money(
    autojump_clock: trio.testing.MockClock,
    net: LocalNet,
    provider: NodeIdentity,
    yagna: YagnaClient,
) -> None:
    requestor = net.requestor.node_id
    assert ledger(net) == {
        "time": format_time(net.daemon.clock.now()),
        "agreements": [],
        "activities": [],
        "debitNotes": [],
        "invoices": [],
        "allocations": [],
        "payments": [],
        "networks": [],
    }

    # One agreement is approved, worked on, billed, paid and terminated by the requestor.
    worked = await negotiate(net.market, requestor, provider.node_id)
    net.market.approve_agreement(provider.node_id, worked, "prov-1")
    approved_at = net.daemon.clock.now()
    await trio.sleep(10)
    activity_id = await yagna.activity.create_activity(worked)
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal("10")))
    note = net.payment.issue_debit_note(
        provider.node_id, {"activityId": activity_id, "totalAmountDue": "1.25"}
    )
    net.payment.send_debit_note(provider.node_id, note["debitNoteId"])
    await yagna.payment.accept_debit_note(
        note["debitNoteId"], Decimal("1.25"), allocation.allocation_id
    )
    await yagna.activity.destroy_activity(activity_id)
    invoice = net.payment.issue_invoice(
        provider.node_id,
        {
            "agreementId": worked,
            "activityIds": [activity_id],
            "amount": "2",
            "paymentDueDate": (EPOCH + dt.timedelta(days=1)).isoformat(),
        },
    )
    net.payment.send_invoice(provider.node_id, invoice["invoiceId"])
    await yagna.payment.accept_invoice(invoice["invoiceId"], Decimal(2), allocation.allocation_id)
    await yagna.market.terminate_agreement(worked, Reason("Work done", {"golem.requestor.code": 1}))

    # Another is rejected by the provider, a third is never answered and expires.
    rejected = await negotiate(net.market, requestor, provider.node_id)
    net.market.reject_agreement(provider.node_id, rejected, {"message": "too busy"})
    expired = await negotiate(net.market, requestor, provider.node_id)
    await trio.sleep(3600)

    book = ledger(net)
    assert book["time"] == format_time(net.daemon.clock.now())
    assert book["agreements"] == [
        {
            "id": worked,
            "providerId": provider.node_id,
            "requestorId": requestor,
            "appSessionId": "app-1",
            "state": "Terminated",
            "terminator": "Requestor",
            "reason": {"message": "Work done", "golem.requestor.code": 1},
            "approvedDate": format_time(approved_at),
        },
        {
            "id": rejected,
            "providerId": provider.node_id,
            "requestorId": requestor,
            "appSessionId": "app-1",
            "state": "Rejected",
            "terminator": None,
            "reason": {"message": "too busy"},
            "approvedDate": None,
        },
        {
            "id": expired,
            "providerId": provider.node_id,
            "requestorId": requestor,
            "appSessionId": "app-1",
            "state": "Expired",
            "terminator": None,
            "reason": None,
            "approvedDate": None,
        },
    ]
    assert book["activities"] == [
        {
            "id": activity_id,
            "agreementId": worked,
            "providerId": provider.node_id,
            "state": "Terminated",
        }
    ]
    assert book["debitNotes"] == [
        {
            "id": note["debitNoteId"],
            "agreementId": worked,
            "activityId": activity_id,
            "totalAmountDue": "1.25",
            "payable": False,
            "status": "ACCEPTED",
            "acceptRequests": [allocation.allocation_id],
            "rejectRequests": 0,
            "honest": True,
        }
    ]
    assert book["invoices"] == [
        {
            "id": invoice["invoiceId"],
            "agreementId": worked,
            "amount": "2",
            "status": "SETTLED",
            "acceptRequests": [allocation.allocation_id],
            "rejectRequests": 0,
            "honest": True,
        }
    ]
    (spent,) = book["allocations"]
    assert Decimal(spent.pop("spentAmount")) == 2  # 1.25 for the debit note, 0.75 more
    assert spent == {"id": allocation.allocation_id, "totalAmount": "10", "released": False}
    (payment,) = book["payments"]
    assert set(payment) == {"id", "payerId", "payeeId", "amount"}
    assert (payment["payerId"], payment["payeeId"]) == (requestor, provider.node_id)
    assert Decimal(payment["amount"]) == 2
    # Plain data: it survives a JSON round trip unchanged, and changing it changes nothing.
    assert json.loads(json.dumps(book)) == book
    book["agreements"][0]["reason"]["message"] = "changed"
    assert ledger(net)["agreements"][0]["reason"]["message"] == "Work done"


async def test_the_ledger_is_served_as_json_with_the_app_key_only(
    autojump_clock: trio.testing.MockClock, net: LocalNet, provider: NodeIdentity
) -> None:
    agreement_id = await negotiate(net.market, net.requestor.node_id, provider.node_id)
    net.market.approve_agreement(provider.node_id, agreement_id, None)
    app = served_app(net)
    auth = {"Authorization": f"Bearer {net.app_key}"}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://localnet"
    ) as client:
        reply = await client.get(LEDGER_PATH, headers=auth)
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == ledger(net)
        assert [a["state"] for a in reply.json()["agreements"]] == ["Approved"]
        # As the daemon's own API, it wants the key (also as ``?authToken=``).
        assert (await client.get(LEDGER_PATH)).status_code == 401
        wrong = {"Authorization": "Bearer 0123456789abcdef0123456789abcdef"}
        assert (await client.get(LEDGER_PATH, headers=wrong)).status_code == 401
        reply = await client.get(LEDGER_PATH, params={"authToken": net.app_key})
        assert reply.status_code == 200
        assert (await client.get("/me")).status_code == 401
    assert app.url_path_for("localnetLedger") == LEDGER_PATH

    # LocalNet's control API answers loopback clients only, key or not.
    remote = httpx2.ASGITransport(app=app, client=("192.0.2.7", 40000))
    async with httpx2.AsyncClient(transport=remote, base_url="http://localnet") as client:
        reply = await client.get(LEDGER_PATH, headers=auth)
        assert reply.status_code == 403
    ipv6 = httpx2.ASGITransport(app=app, client=("::1", 40000))
    async with httpx2.AsyncClient(transport=ipv6, base_url="http://localnet") as client:
        assert (await client.get(LEDGER_PATH, headers=auth)).status_code == 200


def test_a_document_says_whether_it_was_honest() -> None:
    entry: Json = {"debitNoteId": "d1", "agreementId": "a1", "status": "RECEIVED"}
    assert _document(entry, "debitNoteId", {})["honest"] is True
    falsified = {"d1": types.SimpleNamespace(honest=False)}
    assert _document(entry, "debitNoteId", falsified) == {
        "id": "d1",
        "agreementId": "a1",
        "status": "RECEIVED",
        "honest": False,
    }
    # What the payment state says itself wins over the document's attribute.
    assert _document({**entry, "honest": True}, "debitNoteId", falsified)["honest"] is True


async def test_requests_served_are_counted_by_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_localnet([]) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with YagnaClient(config, transport=net.transport()) as yagna:
            await yagna.market.get_demands()
            await yagna.market.get_demands()
            with pytest.raises(Exception, match="404"):
                await yagna.market.get_agreement("no-such-agreement")
    assert net.requests_served == {"get_demands": 2, "get_agreement": 1}
