"""LocalNet against the daemon's OpenAPI specs: every request a requestor sends through the flows
below is checked with :func:`validate_request` and every reply the emulator gives with
:func:`validate_response` (the specs as patched for the real daemon's deviations,
docs/daemon-notes.md §9 and §10). The flows reach every requestor-side operation, success and
error paths (401 plain text, 400, 404, 408, 409, 410, 500, 501 where the daemon gives them);
operations the emulator does not serve yet are listed in :data:`NOT_EMULATED`, and a test fails
when an operation is neither reached nor listed there.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import trio
import trio.testing

from golem_trio.localnet import LocalNet, Reply, open_localnet, scripted_runtime_factory
from golem_trio.localnet.providers import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    ProviderSpec,
)

# the contract tests' spec support, as tests/localnet/test_payment.py imports it
_CONTRACT = str(Path(__file__).resolve().parents[1] / "yagna")
if _CONTRACT not in sys.path:
    sys.path.insert(0, _CONTRACT)
from contract.openapi_support import (  # noqa: E402
    load_specs,
    requestor_operations,
    validate_response,
)
from contract.validating import (  # noqa: E402
    ValidatingTransport,
    call,
    operation_key,
)

Json = Any

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
BASE = "http://127.0.0.1:7465"
M = "/market-api/v1"
A = "/activity-api/v1"
P = "/payment-api/v1"

#: Well-formed ids nobody owns (docs/daemon-notes.md §1 id shapes).
UNKNOWN_SUB = "0" * 32 + "-" + "0" * 64
UNKNOWN_PROPOSAL = "R-" + "0" * 64
UNKNOWN_AGREEMENT = "0" * 64
UNKNOWN_HEX_ID = "0" * 32
UNKNOWN_UUID = "00000000-0000-0000-0000-000000000000"

#: Emulator replies that do not match the specs and are not daemon deviations either; each has
#: a strict xfail test below, so fixing the emulator makes that test (and this entry) go.
DEVIATIONS: dict[str, str] = {}

#: A JSON ``null`` body: "no reason" for reject, cancel and terminate (docs/daemon-notes.md §2.3).
NULL_REASON: dict[str, Any] = {
    "content": b"null",
    "headers": {"Content-Type": "application/json"},
}

_NO_TCP_LISTING = (
    "yagna 0.17.6 does not serve the connection listing (it answers 404 with an empty body), "
    "and neither does LocalNet"
)

#: Requestor-side operations checked by other tests, keyed by (method, path template): a
#: websocket cannot go through the in-process transport.
ELSEWHERE: dict[tuple[str, str], str] = {
    ("GET", "/net-api/v1/net/{networkId}/tcp/{ip}/{port}"): "websocket: tests/localnet/test_vpn.py",
    ("GET", "/net-api/v2/vpn/net/{networkId}/tcp/{ip}/{port}"): (
        "websocket: tests/localnet/test_vpn.py"
    ),
}

#: Requestor-side operations the emulator does not serve yet, keyed by (method, path template).
NOT_EMULATED: dict[tuple[str, str], str] = {
    ("POST", f"{M}/scan"): "offer scanning is not emulated (optional iterator, §2.1)",
    ("GET", f"{M}/scan/{{subscriptionId}}/events"): "offer scanning is not emulated (§2.1)",
    ("DELETE", f"{M}/scan/{{subscriptionId}}"): "offer scanning is not emulated (§2.1)",
    (
        "POST",
        f"{M}/demands/{{subscriptionId}}/propertyQuery/{{queryId}}",
    ): "property queries are never produced by the daemon (§2.2), so there is none to answer",
    ("POST", f"{A}/activity/{{activityId}}/encrypted"): "SGX only; ignored (§4.1)",
    ("GET", "/net-api/v1/net/{networkId}/tcp"): _NO_TCP_LISTING,
    ("GET", "/net-api/v2/vpn/net/{networkId}/tcp"): _NO_TCP_LISTING,
}

#: (operation, status) pairs the in-process flow must reach: the daemon's documented answers.
EXPECTED: frozenset[tuple[str, int]] = frozenset(
    {
        ("GET /me", 200),
        ("GET /me", 401),
        ("GET /version/get", 200),
        ("POST /market-api/v1/demands", 201),
        ("GET /market-api/v1/demands", 200),
        ("GET /market-api/v1/demands", 401),
        ("DELETE /market-api/v1/demands/{subscriptionId}", 204),
        ("DELETE /market-api/v1/demands/{subscriptionId}", 404),
        ("GET /market-api/v1/demands/{subscriptionId}/events", 200),
        ("GET /market-api/v1/demands/{subscriptionId}/events", 400),
        ("GET /market-api/v1/demands/{subscriptionId}/events", 404),
        ("GET /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}", 200),
        ("GET /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}", 400),
        ("GET /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}", 404),
        ("POST /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}", 200),
        ("POST /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}/reject", 204),
        ("POST /market-api/v1/demands/{subscriptionId}/proposals/{proposalId}/reject", 404),
        ("POST /market-api/v1/agreements", 200),
        ("POST /market-api/v1/agreements", 400),
        ("POST /market-api/v1/agreements", 409),
        ("GET /market-api/v1/agreements", 200),
        ("GET /market-api/v1/agreements/{agreementId}", 200),
        ("GET /market-api/v1/agreements/{agreementId}", 404),
        ("POST /market-api/v1/agreements/{agreementId}/confirm", 204),
        ("POST /market-api/v1/agreements/{agreementId}/wait", 204),
        ("POST /market-api/v1/agreements/{agreementId}/wait", 400),
        ("POST /market-api/v1/agreements/{agreementId}/wait", 408),
        ("POST /market-api/v1/agreements/{agreementId}/wait", 410),
        ("POST /market-api/v1/agreements/{agreementId}/cancel", 200),
        ("POST /market-api/v1/agreements/{agreementId}/terminate", 200),
        ("POST /market-api/v1/agreements/{agreementId}/terminate", 409),
        ("POST /market-api/v1/agreements/{agreementId}/terminate", 410),
        ("GET /market-api/v1/agreements/{agreementId}/terminate/reason", 200),
        ("GET /market-api/v1/agreements/{agreementId}/terminate/reason", 404),
        ("GET /market-api/v1/agreementEvents", 200),
        ("GET /activity-api/v1/activity", 200),
        ("GET /activity-api/v1/activity", 401),
        ("POST /activity-api/v1/activity", 200),
        ("POST /activity-api/v1/activity", 404),
        ("POST /activity-api/v1/activity/{activityId}/exec", 200),
        ("POST /activity-api/v1/activity/{activityId}/exec", 400),
        ("GET /activity-api/v1/activity/{activityId}/exec/{batchId}", 200),
        ("GET /activity-api/v1/activity/{activityId}/exec/{batchId}", 400),
        ("GET /activity-api/v1/activity/{activityId}/exec/{batchId}", 404),
        ("GET /activity-api/v1/activity/{activityId}/exec/{batchId}", 408),
        ("GET /activity-api/v1/activity/{activityId}/agreement", 200),
        ("DELETE /activity-api/v1/activity/{activityId}", 200),
        ("GET /activity-api/v1/activity/{activityId}/state", 200),
        ("GET /activity-api/v1/activity/{activityId}/state", 500),
        ("GET /activity-api/v1/activity/{activityId}/usage", 200),
        ("GET /activity-api/v1/activity/{activityId}/command", 200),
        ("GET /activity-api/v1/activity/{activityId}/command", 404),
        ("GET /payment-api/v1/debitNotes", 200),
        ("GET /payment-api/v1/debitNotes/{debitNoteId}", 200),
        ("GET /payment-api/v1/debitNotes/{debitNoteId}", 404),
        ("GET /payment-api/v1/debitNotes/{debitNoteId}/payments", 200),
        ("GET /payment-api/v1/debitNoteEvents", 200),
        ("GET /payment-api/v1/invoices", 200),
        ("POST /payment-api/v1/invoices", 400),
        ("GET /payment-api/v1/invoices/{invoiceId}", 200),
        ("GET /payment-api/v1/invoices/{invoiceId}", 404),
        ("GET /payment-api/v1/invoices/{invoiceId}/payments", 200),
        ("GET /payment-api/v1/invoiceEvents", 200),
        ("POST /payment-api/v1/debitNotes/{debitNoteId}/accept", 200),
        ("POST /payment-api/v1/debitNotes/{debitNoteId}/accept", 400),
        ("POST /payment-api/v1/debitNotes/{debitNoteId}/reject", 501),
        ("POST /payment-api/v1/invoices/{invoiceId}/accept", 200),
        ("POST /payment-api/v1/invoices/{invoiceId}/accept", 400),
        ("POST /payment-api/v1/invoices/{invoiceId}/reject", 200),
        ("POST /payment-api/v1/invoices/{invoiceId}/reject", 400),
        ("GET /payment-api/v1/allocations", 200),
        ("GET /payment-api/v1/allocations", 401),
        ("POST /payment-api/v1/allocations", 201),
        ("POST /payment-api/v1/allocations", 400),
        ("GET /payment-api/v1/allocations/{allocationId}", 200),
        ("GET /payment-api/v1/allocations/{allocationId}", 404),
        ("GET /payment-api/v1/allocations/{allocationId}", 410),
        ("PUT /payment-api/v1/allocations/{allocationId}", 200),
        ("DELETE /payment-api/v1/allocations/{allocationId}", 200),
        ("DELETE /payment-api/v1/allocations/{allocationId}", 410),
        ("GET /payment-api/v1/payments", 200),
        ("GET /payment-api/v1/payments/{paymentId}", 200),
        ("GET /payment-api/v1/payments/{paymentId}", 404),
        ("GET /payment-api/v1/payments/status", 200),
        ("GET /payment-api/v1/requestorAccounts", 200),
        ("GET /payment-api/v1/demandDecorations", 200),
        ("GET /payment-api/v1/demandDecorations", 404),
        ("GET /payment-api/v1/allocations/{allocationId}/expenditures", 200),
    }
)


def demand_body(net: LocalNet, decoration: Json, **overrides: Any) -> Json:
    expiration = net.daemon.clock.now() + dt.timedelta(hours=1)
    properties = {
        "golem.srv.comp.expiration": int(expiration.timestamp() * 1000),
        "golem.node.debug.subnet": "public",
        "golem.srv.caps.multi-activity": True,
        ACCEPT_TIMEOUT: 120,
        DEBIT_NOTE_INTERVAL: 120,
        PAYMENT_TIMEOUT: 18000,
        **{item["key"]: item["value"] for item in decoration["properties"]},
        **overrides,
    }
    constraints = "(&(golem.node.debug.subnet=public)" + "".join(decoration["constraints"]) + ")"
    return {"properties": properties, "constraints": constraints}


async def collect_offers(
    client: httpx2.AsyncClient, sub: str, enough: Callable[[list[Json]], bool]
) -> list[Json]:
    events: list[Json] = []
    for _ in range(20):
        reply = await call(
            client, "GET", f"{M}/demands/{sub}/events", 200, params={"timeout": 5, "maxEvents": 10}
        )
        events += reply.json()
        if enough(events):
            return events
    raise AssertionError(f"not enough negotiation events: {events}")


async def poll_events(
    client: httpx2.AsyncClient, path: str, after: str | None, kind: str, **kwargs: Any
) -> Json:
    """The first event of ``kind`` after ``after`` from a persistent event poll."""
    for _ in range(20):
        params: dict[str, Any] = {"timeout": 60}
        if after is not None:
            params["afterTimestamp"] = after
        events = (await call(client, "GET", path, 200, params=params, **kwargs)).json()
        for event in events:
            if event["eventType"] == kind:
                return event
        if events:
            after = events[-1]["eventDate"]
    raise AssertionError(f"no {kind} from {path}")


ALPHA = ProviderSpec(name="alpha", price_start=Decimal("0.01"))
SLOW = ProviderSpec(name="slow", approval_delay=60.0)


def scripts() -> dict[str, Callable[[Sequence[str]], Reply]]:
    return {
        "/bin/echo": lambda args: Reply(stdout=" ".join(args) + "\n"),
        "/bin/sleep": lambda args: Reply(duration_s=float(args[0])),
    }


async def test_every_reply_matches_the_specs(autojump_clock: trio.testing.MockClock) -> None:
    """A requestor's whole life on LocalNet, success and error paths, every exchange
    validated; then every requestor operation is reached or listed in NOT_EMULATED."""
    async with open_localnet(
        [ALPHA, SLOW], epoch=EPOCH, runtime=scripted_runtime_factory(scripts())
    ) as net:
        transport = ValidatingTransport(net.transport())
        auth = {"Authorization": f"Bearer {net.app_key}"}
        async with (
            httpx2.AsyncClient(transport=transport, base_url=BASE, headers=auth) as client,
            httpx2.AsyncClient(transport=transport, base_url=BASE) as anon,
        ):
            await _identity(client, anon)
            allocation_id, decoration = await _allocation(client)
            await _life(net, client, allocation_id, decoration)
            await _release(client, allocation_id)
            for layout in ("/net-api/v1/net", "/net-api/v2/vpn/net"):
                await _net(client, layout, net.providers[0][0].node_id)
            await call(client, "GET", "/net-api/v2/net/status", 200)
        _check_coverage(transport.seen)


async def _identity(client: httpx2.AsyncClient, anon: httpx2.AsyncClient) -> None:
    me = (await call(client, "GET", "/me", 200)).json()
    assert me["identity"].startswith("0x")
    await call(anon, "GET", "/version/get", 200, deviation=True)  # DEVIATIONS["version"]
    # 401 is plain text (§9.9): no key, and an unknown key
    for path in ("/me", f"{M}/demands", f"{A}/activity", f"{P}/allocations"):
        reply = await call(anon, "GET", path, 401, invalid=True)
        assert reply.headers["content-type"].startswith("text/plain")
    await call(anon, "GET", "/me", 401, headers={"Authorization": "Bearer nope"})


async def _allocation(client: httpx2.AsyncClient) -> tuple[str, Json]:
    body = {"paymentPlatform": "erc20-holesky-tglm", "totalAmount": "10", "makeDeposit": False}
    allocation = (await call(client, "POST", f"{P}/allocations", 201, json=body)).json()
    allocation_id = allocation["allocationId"]
    await call(client, "POST", f"{P}/allocations", 400, invalid=True, json={"totalAmount": "x"})
    await call(client, "GET", f"{P}/allocations", 200)
    await call(client, "GET", f"{P}/allocations/{allocation_id}", 200)
    await call(client, "GET", f"{P}/allocations/{UNKNOWN_UUID}", 404)
    await call(client, "PUT", f"{P}/allocations/{allocation_id}", 200, json={"totalAmount": "20"})
    await call(client, "GET", f"{P}/allocations/{allocation_id}/expenditures", 200)
    await call(client, "GET", f"{P}/requestorAccounts", 200)
    decoration = (
        await call(
            client, "GET", f"{P}/demandDecorations", 200, params={"allocationIds": allocation_id}
        )
    ).json()
    await call(client, "GET", f"{P}/demandDecorations", 404, params={"allocationIds": UNKNOWN_UUID})
    return allocation_id, decoration


async def _life(
    net: LocalNet, client: httpx2.AsyncClient, allocation_id: str, decoration: Json
) -> None:
    alpha_id = net.providers[0][0].node_id
    slow_id = net.providers[1][0].node_id
    demand = demand_body(net, decoration)
    sub = (await call(client, "POST", f"{M}/demands", 201, json=demand)).json()
    await call(client, "GET", f"{M}/demands", 200)

    # --- negotiation ---
    def initial(events: list[Json]) -> dict[str, Json]:
        return {
            e["proposal"]["issuerId"]: e["proposal"]
            for e in events
            if e["eventType"] == "ProposalEvent" and e["proposal"]["state"] == "Initial"
        }

    offers = initial(await collect_offers(client, sub, lambda ev: len(initial(ev)) == 2))
    alpha_offer, slow_offer = offers[alpha_id], offers[slow_id]
    events_path = f"{M}/demands/{sub}/events"
    await call(client, "GET", events_path, 400, invalid=True, params={"maxEvents": 0})
    await call(client, "GET", f"{M}/demands/{UNKNOWN_SUB}/events", 404, params={"timeout": 0})
    proposals = f"{M}/demands/{sub}/proposals"
    await call(client, "GET", f"{proposals}/{alpha_offer['proposalId']}", 200)
    await call(client, "GET", f"{proposals}/bogus", 400, invalid=True)
    await call(client, "GET", f"{proposals}/{UNKNOWN_PROPOSAL}", 404)

    async def counter(offer: Json, body: Json) -> str:
        reply = await call(client, "POST", f"{proposals}/{offer['proposalId']}", 200, json=body)
        return str(reply.json())

    ours_a = await counter(alpha_offer, demand)
    ours_c = await counter(alpha_offer, demand)
    ours_b = await counter(slow_offer, demand)
    refused = await counter(alpha_offer, demand_body(net, decoration, **{ACCEPT_TIMEOUT: 5}))

    def answers(events: list[Json]) -> dict[str, Json]:
        found: dict[str, Json] = {}
        for e in events:
            if e["eventType"] == "ProposalEvent" and e["proposal"]["state"] == "Draft":
                found[e["proposal"]["prevProposalId"]] = e
            elif e["eventType"] == "ProposalRejectedEvent":
                found[e["proposalId"]] = e
        return found

    replies = answers(await collect_offers(client, sub, lambda ev: len(answers(ev)) == 4))
    assert replies[refused]["eventType"] == "ProposalRejectedEvent"
    draft_a, draft_b, draft_c = (
        replies[x]["proposal"]["proposalId"] for x in (ours_a, ours_b, ours_c)
    )

    valid_to = (net.daemon.clock.now() + dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z")

    async def create_agreement(proposal_id: str, expect: int) -> str:
        body = {"proposalId": proposal_id, "validTo": valid_to}
        return str((await call(client, "POST", f"{M}/agreements", expect, json=body)).json())

    await create_agreement(alpha_offer["proposalId"], 400)  # Initial (§9.1)
    agreement_a = await create_agreement(draft_a, 200)
    await create_agreement(draft_a, 409)  # already promoted

    # --- agreement A: approved, one activity, billed, terminated, invoice accepted ---
    agr = f"{M}/agreements"
    await call(client, "GET", f"{agr}/{agreement_a}", 200)
    await call(client, "GET", f"{agr}/{UNKNOWN_AGREEMENT}", 404)
    await call(client, "POST", f"{agr}/{agreement_a}/wait", 400, params={"timeout": 1})
    await call(client, "POST", f"{agr}/{agreement_a}/terminate", 409, **NULL_REASON)
    await call(client, "POST", f"{agr}/{agreement_a}/confirm", 204)
    await call(client, "POST", f"{agr}/{agreement_a}/wait", 204, params={"timeout": 15})
    await call(client, "GET", agr, 200)
    approved = await poll_events(client, f"{M}/agreementEvents", None, "AgreementApprovedEvent")
    act = await _activity(client, agreement_a)
    await _debit_note(client, allocation_id)
    await call(client, "DELETE", act, 200)
    state = (await call(client, "GET", f"{act}/state", 200)).json()
    assert state["state"][0] == "Terminated", state
    reason = {"message": "Successfully finished all work", "golem.requestor.code": "Success"}
    await call(client, "POST", f"{agr}/{agreement_a}/terminate", 200, json=reason)
    await call(client, "POST", f"{agr}/{agreement_a}/terminate", 410, json=reason)
    await call(client, "GET", f"{agr}/{agreement_a}/terminate/reason", 200)
    await poll_events(
        client, f"{M}/agreementEvents", approved["eventDate"], "AgreementTerminatedEvent"
    )
    received = await _invoice(client, allocation_id, None, accept=True)

    # --- agreement B: slow approval (408), activity in object form, invoice rejected ---
    agreement_b = await create_agreement(draft_b, 200)
    await call(client, "POST", f"{agr}/{agreement_b}/confirm", 204)
    await call(client, "POST", f"{agr}/{agreement_b}/wait", 408, params={"timeout": 1})
    await call(client, "POST", f"{agr}/{agreement_b}/wait", 204, params={"timeout": 120})
    created = await call(client, "POST", f"{A}/activity", 200, json={"agreementId": agreement_b})
    activity_b = created.json()["activityId"]
    await call(client, "DELETE", f"{A}/activity/{activity_b}", 200)
    await call(client, "POST", f"{agr}/{agreement_b}/terminate", 200, json=reason)
    await _invoice(client, allocation_id, received["eventDate"], accept=False)

    # --- agreement C: cancelled before confirmation ---
    agreement_c = await create_agreement(draft_c, 200)
    await call(client, "GET", f"{agr}/{agreement_c}/terminate/reason", 404)
    await call(client, "POST", f"{agr}/{agreement_c}/cancel", 200, json={"message": "changed"})
    await call(client, "POST", f"{agr}/{agreement_c}/wait", 410, params={"timeout": 1})
    await call(client, "POST", f"{agr}/{agreement_c}/terminate", 410, **NULL_REASON)

    # --- end of the subscription ---
    reject = {"message": "no longer needed"}
    await call(client, "POST", f"{proposals}/{alpha_offer['proposalId']}/reject", 204, json=reject)
    await call(client, "POST", f"{proposals}/{UNKNOWN_PROPOSAL}/reject", 404, json=reject)
    await call(client, "DELETE", f"{M}/demands/{sub}", 204)
    await call(client, "DELETE", f"{M}/demands/{sub}", 404)
    await call(client, "GET", events_path, 404, params={"timeout": 0})


async def _activity(client: httpx2.AsyncClient, agreement_id: str) -> str:
    """Create an activity on the agreement and run two batches; its path."""
    activity_id = (await call(client, "POST", f"{A}/activity", 200, json=agreement_id)).json()
    await call(client, "POST", f"{A}/activity", 404, json=UNKNOWN_AGREEMENT)
    act = f"{A}/activity/{activity_id}"
    await call(client, "GET", f"{A}/activity", 200, params={"agreementId": agreement_id})
    await call(client, "GET", f"{act}/agreement", 200)
    await call(client, "GET", f"{act}/state", 200)
    await call(client, "GET", f"{A}/activity/{UNKNOWN_HEX_ID}/state", 500)  # §9.8

    async def exec_(commands: list[Json]) -> str:
        body = {"text": json.dumps(commands)}
        return str((await call(client, "POST", f"{act}/exec", 200, json=body)).json())

    batch = await exec_([{"deploy": {}}, {"start": {"args": []}}])
    results = (await call(client, "GET", f"{act}/exec/{batch}", 200, params={"timeout": 10})).json()
    assert results[-1]["isBatchFinished"], results
    capture = {"stdout": {"atEnd": {"format": "str"}}, "stderr": {"atEnd": {"format": "str"}}}
    batch = await exec_(
        [
            {"run": {"entry_point": "/bin/echo", "args": ["hello"], "capture": capture}},
            {"run": {"entry_point": "/bin/sleep", "args": ["30"]}},
        ]
    )
    await call(client, "GET", f"{act}/exec/{batch}", 200, params={"commandIndex": 0, "timeout": 5})
    await trio.sleep(1)  # the sleeper is running now
    await call(client, "GET", f"{act}/command", 200)
    await call(client, "GET", f"{act}/exec/{batch}", 408, params={"commandIndex": 1, "timeout": 1})
    await call(client, "GET", f"{act}/exec/{batch}", 400, params={"commandIndex": 9})
    results = (await call(client, "GET", f"{act}/exec/{batch}", 200, params={"timeout": 60})).json()
    assert [r["result"] for r in results] == ["Ok", "Ok"], results
    await call(client, "GET", f"{act}/command", 404)
    await call(client, "GET", f"{act}/exec/{UNKNOWN_HEX_ID}", 404)
    await call(client, "POST", f"{act}/exec", 400, invalid=True, json={"text": "[{}]"})
    await call(client, "GET", f"{act}/usage", 200)
    return act


async def _debit_note(client: httpx2.AsyncClient, allocation_id: str) -> None:
    event = await poll_events(client, f"{P}/debitNoteEvents", None, "DebitNoteReceivedEvent")
    note_id = event["debitNoteId"]
    await call(client, "GET", f"{P}/debitNotes", 200)
    note = (await call(client, "GET", f"{P}/debitNotes/{note_id}", 200)).json()
    await call(client, "GET", f"{P}/debitNotes/{UNKNOWN_UUID}", 404)
    path = f"{P}/debitNotes/{note_id}"
    wrong = {"totalAmountAccepted": "1000", "allocationId": allocation_id}
    await call(client, "POST", f"{path}/accept", 400, json=wrong)
    right = {"totalAmountAccepted": note["totalAmountDue"], "allocationId": allocation_id}
    await call(client, "POST", f"{path}/accept", 200, json=right)
    rejection = {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}
    await call(client, "POST", f"{path}/reject", 501, json=rejection)  # §9.7
    await call(client, "GET", f"{path}/payments", 200)


async def _invoice(
    client: httpx2.AsyncClient, allocation_id: str, after: str | None, *, accept: bool
) -> Json:
    headers = {"X-Requestor-Events": "RECEIVED,ACCEPTED"}
    event = await poll_events(
        client, f"{P}/invoiceEvents", after, "InvoiceReceivedEvent", headers=headers
    )
    invoice_id = event["invoiceId"]
    await call(client, "GET", f"{P}/invoices", 200)
    invoice = (await call(client, "GET", f"{P}/invoices/{invoice_id}", 200)).json()
    path = f"{P}/invoices/{invoice_id}"
    if accept:
        await call(client, "GET", f"{P}/invoices/{UNKNOWN_UUID}", 404)
        wrong = {"totalAmountAccepted": "1000", "allocationId": allocation_id}
        await call(client, "POST", f"{path}/accept", 400, json=wrong)
        right = {"totalAmountAccepted": invoice["amount"], "allocationId": allocation_id}
        await call(client, "POST", f"{path}/accept", 200, json=right)
        late = {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}
        await call(client, "POST", f"{path}/reject", 400, json=late)  # already accepted
        await call(client, "GET", f"{path}/payments", 200)
        # the requestor cannot issue invoices for an agreement it does not provide (the body is
        # the daemon's NewInvoice: the spec's Invoice as a request body needs read-only fields)
        issue = {
            "agreementId": invoice["agreementId"],
            "amount": "1",
            "paymentDueDate": invoice["paymentDueDate"],
        }
        await call(client, "POST", f"{P}/invoices", 400, invalid=True, json=issue)
        payments = (await call(client, "GET", f"{P}/payments", 200, params={"timeout": 5})).json()
        assert payments, "accepted documents were paid"
        await call(client, "GET", f"{P}/payments/{payments[0]['paymentId']}", 200)
        await call(client, "GET", f"{P}/payments/{UNKNOWN_UUID}", 404)
        await call(client, "GET", f"{P}/payments/status", 200)
        await call(client, "GET", f"{P}/allocations/{allocation_id}/expenditures", 200)
    else:
        rejection = {
            "rejectionReason": "BAD_SERVICE",
            "totalAmountAccepted": "0",
            "message": "did not work",
        }
        await call(client, "POST", f"{path}/reject", 200, json=rejection)
    return event


async def _net(client: httpx2.AsyncClient, layout: str, provider_id: str) -> None:
    """The VPN calls of a service with a network (docs/daemon-notes.md §6), in one layout."""
    body = {"ip": "192.168.8.0", "mask": "255.255.255.0", "gateway": "192.168.8.1"}
    network = (await call(client, "POST", layout, 200, json=body)).json()
    path = f"{layout}/{network['id']}"
    await call(client, "GET", layout, 200)
    await call(client, "GET", path, 200)
    await call(client, "GET", f"{layout}/{UNKNOWN_HEX_ID}", 404)
    await call(client, "POST", f"{path}/addresses", 200, json={"ip": "192.168.8.7"})
    await call(client, "GET", f"{path}/addresses", 200)
    node = {"id": provider_id, "ip": "192.168.8.2"}
    await call(client, "POST", f"{path}/nodes", 200, json=node)
    await call(client, "GET", f"{path}/nodes", 200)
    await call(client, "DELETE", f"{path}/nodes/{provider_id}", 200)
    await call(client, "DELETE", path, 200)


async def _release(client: httpx2.AsyncClient, allocation_id: str) -> None:
    await call(client, "DELETE", f"{P}/allocations/{allocation_id}", 200)
    await call(client, "DELETE", f"{P}/allocations/{allocation_id}", 410)
    await call(client, "GET", f"{P}/allocations/{allocation_id}", 410)


def _check_coverage(seen: set[tuple[str, int]]) -> None:
    reached = {op for op, _ in seen}
    missing = [
        str(op)
        for op in requestor_operations()
        if operation_key(op) not in reached
        and (op.method, op.path) not in NOT_EMULATED
        and (op.method, op.path) not in ELSEWHERE
    ]
    assert not missing, "requestor operations neither reached nor listed in NOT_EMULATED:\n" + (
        "\n".join(missing)
    )
    assert not EXPECTED - seen, f"expected exchanges not reached: {sorted(EXPECTED - seen)}"
    served = sorted(key for key in NOT_EMULATED if f"{key[0]} {key[1]}" in reached)
    assert not served, f"listed in NOT_EMULATED but served: {served}"


def test_not_emulated_lists_only_requestor_operations() -> None:
    keys = {(op.method, op.path) for op in requestor_operations()}
    assert set(NOT_EMULATED) <= keys, sorted(set(NOT_EMULATED) - keys)


async def test_not_emulated_operations_are_not_served() -> None:
    """Each NOT_EMULATED operation really is missing (404 or 405 from the router), so the table
    has to shrink when the emulator learns one."""
    specs = load_specs()
    async with open_localnet([ALPHA], epoch=EPOCH) as net:
        auth = {"Authorization": f"Bearer {net.app_key}"}
        async with httpx2.AsyncClient(
            transport=net.transport(), base_url=BASE, headers=auth
        ) as client:
            for method, template in NOT_EMULATED:
                path = template.format(
                    subscriptionId=UNKNOWN_SUB,
                    queryId="q-1",
                    activityId=UNKNOWN_HEX_ID,
                    networkId=UNKNOWN_HEX_ID,
                    nodeId="0x" + "ab" * 20,
                    ip="192.168.0.2",
                    port="80",
                )
                op = specs.find(method, path)
                assert (op.method, op.path) == (method, template)
                reply = await client.request(method, path)
                assert reply.status_code in (404, 405), (method, template, reply.status_code)


async def test_version_reply_matches_the_spec() -> None:
    async with open_localnet([], epoch=EPOCH) as net:
        transport = ValidatingTransport(net.transport())
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
            await call(client, "GET", "/version/get", 200)


async def test_exec_event_stream_matches_the_specs() -> None:
    """The SSE exec stream (docs/daemon-notes.md §4.5), over a real socket: the in-process
    transport buffers whole replies and this one never ends. Every frame must be a
    RuntimeEvent."""
    streamer = ProviderSpec(name="streamer", tick=0.1)
    runtime = scripted_runtime_factory(scripts())
    with trio.fail_after(15):
        async with open_localnet([streamer], runtime=runtime, serve=True) as net:
            assert net.url is not None
            transport = ValidatingTransport(httpx2.AsyncHTTPTransport())
            auth = {"Authorization": f"Bearer {net.app_key}"}
            async with httpx2.AsyncClient(
                transport=transport, base_url=net.url, headers=auth
            ) as client:
                act, batch = await _streamed_batch(net, client)
                request = client.build_request(
                    "GET", f"{act}/exec/{batch}", headers={"Accept": "text/event-stream"}
                )
                response = await client.send(request, stream=True)
                try:
                    assert response.status_code == 200, response.status_code
                    text = await _read_stream(response, last_index=1)
                finally:
                    await response.aclose()
            content_type = response.headers["content-type"]
            assert content_type.startswith("text/event-stream"), content_type
            whole = httpx2.Response(
                200, headers={"content-type": content_type}, content=text.encode(), request=request
            )
            op = validate_response(request, whole)
            assert op.operation_id == "getExecBatchResults"
            events = [
                json.loads(line[len("data:") :])
                for line in text.splitlines()
                if line.startswith("data:")
            ]
            kinds = [(e["index"], next(iter(e["kind"]))) for e in events]
            assert (1, "started") in kinds, kinds
            assert (1, "finished") in kinds, kinds
            assert {"stdout": "hello\n"} in [e["kind"] for e in events], events


async def _streamed_batch(net: LocalNet, client: httpx2.AsyncClient) -> tuple[str, str]:
    """Sign an agreement with the one provider, deploy and start an activity, and send a
    two-command batch (a short sleep, then a run whose stdout is streamed); its
    (activity path, batch id)."""
    expiration = net.daemon.clock.now() + dt.timedelta(hours=1)
    demand = {
        "properties": {
            "golem.srv.comp.expiration": int(expiration.timestamp() * 1000),
            "golem.node.debug.subnet": "public",
            ACCEPT_TIMEOUT: 120,
        },
        "constraints": "(golem.node.debug.subnet=public)",
    }
    sub = (await call(client, "POST", f"{M}/demands", 201, json=demand)).json()
    (offer,) = await collect_offers(client, sub, lambda events: bool(events))
    proposals = f"{M}/demands/{sub}/proposals"
    await call(client, "POST", f"{proposals}/{offer['proposal']['proposalId']}", 200, json=demand)
    (draft,) = await collect_offers(client, sub, lambda events: bool(events))
    valid_to = (expiration + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    body = {"proposalId": draft["proposal"]["proposalId"], "validTo": valid_to}
    agreement_id = (await call(client, "POST", f"{M}/agreements", 200, json=body)).json()
    await call(client, "POST", f"{M}/agreements/{agreement_id}/confirm", 204)
    await call(client, "POST", f"{M}/agreements/{agreement_id}/wait", 204, params={"timeout": 5})
    activity_id = (await call(client, "POST", f"{A}/activity", 200, json=agreement_id)).json()
    act = f"{A}/activity/{activity_id}"
    setup = {"text": json.dumps([{"deploy": {}}, {"start": {"args": []}}])}
    batch = (await call(client, "POST", f"{act}/exec", 200, json=setup)).json()
    await call(client, "GET", f"{act}/exec/{batch}", 200, params={"timeout": 5})
    capture = {"stdout": {"stream": {"format": "str"}}}
    script = [
        {"run": {"entry_point": "/bin/sleep", "args": ["0.5"]}},
        {"run": {"entry_point": "/bin/echo", "args": ["hello"], "capture": capture}},
    ]
    body = {"text": json.dumps(script)}
    batch = (await call(client, "POST", f"{act}/exec", 200, json=body)).json()
    return act, str(batch)


async def _read_stream(response: httpx2.Response, last_index: int) -> str:
    """The stream's text up to the first ``:ping`` after the ``finished`` event of
    ``last_index`` (the daemon keeps the stream open with pings)."""
    text = ""
    finished = False
    async for chunk in response.aiter_text():
        text += chunk
        for block in text.split("\n\n"):
            for line in block.splitlines():
                if line.startswith("data:"):
                    event = json.loads(line[len("data:") :])
                    finished = finished or (
                        event["index"] == last_index and "finished" in event["kind"]
                    )
        if finished and text.rstrip().endswith(":ping"):
            return text
    raise AssertionError(f"the stream ended: {text!r}")
