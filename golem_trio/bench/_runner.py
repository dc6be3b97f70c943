"""Running a scenario: LocalNet with the scenario's providers, a ``Golem`` on it, the faults
fired on their time axis, and the figures read from the engine's events and LocalNet's ledger.

In virtual time (the default) the run is a ``trio.run`` under a ``MockClock`` that jumps
whenever every task waits, so half an hour of scenario takes seconds; trio's own scheduling
choices are seeded too, so the same scenario and seed give the same report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import attrs
import trio
import trio.testing

from golem_trio.events import (
    DebitNoteAccepted,
    DebitNoteRefused,
    InstanceRestarting,
    InvoiceAccepted,
    InvoiceRejected,
    ServiceStateChanged,
)
from golem_trio.golem import Golem
from golem_trio.localnet import (
    DaemonFault,
    FaultPlan,
    LocalNet,
    ProviderPopulation,
    ProviderSpec,
    ledger,
    open_localnet,
    shell_runtime_factory,
)
from golem_trio.localnet.emulator import FaultError
from golem_trio.payment import PaymentReport
from golem_trio.services import Cluster, ServiceState
from golem_trio.testing import check_invariants, snapshot_tasks

from ._scenario import DAEMON_FAULTS, DAEMON_KIND, FaultType, Scenario, resolve_service

__all__ = [
    "CLOCKS",
    "EPOCH",
    "Column",
    "EmulatorSurface",
    "FaultDriver",
    "FaultSurface",
    "Recorder",
    "cluster_targets",
    "drive_service",
    "figures_of",
    "golem_column",
    "open_scenario_net",
    "provider_specs",
    "run_column",
    "run_scenario",
    "runs_under",
]

#: Where the network's clock starts in virtual time (a fixed date: no wall-clock stamps).
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CLOCKS = ("virtual", "wall")
#: Funds of the requestor's identity on the network: more than any scenario's budget.
_FUNDS = Decimal(10**6)
#: How long the engine may take to wind down after the scenario's end.
_WIND_DOWN = 600.0
_V = TypeVar("_V")
_LIVE_AGREEMENTS = frozenset({"Proposal", "Pending", "Approved"})


def _r(value: float) -> float:
    return round(value, 3)


@attrs.define
class Recorder:
    """What a run's figures are made of, filled from the engine's events (and by the fault
    driver) as the run goes; times are seconds since the service was asked for."""

    target: int
    clock: Callable[[], float] = trio.current_time
    started: float | None = None
    running: set[str] = attrs.field(factory=set)
    #: (time, instances running) at every change.
    running_series: list[tuple[float, int]] = attrs.field(factory=list)
    restarts: int = 0
    #: Faults waiting for their instance to run again: instance id -> fault times.
    awaiting: dict[str, list[float]] = attrs.field(factory=dict)
    recoveries: list[float] = attrs.field(factory=list)
    accepted: dict[str, Decimal] = attrs.field(factory=dict)
    #: (time, total accepted) at every change.
    spend_series: list[tuple[float, Decimal]] = attrs.field(factory=list)
    refused: int = 0
    #: Faults by kind: how many were fired, and how many found nothing to act on.
    fired: dict[str, int] = attrs.field(factory=dict)
    missed: dict[str, int] = attrs.field(factory=dict)
    #: (time, kind) of every fault fired.
    fault_times: list[tuple[float, str]] = attrs.field(factory=list)
    #: Each instance's latest state.
    states: dict[str, str] = attrs.field(factory=dict)
    #: Called after every change (a live view); not part of the figures.
    listener: Callable[[Recorder], None] | None = None

    def now(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def start(self) -> None:
        self.started = self.clock()
        self.running_series.append((0.0, 0))
        self.spend_series.append((0.0, Decimal(0)))

    def __call__(self, event: object) -> None:
        """The engine's event consumer."""
        self._record(event)
        if self.listener is not None:
            self.listener(self)

    def _record(self, event: object) -> None:
        now = self.now()
        if isinstance(event, ServiceStateChanged):
            self.states[event.instance_id] = event.new
            if event.new == ServiceState.RUNNING.value:
                self.running.add(event.instance_id)
                for at in self.awaiting.pop(event.instance_id, []):
                    self.recoveries.append(now - at)
            elif event.old == ServiceState.RUNNING.value:
                self.running.discard(event.instance_id)
            else:
                return
            self.running_series.append((now, len(self.running)))
        elif isinstance(event, InstanceRestarting):
            self.restarts += 1
        elif isinstance(event, DebitNoteAccepted):
            self._spend(now, event.agreement_id, event.amount, keep_max=True)
        elif isinstance(event, InvoiceAccepted):
            self._spend(now, event.agreement_id, event.amount, keep_max=False)
        elif isinstance(event, DebitNoteRefused | InvoiceRejected):
            self.refused += 1

    def _spend(self, now: float, agreement_id: str, amount: Decimal, *, keep_max: bool) -> None:
        old = self.accepted.get(agreement_id, Decimal(0))
        self.accepted[agreement_id] = max(old, amount) if keep_max else amount
        self.spend_series.append((now, sum(self.accepted.values(), Decimal(0))))

    def fault(self, kind: str, *, hit: bool, instance_id: str | None = None) -> None:
        now = self.now()
        self.fired[kind] = self.fired.get(kind, 0) + 1
        self.fault_times.append((now, kind))
        if not hit:
            self.missed[kind] = self.missed.get(kind, 0) + 1
        elif instance_id is not None:
            self.awaiting.setdefault(instance_id, []).append(now)
            # The instance stops serving when the fault hits it, whenever (and whether) its
            # SDK notices: it counts as running again once it reports running anew.
            if instance_id in self.running:
                self.running.discard(instance_id)
                self.running_series.append((now, len(self.running)))
        if self.listener is not None:
            self.listener(self)

    def spent(self) -> Decimal:
        """What was accepted so far."""
        return self.spend_series[-1][1] if self.spend_series else Decimal(0)

    def availability(self, duration: float) -> float:
        """Instance-time running (at most the target counts) over the target's, within
        ``duration``. An instance a fault hit is not running from that moment until it
        reports running again."""
        total = 0.0
        series = [*self.running_series, (duration, 0)]
        for (at, count), (after, _next) in itertools.pairwise(series):
            if at >= duration:
                break
            total += (min(after, duration) - at) * min(count, self.target)
        return total / (self.target * duration)


