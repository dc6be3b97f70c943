"""One requestor flow, run against both LocalNet backends: the emulator (served on loopback)
and the real yagna daemon driven by the same simulated providers. Every request and reply is
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
from golem_trio.localnet.yagna import open_yagna_localnet

_CONTRACT = str(Path(__file__).resolve().parents[1] / "yagna")
if _CONTRACT not in sys.path:
    sys.path.insert(0, _CONTRACT)
from contract.validating import INVALID_REQUEST, ValidatingTransport, call  # noqa: E402

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
        (f"POST {M}/demands/{{subscriptionId}}/proposals/{{proposalId}}/reject", 500): (
            "rejecting an unknown proposal: yagna 0.17.6 answers 500 (Proposal ... not found); "
            "the emulator 404"
        ),
        (f"GET {M}/agreements/{{agreementId}}/terminate/reason", 400): (
            "the reason of an agreement not terminated yet: yagna 0.17.6 answers 400 (not "
            "terminated yet); the emulator 404"
        ),
        (f"GET {A}/activity/{{activityId}}/command", 500): (
            "the running command: yagna 0.17.6 answers 500 (GSB error: Service receiver was "
            "cancelled) whether a command runs or not (the exe-unit answers on the bus); the "
            "emulator 200 while one runs, 404 when none does"
        ),
        (f"POST {P}/invoices", 401): (
            "a requestor issuing an invoice for an agreement it does not provide: yagna 0.17.6 "
            "answers 401 (no message); the emulator 400 (Agreement not found)"
        ),
    },
    "emulator": {
        (f"GET {P}/allocations/{{allocationId}}", 410): (
            "a released allocation: the emulator answers 410 as docs/daemon-notes.md §5.1 "
            "documents; yagna 0.17.6 answers 404 once it was released with DELETE"
        ),
        (f"POST {M}/demands/{{subscriptionId}}/proposals/{{proposalId}}/reject", 404): (
            "see the 500 above"
        ),
        (f"GET {M}/agreements/{{agreementId}}/terminate/reason", 404): "see the 400 above",
        (f"GET {A}/activity/{{activityId}}/command", 200): "see the 500 above",
        (f"GET {A}/activity/{{activityId}}/command", 404): "see the 500 above",
        (f"GET {A}/activity/{{activityId}}/exec/{{batchId}}", 400): (
            "a command index past the batch: the emulator answers 400 (Invalid command index) "
            "at once; yagna 0.17.6 waits for that index and answers 408 when the wait ends"
        ),
        (f"POST {P}/invoices", 400): "see the 401 above",
    },
}

PROVIDER = ProviderSpec(name="contract", debit_note_interval=2, tick=0.25)
#: Approves agreements only after the whole flow: a wait for its approval times out (408).
SLOW = ProviderSpec(name="slow", approval_delay=600, tick=0.25)
PROVIDERS = [PROVIDER, SLOW]
UNKNOWN_SUB = "0" * 32 + "-" + "0" * 64
UNKNOWN_PROPOSAL = "R-" + "0" * 64
UNKNOWN_HEX_ID = "0" * 32
#: The reason a requestor gives when it ends an agreement.
DONE = {"message": "done", "golem.requestor.code": "Success"}
#: The application session the first agreement is confirmed under, and one nobody uses.
SESSION = "contract-session"
OTHER_SESSION = "nobody-uses-this-session"


def runtime() -> Callable[..., Any]:
    return scripted_runtime_factory(
        {
            "/bin/echo": lambda args: Reply(stdout=" ".join(args)),
            "/bin/sleep": lambda args: Reply(duration_s=float(args[0])),
        }
    )


@asynccontextmanager
async def backend(name: str) -> AsyncIterator[tuple[str, str]]:
    """``(url, requestor app key)`` of a fresh LocalNet with the providers."""
    if name == "emulator":
        async with open_localnet(PROVIDERS, runtime=runtime(), serve=True) as net:
            assert net.url is not None
            yield net.url, net.app_key
    else:
        # One node: the differences below are pinned for a daemon that holds both sides.
        async with open_yagna_localnet(PROVIDERS, runtime=runtime(), nodes=1) as real:
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


async def session_events(client: httpx2.AsyncClient, path: str, key: str, session: str) -> set[str]:
    """The ``key`` of every event a persistent feed holds for the application ``session``."""
    params = {"timeout": 1, "appSessionId": session}
    events = (await call(client, "GET", path, 200, params=params)).json()
    return {event[key] for event in events}


async def negotiation(
    client: httpx2.AsyncClient, sub: str, enough: Callable[[list[Json]], bool]
) -> list[Json]:
    """Poll the subscription's events until ``enough`` of them came; all of them."""
    events: list[Json] = []
    while not enough(events):
        reply = await call(
            client, "GET", f"{M}/demands/{sub}/events", 200, params={"timeout": 2, "maxEvents": 10}
        )
        events += reply.json()
    return events


