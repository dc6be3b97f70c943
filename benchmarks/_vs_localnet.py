"""The LocalNet process of ``bench_vs_yapapi.py``: a fresh network with N providers, served
on loopback, in a process of its own so that its CPU time is measured apart from the
requestor's.

It prints one JSON object a line on standard output (for the benchmark, never the terminal:
the first line carries the network's throwaway app key) and takes one command a line on
standard input:

* ``watch``: print ``all_terminated`` (with its time) once every agreement is terminated;
* ``stats``: print this process's CPU time, the HTTP requests served (emulator) and the
  agreements by state;
* ``quit``: stop the network and exit.

    .venv/bin/python benchmarks/_vs_localnet.py --providers N [--backend yagna]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import trio
from _vs_common import cpu_seconds

from golem_trio.localnet import (
    LocalNet,
    ProviderPopulation,
    Reply,
    open_localnet,
    scripted_runtime_factory,
    tune_gc_for_serving,
)
from golem_trio.localnet.emulator import AgreementState

#: Funds of the requestor identity: enough for any allocation of the benchmark.
FUNDS = Decimal(10**7)
#: How often (s) the termination watch looks at the agreements when no end is to be awaited.
WATCH_EVERY = 0.01


def echo(args: list[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n")


def say(event: str, **fields: Any) -> None:
    line = {"event": event, "t": time.monotonic(), "cpu": cpu_seconds(), **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def agreement_states(net: LocalNet) -> Counter[str]:
    return Counter(str(a.state) for a in net.market.agreements.values())


async def watch_terminations(net: LocalNet) -> None:
    """Say ``all_terminated`` as soon as every approved agreement is terminated: woken by each
    agreement's end (not by polling, whose period would round the stop figures up)."""
    while True:
        agreements = list(net.market.agreements.values())
        approved = [a for a in agreements if a.state is AgreementState.APPROVED]
        if not approved:
            states = agreement_states(net)
            if states["Terminated"] and states["Terminated"] == len(agreements) - (
                states["Proposal"] + states["Pending"]
            ):
                say("all_terminated", agreements=states["Terminated"])
                return
            # Something else (an agreement expired or cancelled): look again shortly.
            await trio.sleep(WATCH_EVERY)
            continue
        for agreement in approved:
            await agreement.ended.wait()


async def commands(net: LocalNet | None) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with trio.open_nursery() as nursery:
        while True:
            chunk = await stdin.receive_some()
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = line.decode().strip()
                if command == "quit":
                    nursery.cancel_scope.cancel()
                    return
                if command == "watch" and net is not None:
                    nursery.start_soon(watch_terminations, net)
                elif command == "stats":
                    fields: dict[str, Any] = {}
                    if net is not None:
                        served = net.requests_served
                        fields = {
                            "requests": sum(served.values()),
                            "by_endpoint": dict(served.most_common()),
                            "agreements": dict(agreement_states(net)),
                        }
                    say("stats", **fields)
        nursery.cancel_scope.cancel()


async def serve_emulator(providers: int) -> None:
    runtime = scripted_runtime_factory({"/bin/echo": echo})
    async with open_localnet(
        ProviderPopulation(count=providers, seed=1), runtime=runtime, serve=True, port=0
    ) as net:
        net.payment.balances[net.requestor.node_id] = FUNDS
        # As `golem-trio localnet` serves it: this process only serves the network.
        tune_gc_for_serving()
        say("ready", url=net.url, key=net.app_key)
        await commands(net)


async def serve_yagna(providers: int) -> None:
    from golem_trio.localnet.yagna import open_yagna_localnet

    specs = ProviderPopulation(count=providers, seed=1).specs()
    runtime = scripted_runtime_factory({"/bin/echo": echo})
    async with open_yagna_localnet(specs, runtime=runtime, nodes=1) as net:
        tune_gc_for_serving()
        say("ready", url=net.url, key=net.app_key)
        await commands(None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--providers", type=int, required=True)
    parser.add_argument("--backend", choices=("emulator", "yagna"), default="emulator")
    args = parser.parse_args()
    serve = serve_yagna if args.backend == "yagna" else serve_emulator
    trio.run(serve, args.providers)


if __name__ == "__main__":
    main()