@attrs.frozen
class Column:
    """One implementation's figures for a scenario, JSON-able (:meth:`to_json`)."""

    implementation: str
    figures: Mapping[str, Any]
    series: Mapping[str, Any]
    #: The clock it ran on: ``"virtual"`` or ``"wall"``.
    clock: str = "virtual"
    #: The network it ran on: ``"localnet"`` (the emulator) or ``"yagna"`` (real daemons).
    backend: str = "localnet"

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "backend": self.backend,
            "clock": self.clock,
            "figures": dict(self.figures),
            "series": dict(self.series),
        }


def figures_of(
    recorder: Recorder,
    scenario: Scenario,
    book: Mapping[str, Any],
    *,
    unpaid: list[tuple[str, Decimal | None]],
    leftover_tasks: int | None,
    invariant_problems: list[str],
    implementation: str = "golem-trio",
) -> Column:
    """The figures of one run from what was recorded and the ledger at the end."""
    recoveries = sorted(recorder.recoveries)
    waiting = sum(len(times) for times in recorder.awaiting.values())
    spent = sum((Decimal(a["spentAmount"]) for a in book["allocations"]), Decimal(0))
    honest = _honest_amount(book)
    dishonest_docs = sum(
        1 for doc in [*book["debitNotes"], *book["invoices"]] if doc.get("honest") is False
    )
    figures: dict[str, Any] = {
        "availability": _r(recorder.availability(scenario.duration)),
        "recovery": {
            "faults": len(recoveries) + waiting,
            "recovered": len(recoveries),
            "unrecovered": waiting,
            "p50_s": _r(_quantile(recoveries, 0.5)) if recoveries else None,
            "p99_s": _r(_quantile(recoveries, 0.99)) if recoveries else None,
            "max_s": _r(recoveries[-1]) if recoveries else None,
        },
        "restarts": recorder.restarts,
        "faults": {
            "fired": dict(sorted(recorder.fired.items())),
            "missed": dict(sorted(recorder.missed.items())),
        },
        "money": {
            "budget": str(scenario.budget),
            "spent": _money(spent),
            "honest": _money(honest),
            "dishonest_documents": dishonest_docs,
            "refused_documents": recorder.refused,
            "unpaid": len(unpaid),
            "unpaid_amount": _money(sum((a or Decimal(0) for _id, a in unpaid), Decimal(0))),
        },
        "leaks": {
            "tasks": leftover_tasks,
            "agreements": sum(1 for a in book["agreements"] if a["state"] in _LIVE_AGREEMENTS),
            "activities": sum(1 for a in book["activities"] if a["state"] != "Terminated"),
        },
        "invariants": {"ok": not invariant_problems, "problems": list(invariant_problems)},
    }
    series = {
        "running": [[t, n] for t, n in _settled(recorder.running_series)],
        "spend": [[t, _money(amount)] for t, amount in _settled(recorder.spend_series)],
        "recoveries": [_r(value) for value in recoveries],
        "faults": [[_r(t), kind] for t, kind in recorder.fault_times],
    }
    return Column(implementation, figures, series)