def offers_by_name(events: list[Json]) -> dict[str, Json]:
    """The Initial proposals among ``events``, by the offering provider's name."""
    return {
        e["proposal"]["properties"]["golem.node.id.name"]: e["proposal"]
        for e in events
        if e["eventType"] == "ProposalEvent" and e["proposal"]["state"] == "Initial"
    }


def drafts_by_counter(events: list[Json]) -> dict[str, Json]:
    """The Draft proposals among ``events``, by the id of the counter they answer."""
    return {
        e["proposal"]["prevProposalId"]: e["proposal"]
        for e in events
        if e["eventType"] == "ProposalEvent" and e["proposal"]["state"] == "Draft"
    }


#: Answers outside the specs (so outside the validating transport), by backend: what each
#: gives, pinned. ``debit-note-payments``: yagna 0.17.6 answers 501 ``{"message": null}``, a
#: status the spec does not list. ``malformed-proposal-id``: yagna's 400 carries a JSON body
#: labelled ``text/plain``.
OFF_SPEC: dict[str, dict[str, tuple[int, str]]] = {
    "debit-note-payments": {
        "yagna": (501, "application/json"),
        "emulator": (200, "application/json"),
    },
    "malformed-proposal-id": {"yagna": (400, "text/plain"), "emulator": (400, "application/json")},
}


