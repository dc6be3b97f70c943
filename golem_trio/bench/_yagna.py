"""Running a scenario against real yagna daemons (``golem-trio bench --backend yagna``).

The scenario's providers are LocalNet's simulated providers serving real daemons
(:func:`~golem_trio.localnet.yagna.open_yagna_localnet`: offline, payments on a local chain),
and the engine talks to the requestor's daemon through a fault proxy
(:func:`~golem_trio.localnet.open_fault_proxy`). Faults are fired as on the emulator, on the
wall clock: a provider terminating an agreement is its agent terminating it through its
daemon, an activity death is its exe-unit reporting ``Terminated``, dishonest billing is the
agents issuing falsified documents, and daemon faults (5xx bursts, latency, stalls, outages)
are the proxy's, by operationId. The figures come from the engine's events and from the
requestor daemon's books (:func:`~golem_trio.localnet.yagna.yagna_ledger`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import trio

from golem_trio.golem import Golem
from golem_trio.localnet import FaultPlan, open_fault_proxy, shell_runtime_factory
from golem_trio.localnet.yagna import YagnaFaults, open_yagna_localnet, yagna_ledger
from golem_trio.market import StaticResolver, use_resolver
from golem_trio.testing import snapshot_tasks
from golem_trio.yagna import ApiConfig

from ._runner import Column, Recorder, drive_service, golem_column, provider_specs, runs_under
from ._scenario import Scenario, resolve_service

__all__ = ["BACKENDS", "run_yagna_column", "run_yagna_scenario"]

#: Where ``golem-trio bench`` runs a scenario: the embedded emulator, or real daemons.
BACKENDS = ("localnet", "yagna")


async def run_yagna_column(
    scenario: Scenario,
    *,
    observer: Callable[[Recorder], None] | None = None,
    nodes: int | None = None,
) -> Column:
    """Run ``scenario`` once against real daemons (on the wall clock: it takes the
    scenario's duration, plus a few seconds to start the daemons) and return golem-trio's
    figures. ``nodes``: as :func:`~golem_trio.localnet.yagna.open_yagna_localnet`'s."""
    resolve_service(scenario.service.kind)
    recorder = Recorder(target=scenario.service.instances)
    faults = YagnaFaults(inflation_factor=FaultPlan(seed=scenario.seed).inflation)
    specs = provider_specs(scenario)
    async with open_yagna_localnet(
        specs, runtime=shell_runtime_factory(), faults=faults, nodes=nodes
    ) as net:
        async with open_fault_proxy(net.url, seed=scenario.seed) as proxy:
            faults.proxy = proxy
            rng = random.Random(f"{scenario.seed}/cheats")
            for name in rng.sample(faults.provider_names(), scenario.providers.dishonest):
                for cheat in scenario.providers.cheats:
                    faults.dishonest(name, cheat)
            with use_resolver(StaticResolver()):
                golem = Golem(
                    budget=scenario.budget,
                    api_config=ApiConfig(app_key=net.app_key, api_url=proxy.url),
                    handle_signals=False,
                    event_consumer=recorder,
                    seed=scenario.seed,
                )
                before = snapshot_tasks()
                await drive_service(golem, scenario, recorder, faults, observer)
            leftover = [
                task
                for task in snapshot_tasks().new_since(before)
                if not runs_under(task, faults.nursery) and not runs_under(task, proxy.nursery)
            ]
        report = golem.payment_report
        allocations = []
        if report is not None:
            allocations.append(
                {
                    "id": report.allocation_id,
                    "totalAmount": str(report.budget),
                    "spentAmount": str(report.spent),
                }
            )
        book = await yagna_ledger(net, allocations=allocations)
    column = golem_column(recorder, scenario, book, report, len(leftover))
    return attrs.evolve(column, clock="wall", backend="yagna")


def run_yagna_scenario(
    scenario: Scenario,
    *,
    observer: Callable[[Recorder], None] | None = None,
    nodes: int | None = None,
) -> Column:
    """:func:`run_yagna_column` in a new ``trio.run``."""

    async def main() -> Column:
        return await run_yagna_column(scenario, observer=observer, nodes=nodes)

    return trio.run(main)