def _settled(series: list[tuple[float, _V]]) -> list[tuple[float, _V]]:
    """One point per (rounded) moment, the value it settled at: events of one moment come in
    an order the report must not depend on."""
    settled: dict[float, _V] = {}
    for at, value in series:
        settled[_r(at)] = value
    return list(settled.items())


def _honest_amount(book: Mapping[str, Any]) -> Decimal:
    """What honest providers' documents ask for: per agreement its honest invoice, else its
    latest honest debit note."""
    total = Decimal(0)
    invoiced: set[str] = set()
    for invoice in book["invoices"]:
        if invoice.get("honest") is not False and invoice["agreementId"] not in invoiced:
            invoiced.add(invoice["agreementId"])
            total += Decimal(invoice["amount"])
    notes: dict[str, Decimal] = {}
    for note in book["debitNotes"]:
        agreement = note["agreementId"]
        if note.get("honest") is not False and agreement not in invoiced:
            notes[agreement] = max(
                notes.get(agreement, Decimal(0)), Decimal(note["totalAmountDue"])
            )
    return total + sum(notes.values(), Decimal(0))


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('1e-9')):f}"


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values by the nearest-rank method."""
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


# --- the run -----------------------------------------------------------------------------------


#: The running instances a fault may hit: (agreement id, instance id) pairs.
Targets = Callable[[], list[tuple[str, str]]]


def cluster_targets(cluster: Cluster[Any]) -> Targets:
    """The running instances of a golem-trio cluster."""

    def targets() -> list[tuple[str, str]]:
        return [
            (record.agreement.agreement_id, record.id)
            for record in cluster.records
            if record.state is ServiceState.RUNNING and record.agreement is not None
        ]

    return targets


class FaultSurface(Protocol):
    """Where a :class:`FaultDriver` fires faults: a network of either backend."""

    def provider_names(self) -> list[str]:
        """The providers' names, sorted."""
        ...

    def terminate_agreement(self, agreement_id: str, *, code: str) -> object:
        """Make the agreement's provider terminate it; :class:`FaultError` if it cannot."""
        ...

    def kill_activity(self, agreement_id: str) -> object:
        """Kill the agreement's live activity; :class:`FaultError` if none is."""
        ...

    def dishonest(self, provider: str, kind: str) -> None:
        """Make ``provider`` cheat on billing in way ``kind`` from now on."""
        ...

    def set_daemon_faults(self, entries: tuple[DaemonFault, ...]) -> None:
        """Apply exactly these daemon faults from now on."""
        ...


@attrs.define(eq=False)
class EmulatorSurface:
    """The embedded (or served) LocalNet as a :class:`FaultSurface`: daemon faults join its
    fault plan's own entries while they last."""

    net: LocalNet
    base: FaultPlan = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.base = self.net.faults.plan

    def provider_names(self) -> list[str]:
        return sorted(agent.spec.name for _identity, agent in self.net.providers)

    def terminate_agreement(self, agreement_id: str, *, code: str) -> object:
        return self.net.faults.terminate_agreement(agreement_id, code=code)

    def kill_activity(self, agreement_id: str) -> object:
        return self.net.faults.kill_activity(agreement_id)

    def dishonest(self, provider: str, kind: str) -> None:
        self.net.faults.dishonest(provider, kind)

    def set_daemon_faults(self, entries: tuple[DaemonFault, ...]) -> None:
        # The plan's daemon entries are read on every request.
        self.net.faults.plan = attrs.evolve(self.base, daemon=(*self.base.daemon, *entries))


