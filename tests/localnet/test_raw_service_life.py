"""A whole service life (docs/daemon-notes.md §8) against LocalNet over a real socket, with plain
httpx2 calls and no SDK code: what any client, in any language, would see."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx2
import trio

from golem_trio.localnet import ProviderSpec, Reply, open_localnet, scripted_runtime_factory

PROVIDER = ProviderSpec(
    name="raw-provider",
    debit_note_interval=1,
    accept_timeout=240,
    tick=0.1,
    price_duration_sec=Decimal("0.001"),
    price_start=Decimal("0.01"),
)


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", duration_s=0.3)


def rfc3339(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + ".000Z"


async def poll(client: httpx2.AsyncClient, path: str, **params: Any) -> list[Any]:
    """Long-poll ``path`` until it returns something (bounded)."""
    with trio.fail_after(20):
        while True:
            reply = await client.get(path, params={"timeout": 1, **params})
            assert reply.status_code == 200, reply.text
            if reply.json():
                return list(reply.json())


async def read_sse(client: httpx2.AsyncClient, path: str, frames: list[dict[str, Any]]) -> None:
    """Read runtime frames until the last command's ``finished`` (the stream never ends)."""
    async with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        async for line in reply.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                key, _, value = line.partition(": ")
                event[key] = value
                continue
            if event.get("event") == "runtime":
                frames.append(json.loads(event["data"]))
                if "finished" in frames[-1]["kind"] and frames[-1]["index"] == 1:
                    return
            event = {}


