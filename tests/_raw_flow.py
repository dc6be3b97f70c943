"""A raw requestor flow over HTTP, shared by tests that drive a served LocalNet by hand."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2
import trio


async def make_agreement(client: httpx2.AsyncClient, extra: dict[str, Any]) -> str:
    """Demand -> offer -> counter -> draft -> approved agreement; its id."""

    async def poll(path: str) -> list[Any]:
        with trio.fail_after(20):
            while True:
                reply = await client.get(path, params={"timeout": 1, "maxEvents": 10})
                if reply.json():
                    return list(reply.json())

    reply = await client.post(
        "/payment-api/v1/allocations",
        json={"totalAmount": "5", "paymentPlatform": "erc20-holesky-tglm"},
    )
    allocation = reply.json()
    reply = await client.get(
        "/payment-api/v1/demandDecorations",
        params={"allocationIds": allocation["allocationId"]},
    )
    decorations = reply.json()
    properties = {p["key"]: p["value"] for p in decorations["properties"]}
    properties.update(
        {
            "golem.srv.comp.expiration": int((time.time() + 1200) * 1000),
            "golem.node.debug.subnet": "public",
            "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
            "golem.com.payment.debit-notes.accept-timeout?": 120,
            "golem.com.scheme.payu.debit-note.interval-sec?": 60,
            **extra,
        }
    )
    constraints = "(&" + "".join(decorations["constraints"]) + "(golem.runtime.name=vm))"
    demand = {"properties": properties, "constraints": constraints}
    sub = (await client.post("/market-api/v1/demands", json=demand)).json()
    (offer,) = await poll(f"/market-api/v1/demands/{sub}/events")
    proposal_id = offer["proposal"]["proposalId"]
    await client.post(f"/market-api/v1/demands/{sub}/proposals/{proposal_id}", json=demand)
    (draft,) = await poll(f"/market-api/v1/demands/{sub}/events")
    valid_to = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    reply = await client.post(
        "/market-api/v1/agreements",
        json={"proposalId": draft["proposal"]["proposalId"], "validTo": valid_to},
    )
    agreement_id = str(reply.json())
    await client.post(f"/market-api/v1/agreements/{agreement_id}/confirm")
    reply = await client.post(
        f"/market-api/v1/agreements/{agreement_id}/wait", params={"timeout": 5}
    )
    assert reply.status_code == 204, reply.text
    return agreement_id


async def run_commands(
    client: httpx2.AsyncClient, agreement_id: str, *commands: list[str]
) -> list[dict[str, Any]]:
    """Create an activity on ``agreement_id``, deploy, start and run each argv in ``commands``
    in one batch; the results of the whole batch (the activity is destroyed after)."""
    reply = await client.post("/activity-api/v1/activity", json=agreement_id)
    base = f"/activity-api/v1/activity/{reply.json()}"
    capture = {"stdout": {"atEnd": {"format": "str"}}, "stderr": {"atEnd": {"format": "str"}}}
    script = [{"deploy": {}}, {"start": {}}]
    script += [
        {"run": {"entry_point": argv[0], "args": argv[1:], "capture": capture}} for argv in commands
    ]
    batch = (await client.post(f"{base}/exec", json={"text": json.dumps(script)})).json()
    try:
        with trio.fail_after(30):
            while True:
                reply = await client.get(f"{base}/exec/{batch}", params={"timeout": 1})
                results = list(reply.json())
                if results and results[-1]["isBatchFinished"]:
                    return results
    finally:
        with trio.move_on_after(10, shield=True):
            await client.delete(base)