async def flow(
    url: str, app_key: str, off_spec: dict[str, tuple[int, str]] | None = None
) -> set[tuple[str, int]]:
    """The requestor's life on one backend; every (operation, status) pair it reached."""
    transport = ValidatingTransport(httpx2.AsyncHTTPTransport())
    auth = {"Authorization": f"Bearer {app_key}"}
    async with (
        httpx2.AsyncClient(base_url=url, transport=transport, headers=auth, timeout=30) as client,
        httpx2.AsyncClient(base_url=url, transport=transport, timeout=30) as anon,
    ):
        # Identity and version; requests without the key, or with a wrong one.
        await call(client, "GET", "/me", 200)
        await call(client, "GET", "/me", 401, headers={"Authorization": ""}, invalid=True)
        await call(client, "GET", "/me", 401, headers={"Authorization": "Bearer nope"})
        for path in (f"{M}/demands", f"{A}/activity", f"{P}/allocations"):
            await call(anon, "GET", path, 401, invalid=True)
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
        # A payment platform on no known network.
        nowhere = {"totalAmount": "5", "paymentPlatform": "erc20-nowhere-tglm"}
        await call(client, "POST", f"{P}/allocations", 400, json=nowhere)
        await call(client, "GET", f"{P}/allocations", 200)
        await call(client, "GET", f"{P}/allocations/{allocation_id}", 200)
        await call(client, "GET", f"{P}/allocations/{UNKNOWN_UUID}", 404)
        await call(
            client, "PUT", f"{P}/allocations/{allocation_id}", 200, json={"totalAmount": "10"}
        )
        decoration = (
            await call(
                client,
                "GET",
                f"{P}/demandDecorations",
                200,
                params={"allocationIds": allocation_id},
            )
        ).json()
        await call(
            client, "GET", f"{P}/demandDecorations", 404, params={"allocationIds": UNKNOWN_UUID}
        )

        # Demand, offers, counters, drafts.
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
        offers = offers_by_name(
            await negotiation(client, sub, lambda events: len(offers_by_name(events)) == 2)
        )
        offer, slow_offer = offers["contract"], offers["slow"]
        events_path = f"{M}/demands/{sub}/events"
        await call(client, "GET", events_path, 400, invalid=True, params={"maxEvents": 0})
        await call(client, "GET", f"{M}/demands/{UNKNOWN_SUB}/events", 404, params={"timeout": 0})
        proposals = f"{M}/demands/{sub}/proposals"
        await call(client, "GET", f"{proposals}/{offer['proposalId']}", 200)
        await call(client, "GET", f"{proposals}/{UNKNOWN_PROPOSAL}", 404)
        counter = {
            "properties": {**properties, "golem.com.payment.chosen-platform": PLATFORM},
            "constraints": constraints,
        }

        async def counter_offer(proposals: str, proposal: Json) -> str:
            path = f"{proposals}/{proposal['proposalId']}"
            return str((await call(client, "POST", path, 200, json=counter)).json())

        ours = await counter_offer(proposals, offer)
        ours_slow = await counter_offer(proposals, slow_offer)
        drafts = drafts_by_counter(
            await negotiation(client, sub, lambda events: len(drafts_by_counter(events)) == 2)
        )
        draft, draft_slow = drafts[ours], drafts[ours_slow]
        await call(client, "GET", f"{proposals}/{draft['proposalId']}", 200)
        valid_to = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()

        async def create_agreement(proposal_id: str, expect: int) -> str:
            body = {"proposalId": proposal_id, "validTo": valid_to}
            return str((await call(client, "POST", f"{M}/agreements", expect, json=body)).json())

        agr = f"{M}/agreements"
        await create_agreement(offer["proposalId"], 400)  # an Initial proposal
        agreement_id = await create_agreement(draft["proposalId"], 200)
        await create_agreement(draft["proposalId"], 409)  # already promoted
        # Not confirmed yet: nothing to wait for, nothing to terminate.
        await call(client, "POST", f"{agr}/{agreement_id}/wait", 400, params={"timeout": 1})
        await call(client, "POST", f"{agr}/{agreement_id}/terminate", 409, json=DONE)
        session = {"appSessionId": SESSION}
        await call(client, "POST", f"{agr}/{agreement_id}/confirm", 204, params=session)
        await call(client, "POST", f"{agr}/{agreement_id}/wait", 204, params={"timeout": 10})
        await call(client, "GET", agr, 200)
        listed = (await call(client, "GET", agr, 200, params=session)).json()
        assert [entry["id"] for entry in listed] == [agreement_id]
        await call(client, "GET", f"{agr}/{agreement_id}", 200)
        await call(client, "GET", f"{agr}/{UNKNOWN_AGREEMENT}", 404)
        await events_until(client, f"{M}/agreementEvents", "AgreementApprovedEvent")
        # Application sessions (docs/daemon-notes.md §2.1, §5.2): the agreement's events come
        # under the session it was confirmed under, and under no other.
        agreement_events = f"{M}/agreementEvents"
        assert await session_events(client, agreement_events, "agreementId", SESSION) == {
            agreement_id
        }
        assert await session_events(client, agreement_events, "agreementId", OTHER_SESSION) == set()

        # Activity and batches.
        activity_id = (
            await call(client, "POST", f"{A}/activity", 200, json={"agreementId": agreement_id})
        ).json()["activityId"]
        await call(client, "POST", f"{A}/activity", 404, json={"agreementId": UNKNOWN_AGREEMENT})
        act = f"{A}/activity/{activity_id}"
        await call(client, "GET", f"{A}/activity", 200, params={"agreementId": agreement_id})
        await call(client, "GET", f"{act}/state", 200)
        await call(client, "GET", f"{A}/activity/{UNKNOWN_HEX_ID}/state", 500)
        await call(client, "GET", f"{act}/agreement", 200)
        script = (
            '[{"deploy": {}}, {"start": {}}, {"run": {"entry_point": "/bin/echo", '
            '"args": ["hello"], "capture": {"stdout": {"atEnd": {"format": "str"}}}}}]'
        )
        batch = (await call(client, "POST", f"{act}/exec", 200, json={"text": script})).json()
        results = await batch_results(client, act, batch)
        assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"]
        assert results[2]["stdout"] == "hello"
        # A batch still running: a wait for its second command times out.
        script = (
            '[{"run": {"entry_point": "/bin/echo", "args": ["hi"]}}, '
            '{"run": {"entry_point": "/bin/sleep", "args": ["6"]}}]'
        )
        batch = (await call(client, "POST", f"{act}/exec", 200, json={"text": script})).json()
        await call(
            client, "GET", f"{act}/exec/{batch}", 200, params={"commandIndex": 0, "timeout": 5}
        )
        await client.get(f"{act}/command")  # see DIFFERENCES
        await call(
            client, "GET", f"{act}/exec/{batch}", 408, params={"commandIndex": 1, "timeout": 1}
        )
        # A command index past the batch: see DIFFERENCES.
        await client.get(f"{act}/exec/{batch}", params={"commandIndex": 9, "timeout": 1})
        results = await batch_results(client, act, batch)
        assert [r["result"] for r in results] == ["Ok", "Ok"]
        await client.get(f"{act}/command")  # none running now: see DIFFERENCES
        await call(client, "GET", f"{act}/exec/{UNKNOWN_HEX_ID}", 404)
        await call(client, "POST", f"{act}/exec", 400, invalid=True, json={"text": "[{}]"})
        await call(client, "GET", f"{act}/usage", 200)

        # A debit note, accepted.
        note_event = await events_until(client, f"{P}/debitNoteEvents", "DebitNoteReceivedEvent")
        await call(client, "GET", f"{P}/debitNotes", 200)
        note = (
            await call(client, "GET", f"{P}/debitNotes/{note_event['debitNoteId']}", 200)
        ).json()
        note_path = f"{P}/debitNotes/{note['debitNoteId']}"
        too_much = {"totalAmountAccepted": "1000", "allocationId": allocation_id}
        await call(client, "POST", f"{note_path}/accept", 400, json=too_much)
        await call(
            client,
            "POST",
            f"{note_path}/accept",
            200,
            json={"totalAmountAccepted": note["totalAmountDue"], "allocationId": allocation_id},
        )
        await call(client, "GET", f"{P}/debitNotes/{UNKNOWN_UUID}", 404)
        note_events = f"{P}/debitNoteEvents"
        assert note["debitNoteId"] in await session_events(
            client, note_events, "debitNoteId", SESSION
        )
        assert await session_events(client, note_events, "debitNoteId", OTHER_SESSION) == set()
        # The daemon cannot reject debit notes (docs/daemon-notes.md §9.7): 501.
        rejection = {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}
        await call(client, "POST", f"{note_path}/reject", 501, json=rejection)
        await call(client, "GET", f"{P}/payments/status", 200, params={"network": "holesky"})
        await call(client, "GET", f"{P}/requestorAccounts", 200)
        await call(client, "GET", f"{P}/allocations/{allocation_id}/expenditures", 200)

        # The end: activity destroyed, agreement terminated, invoice accepted.
        await call(client, "DELETE", act, 200)
        await call(client, "POST", f"{agr}/{agreement_id}/terminate", 200, json=DONE)
        await call(client, "GET", f"{agr}/{agreement_id}/terminate/reason", 200)
        # Ending it again, and waiting for it now.
        again = {"message": "again", "golem.requestor.code": "Success"}
        await call(client, "POST", f"{agr}/{agreement_id}/terminate", 410, json=again)
        await call(client, "POST", f"{agr}/{agreement_id}/wait", 400, params={"timeout": 1})
        await call(client, "GET", f"{act}/state", 200)
        invoice_event = await events_until(client, f"{P}/invoiceEvents", "InvoiceReceivedEvent")
        invoice = (
            await call(client, "GET", f"{P}/invoices/{invoice_event['invoiceId']}", 200)
        ).json()
        invoice_path = f"{P}/invoices/{invoice['invoiceId']}"
        await call(client, "POST", f"{invoice_path}/accept", 400, json=too_much)
        await call(
            client,
            "POST",
            f"{invoice_path}/accept",
            200,
            json={"totalAmountAccepted": invoice["amount"], "allocationId": allocation_id},
        )
        # Already accepted: too late to reject it.
        await call(client, "POST", f"{invoice_path}/reject", 400, json=rejection)
        await call(client, "GET", f"{P}/invoices", 200)
        await call(client, "GET", f"{P}/invoices/{UNKNOWN_UUID}", 404)
        await call(client, "GET", f"{invoice_path}/payments", 200)
        issue = {
            "agreementId": invoice["agreementId"],
            "amount": "1",
            "paymentDueDate": invoice["paymentDueDate"],
        }
        # The requestor cannot issue an invoice for an agreement it does not provide (the body
        # is the daemon's NewInvoice): see DIFFERENCES.
        await client.post(f"{P}/invoices", json=issue, extensions=INVALID_REQUEST)
        # The daemon pays accepted documents in batches (every 300 s by default): pay now. Not
        # a specified operation (it goes around the checks); the emulator pays at once.
        async with httpx2.AsyncClient(base_url=url, headers=auth, timeout=30) as plain:
            await plain.post(f"{P}/batchCycle/{PLATFORM}/now")
            if off_spec is not None:
                for name, reply in (
                    ("debit-note-payments", await plain.get(f"{note_path}/payments")),
                    (
                        "malformed-proposal-id",
                        await plain.get(f"{M}/demands/{sub}/proposals/not-a-proposal-id"),
                    ),
                ):
                    kind = reply.headers.get("content-type", "").partition(";")[0]
                    off_spec[name] = (reply.status_code, kind)
        payments: list[Json] = []
        while not payments:
            payments = (
                await call(client, "GET", f"{P}/payments", 200, params={"timeout": 2})
            ).json()
        await call(client, "GET", f"{P}/payments/{payments[0]['paymentId']}", 200)
        await call(client, "GET", f"{P}/payments/{UNKNOWN_UUID}", 404)

        # The slow provider's agreement: not approved within a short wait, then cancelled.
        slow_id = await create_agreement(draft_slow["proposalId"], 200)
        await client.get(f"{agr}/{slow_id}/terminate/reason")  # none yet: see DIFFERENCES
        await call(client, "POST", f"{agr}/{slow_id}/confirm", 204)
        await call(client, "POST", f"{agr}/{slow_id}/wait", 408, params={"timeout": 1})
        await call(client, "POST", f"{agr}/{slow_id}/cancel", 200, json={"message": "changed"})
        await call(client, "POST", f"{agr}/{slow_id}/wait", 410, params={"timeout": 1})
        await call(client, "POST", f"{agr}/{slow_id}/terminate", 410, json=DONE)

        # The end of the subscription.
        reject = {"message": "no longer needed"}
        await call(client, "POST", f"{proposals}/{offer['proposalId']}/reject", 204, json=reject)
        await client.post(f"{proposals}/{UNKNOWN_PROPOSAL}/reject", json=reject)  # DIFFERENCES
        await call(client, "DELETE", f"{M}/demands/{sub}", 204)
        await call(client, "DELETE", f"{M}/demands/{sub}", 404)
        await call(client, "GET", events_path, 404, params={"timeout": 0})

        # Another subscription: an agreement cancelled before it is confirmed, and a counter
        # the offer's constraints exclude (it expires sooner than the provider's minimum): see
        # DIFFERENCES.
        sub = (await call(client, "POST", f"{M}/demands", 201, json=demand)).json()
        proposals = f"{M}/demands/{sub}/proposals"
        offers = offers_by_name(
            await negotiation(client, sub, lambda events: len(offers_by_name(events)) == 2)
        )
        ours = await counter_offer(proposals, offers["contract"])
        drafts = drafts_by_counter(
            await negotiation(client, sub, lambda events: ours in drafts_by_counter(events))
        )
        second = await create_agreement(drafts[ours]["proposalId"], 200)
        await call(client, "POST", f"{agr}/{second}/confirm", 204)
        await call(client, "POST", f"{agr}/{second}/wait", 204, params={"timeout": 10})
        await call(client, "POST", f"{agr}/{second}/terminate", 200, json=DONE)
        first_invoice = invoice_event
        while invoice_event["invoiceId"] == first_invoice["invoiceId"]:
            invoice_event = await events_until(
                client,
                f"{P}/invoiceEvents",
                "InvoiceReceivedEvent",
                after=invoice_event["eventDate"],
            )
        rejection = {
            "rejectionReason": "BAD_SERVICE",
            "totalAmountAccepted": "0",
            "message": "did not work",
        }
        await call(
            client, "POST", f"{P}/invoices/{invoice_event['invoiceId']}/reject", 200, json=rejection
        )
        # The second agreement was confirmed without a session: its invoice is not the
        # session's (the first one's is), and no invoice belongs to a session nobody used.
        invoice_events = f"{P}/invoiceEvents"
        assert await session_events(client, invoice_events, "invoiceId", SESSION) == {
            first_invoice["invoiceId"]
        }
        assert await session_events(client, invoice_events, "invoiceId", OTHER_SESSION) == set()
        too_soon = int((time.time() + 60) * 1000)
        hasty = {
            "properties": {**counter["properties"], "golem.srv.comp.expiration": too_soon},
            "constraints": constraints,
        }
        reply = await client.post(f"{proposals}/{offers['slow']['proposalId']}", json=hasty)
        assert reply.status_code in (200, 400), reply.text
        await call(client, "DELETE", f"{M}/demands/{sub}", 204)
        await call(client, "DELETE", f"{P}/allocations/{allocation_id}", 200)
        await client.get(f"{P}/allocations/{allocation_id}")
        await call(client, "DELETE", f"{P}/allocations/{allocation_id}", 410)
    return transport.seen


