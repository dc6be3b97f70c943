"""Services at scale: how long ``Golem.run_service`` takes to bring N instances to ``running``,
what an idle running instance costs the requestor, and how fast a provider's termination reaches
the instance.

Everything runs in one process: a LocalNet (its daemon served by hypercorn over real loopback
sockets, providers with a scripted runtime, so no real processes) and the ``Golem`` engine that
talks to it over HTTP, on the real clock. Requestor and emulator share the process and its CPU:
a figure for "this process" includes both, and the table says which figures do.

Per N (a fresh LocalNet with N providers; one agreement per provider):

* **time to running**: from calling ``run_service(num_instances=N)`` (the demand is published
  then) until ``cluster.wait_running(N)`` returns; agreements/s is N over that time.
* **idle CPU** (N in ``--idle-at``): with every instance running (``run`` only sleeps, the
  default health check probes every 60 s), ``time.process_time()`` over ``--idle-window``
  seconds, per instance. The same is measured on an emulator-only baseline: a fresh LocalNet
  with N agreements and activities held by the raw ``YagnaClient`` (no SDK); the difference is
  what the SDK adds (its own work plus the emulator serving its requests).
* **memory**: the Python heap that bringing the N instances up left allocated (``tracemalloc``,
  started just before ``Golem`` opens, read after ``gc.collect()`` once all are running), per
  instance, in a separate pass (tracing slows everything down). Both sides allocate there; the
  emulator-only baseline, traced the same way, is subtracted to estimate the requestor's share.
  The RSS growth of the timed pass (both sides; coarse, as freed memory of earlier rows is
  reused) is shown as well.
* **termination latency** (``--terminations`` instances of every row of ``--idle-at``): a
  provider is made to terminate a running instance's agreement (``net.faults``), one every
  ``--termination-gap`` seconds; the instance's ``running -> stopping`` change (trigger
  ``failure``) is timed from the moment the provider terminated (the emulator's provider acts
  on its next tick, up to 1 s after the fault is asked for; that delay is shown separately).
* **stop**: ``await cluster.stop()`` for the instances still running.

On a 2-core machine the whole run takes about 5 to 6 minutes, most of it at N=1000 (the traced
heap pass alone takes a minute or two there); ``--max-n 100`` runs in well under a minute.

    .venv/bin/python benchmarks/bench_services.py [--max-n 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import trio

# The other benchmark of this folder (the script's folder is on the path when it runs).
from bench_localnet import accept_notes, sign_many, start_activity

from golem_trio import Golem, Service, vm
from golem_trio.localnet import (
    LocalNet,
    ProviderPopulation,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.services import ServiceState, Trigger
from golem_trio.yagna import ApiConfig, DaemonUnreachable, NewAllocation, YagnaClient

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
#: Funds of the requestor identity: enough for the allocation whatever N is.
FUNDS = Decimal(10**7)
BUDGET = Decimal(10**6)
#: Frames kept per traced allocation (more slows tracing down a lot).
TRACE_FRAMES = 1
RUNNING_TIMEOUT = 900.0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """The resident set size of this process now (not the peak)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class IdleService(Service):
    """Deployed and started by the default ``start``; its ``run`` only sleeps."""

    @staticmethod
    async def get_payload() -> Any:
        return await vm.repo(image_hash=HASH, min_mem_gib=0.5, min_storage_gib=2.0)

    async def run(self) -> None:
        await trio.sleep_forever()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def fund(net: LocalNet) -> None:
    net.payment.balances[net.requestor.node_id] = FUNDS


# --- the SDK passes ----------------------------------------------------------------------------


