"""Time to sign agreements with :func:`golem_trio.market.open_negotiation`, in parallel and one
at a time, against a LocalNet served over real loopback sockets.

``--latency`` adds that many seconds to every daemon request (LocalNet's ``daemon-latency``
fault), as a remote daemon or a slow network would; without it the emulated daemon answers at
once and client and daemon share one CPU, so the figures show its CPU cost rather than waiting.
Each row runs on a fresh LocalNet with as many providers as agreements; the clock starts once
the demand is published (offers still arriving count). One-at-a-time runs stop after
``--sequential-budget`` seconds; their total is then extrapolated from the rate so far (the
table says so).

    .venv/bin/python benchmarks/bench_signing.py [--counts 10 100 1000] [--parallel 50]
        [--sequential-budget 60] [--latency 0 0.02] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import trio

from golem_trio.localnet import ProviderPopulation, open_localnet
from golem_trio.market import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, open_negotiation
from golem_trio.yagna import ApiConfig, DemandOfferBase, YagnaClient

PLATFORM = "erc20-holesky-tglm"


def demand() -> DemandOfferBase:
    expiration = int((time.time() + 3000) * 1000)
    return DemandOfferBase(
        {
            "golem.srv.comp.expiration": expiration,
            "golem.node.debug.subnet": "public",
            ACCEPT_TIMEOUT: 240,
            DEBIT_NOTE_INTERVAL: 120,
        },
        "(golem.node.debug.subnet=public)",
    )


async def run_one(
    count: int, parallel: int, budget: float | None, latency: float
) -> dict[str, Any]:
    """Sign ``count`` agreements, ``parallel`` at a time (stop after ``budget`` seconds), with
    ``latency`` seconds added to every daemon request."""
    async with open_localnet(ProviderPopulation(count=count, seed=1), serve=True) as net:
        assert net.url is not None
        if latency > 0:
            net.faults.daemon_fault("*", "daemon-latency", value=latency, count=10**9)
        config = ApiConfig(app_key=net.app_key, api_url=net.url)
        async with (
            YagnaClient(config) as yagna,
            open_negotiation(yagna, demand(), platform=PLATFORM, max_parallel=parallel) as market,
        ):
            signed = 0
            started = time.perf_counter()
            cpu_started = time.process_time()

            async def worker(jobs: trio.MemoryReceiveChannel[int]) -> None:
                nonlocal signed
                async with jobs:
                    async for _ in jobs:
                        await market.sign()
                        signed += 1

            send, receive = trio.open_memory_channel[int](count)
            with trio.move_on_after(budget if budget is not None else float("inf")):
                async with trio.open_nursery() as nursery:
                    for _ in range(parallel):
                        nursery.start_soon(worker, receive.clone())
                    receive.close()
                    async with send:
                        for job in range(count):
                            await send.send(job)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            approved = sum(1 for a in net.market.agreements.values() if a.state.value == "Approved")
            assert approved == signed, (approved, signed)
    extrapolated = signed < count
    total = elapsed / signed * count if extrapolated and signed else elapsed
    return {
        "latency_s": latency,
        "agreements": count,
        "max_parallel": parallel,
        "signed": signed,
        "seconds": round(total, 2),
        "measured_seconds": round(elapsed, 2),
        "extrapolated": extrapolated,
        "cpu_seconds": round(cpu, 2),
        "per_second": round(signed / elapsed, 1) if elapsed > 0 else None,
    }


async def main(
    counts: list[int], parallel: int, budget: float, latencies: list[float]
) -> list[dict[str, Any]]:
    rows = []
    for latency in latencies:
        for count in counts:
            rows.append(await run_one(count, min(parallel, count), None, latency))
            rows.append(await run_one(count, 1, budget, latency))
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--sequential-budget", type=float, default=60.0)
    parser.add_argument(
        "--latency",
        type=float,
        nargs="+",
        default=[0.0, 0.02],
        help="seconds added to every daemon request (one table section per value)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = trio.run(main, args.counts, args.parallel, args.sequential_budget, args.latency)
    print(
        "| added latency | agreements | max_parallel | signed | time (s) | agreements/s | CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        note = f" (extrapolated from {row['measured_seconds']} s)" if row["extrapolated"] else ""
        print(
            f"| {row['latency_s'] * 1000:g} ms | {row['agreements']} | {row['max_parallel']} "
            f"| {row['signed']} | {row['seconds']}{note} | {row['per_second']} "
            f"| {row['cpu_seconds']} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    cli()