async def test_a_whole_service_life_over_http() -> None:
    runtime = scripted_runtime_factory({"/bin/echo": echo}, deploy_s=0.2, start_s=0.1)
    async with open_localnet([PROVIDER], runtime=runtime, serve=True) as net:
        assert net.url is not None
        auth = {"Authorization": f"Bearer {net.app_key}"}
        async with httpx2.AsyncClient(base_url=net.url, headers=auth, timeout=10) as client:
            # 1. Identity, allocation, decorations.
            me = (await client.get("/me")).json()
            assert me["identity"] == net.requestor.node_id
            reply = await client.post(
                "/payment-api/v1/allocations",
                json={"totalAmount": "5", "paymentPlatform": "erc20-holesky-tglm"},
            )
            assert reply.status_code == 201, reply.text
            allocation = reply.json()
            reply = await client.get(
                "/payment-api/v1/demandDecorations",
                params={"allocationIds": allocation["allocationId"]},
            )
            decorations = reply.json()
            properties = {p["key"]: p["value"] for p in decorations["properties"]}

            # 2. Demand, offer, counter, draft.
            properties.update(
                {
                    "golem.srv.comp.expiration": int((time.time() + 1200) * 1000),
                    "golem.node.debug.subnet": "public",
                    "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
                    "golem.com.payment.debit-notes.accept-timeout?": 120,
                    "golem.com.scheme.payu.debit-note.interval-sec?": 1,
                }
            )
            constraints = "(&" + "".join(decorations["constraints"]) + "(golem.runtime.name=vm))"
            demand = {"properties": properties, "constraints": constraints}
            reply = await client.post("/market-api/v1/demands", json=demand)
            assert reply.status_code == 201
            sub = reply.json()
            (offer,) = await poll(client, f"/market-api/v1/demands/{sub}/events", maxEvents=10)
            assert offer["proposal"]["state"] == "Initial"
            reply = await client.post(
                f"/market-api/v1/demands/{sub}/proposals/{offer['proposal']['proposalId']}",
                json=demand,
            )
            assert reply.status_code == 200
            (draft,) = await poll(client, f"/market-api/v1/demands/{sub}/events")
            assert draft["proposal"]["state"] == "Draft"

            # 3. Agreement.
            reply = await client.post(
                "/market-api/v1/agreements",
                json={
                    "proposalId": draft["proposal"]["proposalId"],
                    "validTo": rfc3339(time.time() + 3600),
                },
            )
            assert reply.status_code == 200, reply.text
            agreement_id = reply.json()
            reply = await client.post(f"/market-api/v1/agreements/{agreement_id}/confirm")
            assert reply.status_code == 204
            reply = await client.post(
                f"/market-api/v1/agreements/{agreement_id}/wait", params={"timeout": 5}
            )
            assert reply.status_code == 204

            # 4. Activity: deploy, start, then a run whose output streams over SSE.
            reply = await client.post("/activity-api/v1/activity", json=agreement_id)
            assert reply.status_code == 200
            activity_id = reply.json()
            base = f"/activity-api/v1/activity/{activity_id}"
            script = [{"deploy": {}}, {"start": {"args": []}}]
            reply = await client.post(f"{base}/exec", json={"text": json.dumps(script)})
            batch = reply.json()
            reply = await client.get(f"{base}/exec/{batch}", params={"timeout": 5})
            results = reply.json()
            assert [r["result"] for r in results] == ["Ok", "Ok"]
            assert results[-1]["isBatchFinished"] is True
            assert (await client.get(f"{base}/state")).json()["state"] == ["Ready", None]

            capture = {"stdout": {"stream": {"format": "str"}}}
            script = [
                {"run": {"entry_point": "/bin/echo", "args": ["hello"], "capture": capture}},
                {"run": {"entry_point": "/bin/echo", "args": ["world"], "capture": capture}},
            ]
            reply = await client.post(f"{base}/exec", json={"text": json.dumps(script)})
            batch = reply.json()
            frames: list[dict[str, Any]] = []
            with trio.fail_after(10):
                await read_sse(client, f"{base}/exec/{batch}", frames)
            # No replay: frames sent before the stream opened are not seen (the first
            # command's "started" goes out at once), so what arrives is a suffix of the whole.
            kinds = [(f["index"], next(iter(f["kind"]))) for f in frames]
            whole = [
                (0, "started"),
                (0, "stdout"),
                (0, "finished"),
                (1, "started"),
                (1, "stdout"),
                (1, "finished"),
            ]
            assert len(kinds) >= 4
            assert kinds == whole[len(whole) - len(kinds) :]
            stdout = {f["index"]: f["kind"]["stdout"] for f in frames if "stdout" in f["kind"]}
            assert stdout[1] == "world\n"
            assert frames[-1]["kind"]["finished"]["return_code"] == 0
            assert all(f["batch_id"] == batch for f in frames)

            # 5. Debit notes arrive on the agreed interval; accept one exactly.
            (event, *_) = await poll(client, "/payment-api/v1/debitNoteEvents")
            assert event["eventType"] == "DebitNoteReceivedEvent"
            note = (await client.get(f"/payment-api/v1/debitNotes/{event['debitNoteId']}")).json()
            assert note["agreementId"] == agreement_id
            reply = await client.post(
                f"/payment-api/v1/debitNotes/{note['debitNoteId']}/accept",
                json={
                    "totalAmountAccepted": note["totalAmountDue"],
                    "allocationId": allocation["allocationId"],
                },
            )
            assert (reply.status_code, reply.json()) == (200, None)

            # 6. Stop: destroy, terminate with a reason, unsubscribe.
            reply = await client.delete(base)
            assert (reply.status_code, reply.json()) == (200, None)
            reason = {
                "message": "Successfully finished all work",
                "golem.requestor.code": "Success",
            }
            reply = await client.post(
                f"/market-api/v1/agreements/{agreement_id}/terminate", json=reason
            )
            assert reply.status_code == 200
            assert (await client.delete(f"/market-api/v1/demands/{sub}")).status_code == 204

            # 7. The invoice, accepted for its exact amount; the allocation released.
            (event,) = await poll(client, "/payment-api/v1/invoiceEvents")
            invoice = (await client.get(f"/payment-api/v1/invoices/{event['invoiceId']}")).json()
            assert invoice["agreementId"] == agreement_id
            assert Decimal(invoice["amount"]) >= Decimal(note["totalAmountDue"])
            reply = await client.post(
                f"/payment-api/v1/invoices/{invoice['invoiceId']}/accept",
                json={
                    "totalAmountAccepted": invoice["amount"],
                    "allocationId": allocation["allocationId"],
                },
            )
            assert reply.status_code == 200
            spent = (
                await client.get(f"/payment-api/v1/allocations/{allocation['allocationId']}")
            ).json()
            assert Decimal(spent["spentAmount"]) == Decimal(invoice["amount"])
            reply = await client.delete(f"/payment-api/v1/allocations/{allocation['allocationId']}")
            assert reply.status_code == 200

            # 8. What happened, as the network recorded it (LocalNet's own endpoint).
            ledger = (await client.get("/localnet/ledger")).json()
        (agreement,) = ledger["agreements"]
        assert agreement["id"] == agreement_id
        assert (agreement["state"], agreement["terminator"]) == ("Terminated", "Requestor")
        assert agreement["reason"] == reason
        assert [a["state"] for a in ledger["activities"]] == ["Terminated"]
        assert all(n["honest"] for n in ledger["debitNotes"])
        assert note["debitNoteId"] in {n["id"] for n in ledger["debitNotes"]}
        (paid,) = ledger["invoices"]
        assert (paid["status"], paid["honest"]) in (("ACCEPTED", True), ("SETTLED", True))
        (released,) = ledger["allocations"]
        assert released["released"] is True