async def sdk_pass(
    n: int,
    *,
    idle_window: float = 0.0,
    terminations: int = 0,
    gap: float = 0.02,
    trace: bool = False,
) -> dict[str, Any]:
    """A fresh LocalNet with ``n`` providers and one cluster of ``n`` idle instances.

    ``trace``: measure the heap the bring-up leaves (and nothing else: tracing slows the
    process down); otherwise time the bring-up, then (as asked) the idle window, the
    terminations and the stop."""
    row: dict[str, Any] = {"n": n}
    events = 0

    def count(_event: object) -> None:
        nonlocal events
        events += 1

    async with open_localnet(
        ProviderPopulation(count=n, seed=1), runtime=scripted_runtime_factory({}), serve=True
    ) as net:
        fund(net)
        gc.collect()
        rss_before = rss_bytes()
        if trace:
            tracemalloc.start(TRACE_FRAMES)
        async with Golem(
            budget=BUDGET,
            localnet=net,
            handle_signals=False,
            event_consumer=count,
            invoice_wait=10.0,
        ) as golem:
            started = time.perf_counter()
            cpu_started = time.process_time()
            cluster = await golem.run_service(IdleService, num_instances=n)
            with trio.fail_after(RUNNING_TIMEOUT):
                await cluster.wait_running(n)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            gc.collect()
            if trace:
                progress(f"  {n} running after {elapsed:.1f} s (traced); reading the heap")
                row["heap"] = heap(tracemalloc.take_snapshot(), n)
                tracemalloc.stop()
                progress("  stopping")
            else:
                row["seconds_to_running"] = round(elapsed, 3)
                row["agreements_per_s"] = round(n / elapsed, 1)
                row["cpu_seconds_to_running"] = round(cpu, 2)
                row["rss_growth_kib_per_instance"] = round((rss_bytes() - rss_before) / n / 1024, 1)
                if idle_window:
                    progress(f"  {n} running; idle window of {idle_window:g} s")
                    row["idle"] = await idle_cpu(n, idle_window)
                if terminations:
                    progress(f"  {terminations} provider terminations")
                    row["termination"] = await termination_latency(net, cluster, terminations, gap)
                running = cluster.states()[ServiceState.RUNNING]
                progress(f"  stopping {running} instances")
                started = time.perf_counter()
                await cluster.stop()
                row["stop"] = {
                    "instances": running,
                    "seconds": round(time.perf_counter() - started, 3),
                    "shutdown_timed_out": sum(r.shutdown_timed_out for r in cluster.records),
                    "cleanup_timed_out": sum(r.cleanup_timed_out for r in cluster.records),
                }
            row["events"] = events
            states = cluster.states()
            exiting = time.perf_counter()
        row["golem_exit_seconds"] = round(time.perf_counter() - exiting, 3)
        row["final_states"] = {s.value: k for s, k in states.items()}
        report = golem.payment_report
        row["payment_report"] = None if report is None else repr(report)[:300]
    return row


def heap(snapshot: tracemalloc.Snapshot, n: int) -> dict[str, Any]:
    """Live traced bytes (allocated since tracing started), in all and per instance."""
    size = sum(stat.size for stat in snapshot.statistics("filename"))
    return {"total_mib": round(size / 2**20, 2), "kib_per_instance": round(size / n / 1024, 1)}


async def idle_cpu(n: int, window: float) -> dict[str, Any]:
    cpu = time.process_time()
    wall = time.perf_counter()
    await trio.sleep(window)
    used = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return {
        "window_s": round(wall, 2),
        "cpu_s": round(used, 3),
        "cpu_share": round(used / wall, 3),
        "cpu_ms_per_instance_per_s": round(used / wall / n * 1000, 4),
    }