class FaultDriver:
    """Fires a scenario's faults at their times on a running network (``surface``); instance
    faults hit one of ``targets()``, drawn under the seed."""

    def __init__(
        self, scenario: Scenario, surface: FaultSurface, targets: Targets, recorder: Recorder
    ) -> None:
        self.scenario = scenario
        self.surface = surface
        self.targets = targets
        self.recorder = recorder
        self.rng = random.Random(f"{scenario.seed}/targets")
        self.windows: list[tuple[int, DaemonFault]] = []
        self.names = surface.provider_names()

    async def run(self) -> None:
        """Fire every fault at its time (returns after the last one); cancel it to stop."""
        await trio.lowlevel.checkpoint()
        actions: list[tuple[float, int, Callable[[], None]]] = []
        for n, firing in enumerate(self.scenario.firings()):
            fault = self.scenario.faults[firing.index]
            if firing.kind in DAEMON_FAULTS:
                entry = DaemonFault(
                    fault.operation if firing.kind is not FaultType.DAEMON_OUTAGE else "*",
                    DAEMON_KIND[firing.kind],
                    1.0 if firing.kind is FaultType.DAEMON_OUTAGE else fault.rate,
                    _daemon_value(firing.kind, fault.status, fault.seconds),
                )
                actions.append((firing.at, n, self._open_window(n, firing.kind, entry)))
                actions.append((firing.at + fault.duration, n, self._close_window(n)))
            else:
                actions.append((firing.at, n, self._instance_fault(firing.index, firing.kind)))
        actions.sort(key=lambda action: (action[0], action[1]))
        for at, _n, action in actions:
            await trio.sleep(max(0.0, at - self.recorder.now()))
            action()

    def _open_window(self, n: int, kind: FaultType, entry: DaemonFault) -> Callable[[], None]:
        def open_window() -> None:
            self.windows.append((n, entry))
            self._apply()
            self.recorder.fault(kind.value, hit=True)

        return open_window

    def _close_window(self, n: int) -> Callable[[], None]:
        def close_window() -> None:
            self.windows = [(m, entry) for m, entry in self.windows if m != n]
            self._apply()

        return close_window

    def end_windows(self) -> None:
        """End every daemon fault window still open."""
        self.windows = []
        self._apply()

    def _apply(self) -> None:
        # The window's entries are in force exactly while the window lasts.
        self.surface.set_daemon_faults(tuple(entry for _n, entry in self.windows))

    def _instance_fault(self, index: int, kind: FaultType) -> Callable[[], None]:
        fault = self.scenario.faults[index]

        def fire() -> None:
            if kind is FaultType.DISHONEST_BILLING:
                for name in self.rng.sample(self.names, fault.providers):
                    self.surface.dishonest(name, fault.billing)
                self.recorder.fault(kind.value, hit=True)
                return
            running = sorted(self.targets())
            if not running:
                self.recorder.fault(kind.value, hit=False)
                return
            agreement_id, instance_id = self.rng.choice(running)
            try:
                if kind is FaultType.PROVIDER_TERMINATION:
                    self.surface.terminate_agreement(agreement_id, code=fault.code)
                else:
                    self.surface.kill_activity(agreement_id)
            except FaultError:
                self.recorder.fault(kind.value, hit=False)
                return
            self.recorder.fault(kind.value, hit=True, instance_id=instance_id)

        return fire


def _daemon_value(kind: FaultType, status: int, seconds: float) -> float | None:
    if kind is FaultType.DAEMON_5XX:
        return float(status)
    if kind is FaultType.DAEMON_OUTAGE:
        return 503.0
    return seconds


async def drive_service(
    golem: Golem,
    scenario: Scenario,
    recorder: Recorder,
    surface: FaultSurface,
    observer: Callable[[Recorder], None] | None = None,
) -> None:
    """Enter ``golem``, ask for the scenario's service, fire its faults on ``surface`` for the
    scenario's duration, then stop the service (daemon faults end with the scenario: the
    wind-down is not part of it) and leave."""
    service_class = resolve_service(scenario.service.kind)
    params: list[dict[str, Any]] | None = None
    if scenario.service.kind == "echo":
        params = [{"every": scenario.service.every}] * scenario.service.instances
    async with golem:
        if observer is not None:
            observer(recorder)
        recorder.start()
        cluster = await golem.run_service(
            service_class,
            instance_params=params,
            num_instances=None if params else scenario.service.instances,
            restart=scenario.service.restart.policy(),
            health=scenario.service.health.check(),
        )
        driver = FaultDriver(scenario, surface, cluster_targets(cluster), recorder)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driver.run)
                await trio.sleep(scenario.duration - recorder.now())
                nursery.cancel_scope.cancel()
        finally:
            driver.end_windows()
        with trio.move_on_after(_WIND_DOWN):
            await cluster.stop()