async def batch_results(client: httpx2.AsyncClient, act: str, batch: str) -> list[Json]:
    """Poll a batch's results until it finished; the results."""
    while True:
        results = (
            await call(client, "GET", f"{act}/exec/{batch}", 200, params={"timeout": 2})
        ).json()
        if results and results[-1]["isBatchFinished"]:
            return list(results)


async def test_both_backends_answer_the_same_flow_alike() -> None:
    reached: dict[str, set[tuple[str, int]]] = {}
    off_spec: dict[str, dict[str, tuple[int, str]]] = {name: {} for name in OFF_SPEC}
    for name in ("emulator", "yagna"):
        with trio.fail_after(DEADLINE):
            async with backend(name) as (url, app_key):
                answers: dict[str, tuple[int, str]] = {}
                reached[name] = await flow(url, app_key, answers)
                for what, answer in answers.items():
                    off_spec[what][name] = answer
    assert off_spec == OFF_SPEC
    emulator, yagna = reached["emulator"], reached["yagna"]
    assert (f"POST {M}/demands/{{subscriptionId}}/proposals/{{proposalId}}", 400) in yagna
    assert yagna - emulator == set(DIFFERENCES["yagna"])
    assert emulator - yagna == set(DIFFERENCES["emulator"])
    assert len(yagna) >= 84
    assert len(emulator) >= 86
    print(f"(operation, status) pairs: {len(yagna)} on the daemon, {len(emulator)} on the emulator")
