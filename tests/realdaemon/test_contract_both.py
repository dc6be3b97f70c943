"""One requestor flow, run against both LocalNet backends: the emulator (served on loopback)
and the real yagna daemon driven by the same simulated provider. Every request and reply is
checked against the daemon's specs (as patched for the real daemon's deviations), and the two
backends must give the same answers: the same (operation, status) pairs and the same shapes.

Where they differ, the difference is listed in :data:`DIFFERENCES` with its reason (and in
docs/localnet.md); the test pins each one, so a change on either side shows up here.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import trio

from golem_trio.localnet import ProviderSpec, Reply, open_localnet, scripted_runtime_factory
from golem_trio.localnet._yagna_backend import open_yagna_localnet

_CONTRACT = str(Path(__file__).resolve().parents[1] / "yagna")
if _CONTRACT not in sys.path:
    sys.path.insert(0, _CONTRACT)
from contract.validating import ValidatingTransport, call  # noqa: E402

Json = Any
M = "/market-api/v1"
A = "/activity-api/v1"
P = "/payment-api/v1"
PLATFORM = "erc20-holesky-tglm"
UNKNOWN_AGREEMENT = "0" * 64
UNKNOWN_UUID = "00000000-0000-0000-0000-000000000000"
DEADLINE = 90.0

#: (operation, status) pairs only one backend answers, and why. Key: the backend that answers.
DIFFERENCES: dict[str, dict[tuple[str, int], str]] = {
    "yagna": {
        (f"POST {M}/demands/{{subscriptionId}}/proposals/{{proposalId}}", 400): (
            "the real daemon checks a counter-proposal against the offer's constraints and "
            "refuses a mismatch at once (Mismatched constraints); the emulator passes it on "
            "and the provider rejects it with a ProposalRejectedEvent"
        ),
        (f"GET {P}/allocations/{{allocationId}}", 404): "see the emulator's 410 below",
    },
    "emulator": {
        (f"GET {P}/allocations/{{allocationId}}", 410): (
            "a released allocation: the emulator answers 410 as DAEMON-NOTES documents; yagna "
            "0.17.6 answers 404 once it was released with DELETE"
        ),
    },
}

PROVIDER = ProviderSpec(name="contract", debit_note_interval=2, tick=0.25)


def runtime() -> Callable[..., Any]:
    return scripted_runtime_factory({"/bin/echo": lambda args: Reply(stdout=" ".join(args))})


@asynccontextmanager
async def backend(name: str) -> AsyncIterator[tuple[str, str]]:
    """``(url, requestor app key)`` of a fresh LocalNet with one provider."""
    if name == "emulator":
        async with open_localnet([PROVIDER], runtime=runtime(), serve=True) as net:
            assert net.url is not None
            yield net.url, net.app_key
    else:
        async with open_yagna_localnet([PROVIDER], runtime=runtime()) as real:
            yield real.url, real.app_key


async def events_until(
    client: httpx2.AsyncClient, path: str, kind: str, *, after: str | None = None
) -> Json:
    """Poll a persistent event feed until an event of ``kind`` comes; that event."""
    while True:
        params: dict[str, Any] = {"timeout": 2}
        if after is not None:
            params["afterTimestamp"] = after
        events = (await call(client, "GET", path, 200, params=params)).json()
        for event in events:
            if event["eventType"] == kind:
                return event
        if events:
            after = events[-1]["eventDate"]


async def negotiation_event(client: httpx2.AsyncClient, sub: str, state: str) -> Json:
    while True:
        reply = await call(
            client, "GET", f"{M}/demands/{sub}/events", 200, params={"timeout": 2, "maxEvents": 10}
        )
        for event in reply.json():
            if event.get("proposal", {}).get("state") == state:
                return event


async def flow(url: str, app_key: str) -> set[tuple[str, int]]:
    """The requestor's life on one backend; every (operation, status) pair it reached."""
    transport = ValidatingTransport(httpx2.AsyncHTTPTransport())
    auth = {"Authorization": f"Bearer {app_key}"}
    async with httpx2.AsyncClient(
        base_url=url, transport=transport, headers=auth, timeout=30
    ) as client:
        # Identity and version; a request without the key.
        await call(client, "GET", "/me", 200)
        await call(client, "GET", "/me", 401, headers={"Authorization": ""}, invalid=True)
        await call(client, "GET", "/version/get", 200)

        # Allocation and demand decorations.
        allocation = (
            await call(
                client,
                "POST",
                f"{P}/allocations",
                201,
                json={"totalAmount": "5", "paymentPlatform": PLATFORM},
            )
        ).json()
        allocation_id = allocation["allocationId"]
        await call(client, "GET", f"{P}/allocations/{allocation_id}", 200)
        decoration = (
            await call(
                client,
                "GET",
                f"{P}/demandDecorations",
                200,
                params={"allocationIds": allocation_id},
            )
        ).json()

        # Demand, offer, counter, draft, agreement.
        expiration = int((time.time() + 1800) * 1000)
        properties = {
            "golem.srv.comp.expiration": expiration,
            "golem.node.debug.subnet": "public",
            "golem.com.payment.debit-notes.accept-timeout?": 120,
            "golem.com.scheme.payu.debit-note.interval-sec?": 2,
            **{item["key"]: item["value"] for item in decoration["properties"]},
        }
        constraints = (
            "(&(golem.node.debug.subnet=public)" + "".join(decoration["constraints"]) + ")"
        )
        demand = {"properties": properties, "constraints": constraints}
        sub = (await call(client, "POST", f"{M}/demands", 201, json=demand)).json()
        await call(client, "GET", f"{M}/demands", 200)
        offer = (await negotiation_event(client, sub, "Initial"))["proposal"]
        counter = {
            "properties": {**properties, "golem.com.payment.chosen-platform": PLATFORM},
            "constraints": constraints,
        }
        await call(
            client, "POST", f"{M}/demands/{sub}/proposals/{offer['proposalId']}", 200, json=counter
        )
        draft = (await negotiation_event(client, sub, "Draft"))["proposal"]
        await call(client, "GET", f"{M}/demands/{sub}/proposals/{draft['proposalId']}", 200)
        valid_to = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        agreement_id = (
            await call(
                client,
                "POST",
                f"{M}/agreements",
                200,
                json={"proposalId": draft["proposalId"], "validTo": valid_to},
            )
        ).json()
        await call(client, "POST", f"{M}/agreements/{agreement_id}/confirm", 204)
        await call(
            client, "POST", f"{M}/agreements/{agreement_id}/wait", 204, params={"timeout": 10}
        )
        await call(client, "GET", f"{M}/agreements/{agreement_id}", 200)
        await call(client, "GET", f"{M}/agreements/{UNKNOWN_AGREEMENT}", 404)
        await events_until(client, f"{M}/agreementEvents", "AgreementApprovedEvent")

        # Activity and a batch.
        activity_id = (
            await call(client, "POST", f"{A}/activity", 200, json={"agreementId": agreement_id})
        ).json()["activityId"]
        await call(client, "GET", f"{A}/activity/{activity_id}/state", 200)
        await call(client, "GET", f"{A}/activity/{activity_id}/agreement", 200)
        script = (
            '[{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "/bin/echo", '
            '"args": ["hello"], "capture": {"stdout": {"atEnd": {"format": "str"}}}}}]'
        )
        batch = (
            await call(
                client, "POST", f"{A}/activity/{activity_id}/exec", 200, json={"text": script}
            )
        ).json()
        while True:
            results = (
                await call(
                    client,
                    "GET",
                    f"{A}/activity/{activity_id}/exec/{batch}",
                    200,
                    params={"timeout": 2},
                )
            ).json()
            if results and results[-1]["isBatchFinished"]:
                break
        assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"]
        assert results[2]["stdout"] == "hello"
        await call(client, "GET", f"{A}/activity/{activity_id}/usage", 200)

        # A debit note, accepted.
        note_event = await events_until(client, f"{P}/debitNoteEvents", "DebitNoteReceivedEvent")
        note = (
            await call(client, "GET", f"{P}/debitNotes/{note_event['debitNoteId']}", 200)
        ).json()
        await call(
            client,
            "POST",
            f"{P}/debitNotes/{note['debitNoteId']}/accept",
            200,
            json={"totalAmountAccepted": note["totalAmountDue"], "allocationId": allocation_id},
        )
        await call(client, "GET", f"{P}/debitNotes/{UNKNOWN_UUID}", 404)
        # The daemon cannot reject debit notes (DAEMON-NOTES): 501.
        await client.post(
            f"{P}/debitNotes/{note['debitNoteId']}/reject",
            json={"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"},
        )
        await call(client, "GET", f"{P}/payments/status", 200, params={"network": "holesky"})
        await call(client, "GET", f"{P}/requestorAccounts", 200)
        await call(client, "GET", f"{P}/allocations/{allocation_id}/expenditures", 200)

        # The end: activity destroyed, agreement terminated, invoice accepted.
        await call(client, "DELETE", f"{A}/activity/{activity_id}", 200)
        await call(
            client,
            "POST",
            f"{M}/agreements/{agreement_id}/terminate",
            200,
            json={"message": "done", "golem.requestor.code": "Success"},
        )
        await call(client, "GET", f"{M}/agreements/{agreement_id}/terminate/reason", 200)
        # Ending it again, and waiting for it now: whatever each backend answers is compared.
        await client.post(
            f"{M}/agreements/{agreement_id}/terminate",
            json={"message": "again", "golem.requestor.code": "Success"},
        )
        await client.post(f"{M}/agreements/{agreement_id}/wait", params={"timeout": 1})
        await call(client, "GET", f"{A}/activity/{activity_id}/state", 200)
        invoice_event = await events_until(client, f"{P}/invoiceEvents", "InvoiceReceivedEvent")
        invoice = (
            await call(client, "GET", f"{P}/invoices/{invoice_event['invoiceId']}", 200)
        ).json()
        await call(
            client,
            "POST",
            f"{P}/invoices/{invoice['invoiceId']}/accept",
            200,
            json={"totalAmountAccepted": invoice["amount"], "allocationId": allocation_id},
        )
        await call(client, "GET", f"{P}/invoices", 200)
        await call(client, "DELETE", f"{M}/demands/{sub}", 204)

        # A counter the offer's constraints exclude (it expires sooner than the provider's
        # minimum): see DIFFERENCES.
        sub = (await call(client, "POST", f"{M}/demands", 201, json=demand)).json()
        offer = (await negotiation_event(client, sub, "Initial"))["proposal"]
        too_soon = int((time.time() + 60) * 1000)
        hasty = {
            "properties": {**counter["properties"], "golem.srv.comp.expiration": too_soon},
            "constraints": constraints,
        }
        path = f"{M}/demands/{sub}/proposals/{offer['proposalId']}"
        reply = await client.post(path, json=hasty)
        assert reply.status_code in (200, 400), reply.text
        await call(client, "DELETE", f"{M}/demands/{sub}", 204)
        await call(client, "DELETE", f"{P}/allocations/{allocation_id}", 200)
        await client.get(f"{P}/allocations/{allocation_id}")
        await client.delete(f"{P}/allocations/{allocation_id}")
    return transport.seen


async def test_both_backends_answer_the_same_flow_alike() -> None:
    reached: dict[str, set[tuple[str, int]]] = {}
    for name in ("emulator", "yagna"):
        with trio.fail_after(DEADLINE):
            async with backend(name) as (url, app_key):
                reached[name] = await flow(url, app_key)
    emulator, yagna = reached["emulator"], reached["yagna"]
    assert (f"POST {M}/demands/{{subscriptionId}}/proposals/{{proposalId}}", 400) in yagna
    assert yagna - emulator == set(DIFFERENCES["yagna"])
    assert emulator - yagna == set(DIFFERENCES["emulator"])
    assert len(yagna) >= 30
    print(f"(operation, status) pairs: {len(yagna)} on the daemon, {len(emulator)} on the emulator")