async def termination_latency(
    net: LocalNet, cluster: Any, count: int, gap: float
) -> dict[str, Any]:
    records = [r for r in cluster.records if r.state is ServiceState.RUNNING][:count]
    asked: dict[str, float] = {}
    by_agreement = {}
    for record in records:
        agreement_id = record.agreement.agreement_id
        by_agreement[agreement_id] = record
        asked[agreement_id] = trio.current_time()
        net.faults.terminate_agreement(agreement_id)
        await trio.sleep(gap)
    with trio.move_on_after(30):
        # The times come from the state histories; this loop only waits for them to be there.
        while any(r.state is ServiceState.RUNNING for r in records):  # noqa: ASYNC110
            await trio.sleep(0.05)
    fired = {
        f.target: net.faults.started + f.at
        for f in net.faults.fired
        if f.kind.value == "terminate-agreement"
    }
    from_provider: list[float] = []
    from_ask: list[float] = []
    tick: list[float] = []
    other = 0
    for agreement_id, record in by_agreement.items():
        change = next((c for c in record.history if c.old is ServiceState.RUNNING), None)
        if change is None or change.trigger is not Trigger.FAILURE:
            other += 1
            continue
        from_ask.append(change.at - asked[agreement_id])
        if agreement_id in fired:
            from_provider.append(change.at - fired[agreement_id])
            tick.append(fired[agreement_id] - asked[agreement_id])

    def ms(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"count": 0}
        return {
            "count": len(values),
            "median_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(percentile(values, 0.99) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2),
        }

    return {
        "asked": len(records),
        "not_seen_as_failure": other,
        "provider_to_stopping": ms(from_provider),
        "ask_to_provider": ms(tick),
        "ask_to_stopping": ms(from_ask),
    }


# --- the emulator-only baseline ----------------------------------------------------------------


async def baseline_pass(n: int, idle_window: float) -> dict[str, Any]:
    """A fresh LocalNet with ``n`` providers, ``n`` agreements and ``n`` started activities held
    by the raw client (no SDK): the heap they leave (traced) and the idle CPU after."""
    row: dict[str, Any] = {"n": n}
    retries = 0
    async with open_localnet(
        ProviderPopulation(count=n, seed=1), runtime=scripted_runtime_factory({}), serve=True
    ) as net:
        assert net.url is not None
        fund(net)
        gc.collect()
        tracemalloc.start(TRACE_FRAMES)
        config = ApiConfig(app_key=net.app_key, api_url=net.url)
        async with YagnaClient(config) as yagna:
            allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(900)))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept_notes, yagna, allocation.allocation_id)
                signed = await sign_many(yagna, n, parallel=50)
                limiter = trio.CapacityLimiter(50)

                async def one(agreement_id: str) -> None:
                    nonlocal retries
                    async with limiter:
                        # A pooled connection the server has just closed fails the request;
                        # start afresh (a spare activity on the same agreement is harmless).
                        for attempt in range(3):
                            try:
                                await start_activity(yagna, agreement_id)
                                return
                            except DaemonUnreachable:
                                retries += 1
                                if attempt == 2:
                                    raise

                async with trio.open_nursery() as starters:
                    for agreement_id in signed:
                        starters.start_soon(one, agreement_id)
                gc.collect()
                row["heap"] = heap(tracemalloc.take_snapshot(), n)
                tracemalloc.stop()
                progress(f"  {n} raw agreements and activities; idle window of {idle_window:g} s")
                row["idle"] = await idle_cpu(n, idle_window)
                nursery.cancel_scope.cancel()
    row["retried_requests"] = retries
    return row