async def run_column(
    scenario: Scenario, *, observer: Callable[[Recorder], None] | None = None
) -> Column:
    """Run ``scenario`` once, on LocalNet in this trio run, and return golem-trio's figures.

    ``observer`` is called with the recorder before the service is asked for (a live view
    sets its ``listener``).
    Cancelling it cancels the run; the network and the engine are taken down either way.
    """
    resolve_service(scenario.service.kind)
    recorder = Recorder(target=scenario.service.instances)
    async with open_scenario_net(scenario, fixed_epoch=True) as net:
        golem = Golem(
            budget=scenario.budget,
            localnet=net,
            handle_signals=False,
            event_consumer=recorder,
            seed=scenario.seed,
        )
        before = snapshot_tasks()
        await drive_service(golem, scenario, recorder, EmulatorSurface(net), observer)
        leftover = [
            task
            for task in snapshot_tasks().new_since(before)
            if not runs_under(task, net.daemon.nursery)
        ]
        book = ledger(net)
    return golem_column(recorder, scenario, book, golem.payment_report, len(leftover))


def golem_column(
    recorder: Recorder,
    scenario: Scenario,
    book: Mapping[str, Any],
    report: PaymentReport | None,
    leftover_tasks: int,
) -> Column:
    """golem-trio's figures from its recorder, the network's ledger and its payment report."""
    unpaid = [] if report is None else [(u.agreement_id, u.amount) for u in report.unpaid]
    return figures_of(
        recorder,
        scenario,
        book,
        unpaid=unpaid,
        leftover_tasks=leftover_tasks,
        invariant_problems=check_invariants(book, budget=scenario.budget),
    )


def provider_specs(scenario: Scenario) -> list[ProviderSpec]:
    """The scenario's provider population."""
    population = scenario.providers
    return [
        attrs.evolve(spec, debit_note_interval=population.debit_note_interval)
        for spec in ProviderPopulation(
            count=population.count,
            seed=scenario.seed,
            cpu_sec=population.cpu_sec,
            duration_sec=population.duration_sec,
            start=population.start,
        ).specs()
    ]


@contextlib.asynccontextmanager
async def open_scenario_net(
    scenario: Scenario, *, fixed_epoch: bool, serve: bool = False
) -> AsyncIterator[LocalNet]:
    """A LocalNet with the scenario's providers (the scripted shell as their runtime), the
    requestor funded, and the providers that cheat from the start cheating."""
    specs = provider_specs(scenario)
    async with open_localnet(
        specs,
        seed=scenario.seed,
        epoch=EPOCH if fixed_epoch else None,
        runtime=shell_runtime_factory(),
        faults=FaultPlan(seed=scenario.seed),
        serve=serve,
    ) as net:
        net.payment.balances[net.requestor.node_id] = _FUNDS
        rng = random.Random(f"{scenario.seed}/cheats")
        for name in rng.sample(sorted(s.name for s in specs), scenario.providers.dishonest):
            for cheat in scenario.providers.cheats:
                net.faults.dishonest(name, cheat)
        yield net


def runs_under(task: trio.lowlevel.Task, nursery: trio.Nursery | None) -> bool:
    """Whether ``task`` runs (at any depth) under ``nursery``."""
    parent: trio.Nursery | None = task.parent_nursery
    while parent is not None:
        if parent is nursery:
            return True
        parent = parent.parent_task.parent_nursery
    return False


@contextlib.contextmanager
def _seeded_scheduler(seed: int) -> Iterator[None]:
    """Make the choices trio's scheduler makes (the order of each batch of runnable tasks)
    follow ``seed``, as trio does under Hypothesis, so that a virtual-time run is the same run
    every time; restored afterwards."""
    from trio._core import _run as trio_run  # trio offers no public switch for this

    state = trio_run._r.getstate()
    deterministic = trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    trio_run._r.seed(seed)
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    try:
        yield
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = deterministic  # type: ignore[misc]
        trio_run._r.setstate(state)


def run_scenario(
    scenario: Scenario,
    *,
    clock: str = "virtual",
    observer: Callable[[Recorder], None] | None = None,
) -> Column:
    """Run ``scenario`` in a new ``trio.run``: in virtual time (``clock="virtual"``, a
    ``MockClock`` that jumps ahead whenever every task waits) or on the wall clock
    (``"wall"``: it takes the scenario's duration). Not for use inside a trio run (use
    :func:`run_column` there)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")

    async def main() -> Column:
        return await run_column(scenario, observer=observer)

    if clock == "wall":
        return attrs.evolve(trio.run(main), clock="wall")
    with _seeded_scheduler(scenario.seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
