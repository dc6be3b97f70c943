"""LocalNet's own throughput on this machine, over real loopback sockets.

Measures what the emulated daemon can serve (event polls per second, exec round trips per
second) and that it holds 1000 providers and 1000 live agreements with activities, with the
time that took and the memory it used.

    .venv/bin/python benchmarks/bench_localnet.py [--providers 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from collections.abc import Sequence
from decimal import Decimal

import trio

from golem_trio.localnet import (
    LocalNet,
    ProviderPopulation,
    Reply,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.localnet.providers import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL
from golem_trio.yagna import (
    ApiConfig,
    DemandOfferBase,
    Deploy,
    NewAllocation,
    ProposalEvent,
    Run,
    Start,
    YagnaClient,
)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


async def polls_per_second(yagna: YagnaClient, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        await yagna.market.collect_agreement_events(wait=0, max_events=20)
        count += 1
    return count / seconds


async def sign_many(yagna: YagnaClient, count: int, parallel: int) -> list[str]:
    """Negotiate ``count`` agreements with different providers, ``parallel`` at a time."""
    sub = await yagna.market.subscribe_demand(demand())
    offers: list[ProposalEvent] = []
    while len(offers) < count:
        events = await yagna.market.collect_offers(sub, wait=5, max_events=100)
        offers += [e for e in events if isinstance(e, ProposalEvent)]
    agreements: list[str] = []
    limiter = trio.CapacityLimiter(parallel)

    async def sign(offer: ProposalEvent, send: trio.MemorySendChannel[str]) -> None:
        async with limiter, send:
            ours = await yagna.market.counter_proposal_demand(
                sub, offer.proposal.proposal_id, demand()
            )
            # The provider answers with a draft whose previous proposal is ours.
            await arrived.setdefault(ours, trio.Event()).wait()
            draft_id = drafts[ours]
            valid_to = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            agreement_id = await yagna.market.create_agreement(draft_id, valid_to)
            await yagna.market.confirm_agreement(agreement_id)
            result = await yagna.market.wait_for_approval(agreement_id, wait=30)
            assert result.approved, result
            await send.send(agreement_id)

    drafts: dict[str, str] = {}
    arrived: dict[str, trio.Event] = {}

    async def route_drafts() -> None:
        while True:
            for event in await yagna.market.collect_offers(sub, wait=5, max_events=100):
                if isinstance(event, ProposalEvent) and event.proposal.prev_proposal_id:
                    drafts[event.proposal.prev_proposal_id] = event.proposal.proposal_id
                    arrived.setdefault(event.proposal.prev_proposal_id, trio.Event()).set()

    send, receive = trio.open_memory_channel[str](count)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(route_drafts)
        async with send:
            for offer in offers[:count]:
                nursery.start_soon(sign, offer, send.clone())
        async with receive:
            async for agreement_id in receive:
                agreements.append(agreement_id)
        nursery.cancel_scope.cancel()
    return agreements


async def exec_round_trips(yagna: YagnaClient, activity_id: str, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        batch = await yagna.activity.exec(activity_id, [Run("/bin/true")])
        results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=10)
        assert results
        assert results[-1].is_batch_finished
    return count / (time.perf_counter() - start)


async def start_activity(yagna: YagnaClient, agreement_id: str) -> str:
    activity_id = await yagna.activity.create_activity(agreement_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    return activity_id


async def accept_notes(yagna: YagnaClient, allocation_id: str) -> None:
    after = None
    while True:
        for event in await yagna.payment.get_debit_note_events(wait=5, after_timestamp=after):
            after = event.event_date
            note = await yagna.payment.get_debit_note(event.debit_note_id)
            await yagna.payment.accept_debit_note(
                note.debit_note_id, note.total_amount_due, allocation_id
            )


async def main(providers: int, agreements: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def true(args: Sequence[str]) -> Reply:
        return Reply()

    runtime = scripted_runtime_factory({"/bin/true": true})
    started = time.perf_counter()
    async with open_localnet(
        ProviderPopulation(count=providers, seed=1), runtime=runtime, serve=True
    ) as net:
        rows.append(
            (f"start LocalNet with {providers} providers", f"{time.perf_counter() - started:.2f} s")
        )
        await report(net, rows, agreements)
    return rows


async def report(net: LocalNet, rows: list[tuple[str, str]], agreements: int) -> None:
    assert net.url is not None
    config = ApiConfig(app_key=net.app_key, api_url=net.url)
    async with YagnaClient(config) as yagna:
        rows.append(
            (
                "agreement-event polls (answered at once)",
                f"{await polls_per_second(yagna, 3):,.0f} /s",
            )
        )
        allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(900)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_notes, yagna, allocation.allocation_id)
            started = time.perf_counter()
            signed = await sign_many(yagna, agreements, parallel=50)
            rows.append(
                (
                    f"sign {len(signed)} agreements (50 at a time)",
                    f"{time.perf_counter() - started:.2f} s",
                )
            )
            started = time.perf_counter()
            limiter = trio.CapacityLimiter(50)
            activities: list[str] = []

            async def one(agreement_id: str) -> None:
                async with limiter:
                    activities.append(await start_activity(yagna, agreement_id))

            async with trio.open_nursery() as starters:
                for agreement_id in signed:
                    starters.start_soon(one, agreement_id)
            rows.append(
                (
                    f"start {len(activities)} activities (deploy+start)",
                    f"{time.perf_counter() - started:.2f} s",
                )
            )
            live = sum(1 for a in net.activity.ledger() if a["state"] != "Terminated")
            approved = sum(1 for a in net.market.agreements.values() if a.state.value == "Approved")
            rows.append(("live agreements / activities held", f"{approved} / {live}"))
            rows.append(
                (
                    "exec round trips (one run, polled)",
                    f"{await exec_round_trips(yagna, activities[0], 300):,.0f} /s",
                )
            )
            rows.append(("peak memory (this process)", f"{rss_mib():,.0f} MiB"))
            nursery.cancel_scope.cancel()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--agreements", type=int, default=1000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows = trio.run(main, args.providers, args.agreements)
    width = max(len(name) for name, _ in rows)
    print(f"{'LocalNet (real loopback sockets)':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([{"measure": n, "value": v} for n, v in rows], out, indent=2)


if __name__ == "__main__":
    cli()
