"""Client-side cost of the REST client: calls per second through an in-memory transport, and
decoding speed of large event lists. No daemon, no sockets: this isolates our own overhead.

    .venv/bin/python benchmarks/bench_client.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2
import trio

from golem_trio.yagna import AgreementEvent, ApiConfig, MarketEvent, YagnaClient
from golem_trio.yagna._convert import decode

STAMP = "2026-11-27T10:00:00.123456789Z"


def proposal_event(i: int) -> dict[str, Any]:
    return {
        "eventType": "ProposalEvent",
        "eventDate": STAMP,
        "proposal": {
            "properties": {
                "golem.inf.mem.gib": 8.0,
                "golem.inf.cpu.threads": 4,
                "golem.com.pricing.model.linear.coeffs": [0.0001, 0.00002, 0.0],
                "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
                "golem.node.id.name": f"provider-{i}",
                "golem.runtime.name": "vm",
            },
            "constraints": "(&(golem.srv.comp.expiration>1705586871777))",
            "proposalId": f"R-{i:064x}",
            "issuerId": f"0x{i:040x}",
            "state": "Initial",
            "timestamp": STAMP,
        },
    }


def terminated_event(i: int) -> dict[str, Any]:
    return {
        "eventType": "AgreementTerminatedEvent",
        "eventDate": STAMP,
        "agreementId": f"{i:064x}",
        "terminator": "Provider",
        "signature": "",
        "reason": {"message": "done", "golem.provider.code": "Expired"},
    }


def timed(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - start


async def calls_per_second(n: int) -> float:
    body = json.dumps({"identity": "0x" + "1" * 40, "name": "r", "role": "manager"}).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    async with YagnaClient(ApiConfig(app_key="k"), transport=httpx2.MockTransport(handler)) as y:
        start = time.perf_counter()
        for _ in range(n):
            await y.identity.get_identity()
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    rows: list[tuple[str, float, str]] = []
    rows.append(("getIdentity calls, in-memory transport", trio.run(calls_per_second, 3000), "/s"))
    for size in (20, 100):
        offers = [proposal_event(i) for i in range(size)]
        seconds = timed(
            lambda offers=offers: decode("collectOffers", offers, list[MarketEvent]), 200
        )
        rows.append((f"decode {size} proposal events", 200 * size / seconds, "events/s"))
    agreements = [terminated_event(i) for i in range(100)]
    seconds = timed(lambda: decode("collectAgreementEvents", agreements, list[AgreementEvent]), 200)
    rows.append(("decode 100 agreement events", 200 * 100 / seconds, "events/s"))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'rate':>12}")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12,.0f} {unit}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([{"measure": n, "rate": v, "unit": u} for n, v, u in rows], out, indent=2)


if __name__ == "__main__":
    main()