# --- running it all -----------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    counts = [n for n in (1, 10, 100, 1000) if n <= args.max_n]
    idle_at = [n for n in args.idle_at if n <= args.max_n]
    rows = []
    for n in counts:
        progress(f"N={n}: bringing {n} instances up")
        terminations = min(args.terminations, n // 2) if n in idle_at else 0
        row = await sdk_pass(
            n,
            idle_window=args.idle_window if n in idle_at else 0.0,
            terminations=terminations,
            gap=args.termination_gap,
        )
        progress(f"N={n}: {row['seconds_to_running']} s to running")
        rows.append(row)
    heaps = {}
    baselines = {}
    for n in idle_at:
        progress(f"N={n}: heap pass (traced)")
        heaps[n] = (await sdk_pass(n, trace=True))["heap"]
        progress(f"N={n}: emulator-only baseline")
        baselines[n] = await baseline_pass(n, args.idle_window)
    return {
        "setup": {
            "where": "one process: LocalNet served over real loopback sockets (hypercorn) and "
            "the Golem engine talking to it over HTTP; scripted runtime (no real processes); "
            "real clock",
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "idle_window_s": args.idle_window,
            "termination_gap_s": args.termination_gap,
        },
        "rows": rows,
        "heap": {str(n): h for n, h in heaps.items()},
        "baseline": {str(n): b for n, b in baselines.items()},
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "Services on LocalNet: requestor and emulator in one process, over real loopback "
        "sockets; scripted runtime; real clock.",
        "",
        "| instances | time to running (s) | agreements/s | CPU s (both sides) "
        "| stop: instances, s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        stop = row["stop"]
        late = stop["cleanup_timed_out"] + stop["shutdown_timed_out"]
        note = f" ({late} cut short by the stopping bounds)" if late else ""
        lines.append(
            f"| {row['n']} | {row['seconds_to_running']} | {row['agreements_per_s']} "
            f"| {row['cpu_seconds_to_running']} | {stop['instances']}, {stop['seconds']}{note} |"
        )
    idle_rows = [r for r in result["rows"] if "idle" in r]
    if idle_rows:
        lines += [
            "",
            "Idle running instances (run() sleeps; default health check every 60 s):",
            "",
            "| instances | CPU ms/s per instance: all | emulator-only baseline "
            "| difference (SDK + serving it) | heap KiB/instance: all | baseline "
            "| difference (requestor) | RSS growth KiB/instance (all) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in idle_rows:
            n = row["n"]
            cpu = row["idle"]["cpu_ms_per_instance_per_s"]
            base = result["baseline"][str(n)]
            base_cpu = base["idle"]["cpu_ms_per_instance_per_s"]
            kib = result["heap"][str(n)]["kib_per_instance"]
            base_kib = base["heap"]["kib_per_instance"]
            lines.append(
                f"| {n} | {cpu:.4f} | {base_cpu:.4f} | {cpu - base_cpu:.4f} | {kib} | {base_kib} "
                f"| {kib - base_kib:.1f} | {row['rss_growth_kib_per_instance']} |"
            )
        lines += [
            "",
            "Provider terminates a running instance's agreement -> instance enters stopping:",
            "",
            "| instances running | terminations | provider terminates -> stopping: median, "
            "p99, max (ms) | fault asked -> provider acts (its 1 s tick): median (ms) "
            "| not seen as a failure |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in idle_rows:
            term = row.get("termination")
            if not term:
                continue
            lat = term["provider_to_stopping"]
            tick = term["ask_to_provider"]
            lines.append(
                f"| {row['n']} | {lat['count']} | {lat.get('median_ms')}, {lat.get('p99_ms')}, "
                f"{lat.get('max_ms')} | {tick.get('median_ms')} | {term['not_seen_as_failure']} |"
            )
    if len(idle_rows) >= 2:
        low, high = idle_rows[0], idle_rows[-1]

        def ratio(a: float, b: float) -> str:
            return f"x{a / b:.2f}" if b else "n/a"

        def requestor_kib(n: int) -> float:
            return float(
                result["heap"][str(n)]["kib_per_instance"]
                - result["baseline"][str(n)]["heap"]["kib_per_instance"]
            )

        lines += [
            "",
            f"{high['n']} vs {low['n']} instances (x{high['n'] / low['n']:g}), per instance: "
            "time to running "
            + ratio(high["seconds_to_running"] / high["n"], low["seconds_to_running"] / low["n"])
            + "; idle CPU "
            + ratio(
                high["idle"]["cpu_ms_per_instance_per_s"], low["idle"]["cpu_ms_per_instance_per_s"]
            )
            + "; requestor heap "
            + ratio(requestor_kib(high["n"]), requestor_kib(low["n"])),
        ]
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--max-n", type=int, default=1000, help="largest N of 1, 10, 100, 1000 to run"
    )
    parser.add_argument(
        "--idle-at",
        type=int,
        nargs="*",
        default=[100, 1000],
        help="the N at which idle cost, heap and terminations are measured",
    )
    parser.add_argument("--idle-window", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--terminations",
        type=int,
        default=100,
        help="provider terminations per row of --idle-at (at most half of N)",
    )
    parser.add_argument("--termination-gap", type=float, default=0.02, help="seconds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    result = trio.run(main, args)
    result["setup"]["total_seconds"] = round(time.perf_counter() - started, 1)
    print(table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    cli()
