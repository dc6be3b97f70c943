"""Shared pieces of the services tests on LocalNet: a service that records its handlers, a
stage (LocalNet + Golem, tasks counted before and after) and the checks every stopped instance
must pass."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio

from golem_trio import Golem, Service, vm
from golem_trio.events import ServiceFinished
from golem_trio.localnet import (
    FaultPlan,
    LocalNet,
    ProviderSpec,
    Reply,
    ledger,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.market import Payload
from golem_trio.services import (
    TRANSITIONS,
    ProviderTerminated,
    ServiceInstance,
    ServiceState,
    StopReason,
    Timeouts,
    Trigger,
)
from golem_trio.testing import assert_invariants, snapshot_tasks

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"

#: How long a finite ``shutdown`` handler takes (virtual seconds).
SHUTDOWN_S = 5.0
#: The stopping phase's bounds used by these tests; they fit in the budget ledger's default
#: shutdown allowance (60 s).
TIMEOUTS = Timeouts(shutdown=20.0, cleanup=10.0, close=2.0, expiration_margin=60.0)
#: Plenty for a few agreements over a few virtual minutes.
BUDGET = Decimal("5")

#: ``run`` entry points of the scripted runtime. ``/bin/fail`` exits 1.
SCRIPTS: dict[str, Callable[[Sequence[str]], Reply]] = {
    "/bin/echo": lambda args: Reply(stdout=" ".join(args) + "\n", duration_s=0.1),
    "/bin/work": lambda args: Reply(stdout="done\n", duration_s=1.0),
    "/bin/fail": lambda args: Reply(stderr="failed on purpose\n", exit_code=1, duration_s=0.1),
}


def specs(count: int = 3, **overrides: Any) -> list[ProviderSpec]:
    return [ProviderSpec(name=f"p{i}", **overrides) for i in range(count)]


@attrs.define
class Journal:
    """What the services' handlers did, by service id, on trio's clock."""

    started: dict[str, list[float]] = attrs.field(factory=dict)
    shutdown_began: dict[str, list[float]] = attrs.field(factory=dict)
    shutdown_done: dict[str, list[float]] = attrs.field(factory=dict)

    @staticmethod
    def note(book: dict[str, list[float]], key: str) -> None:
        book.setdefault(key, []).append(trio.current_time())


class Recorder(Service):
    """A service whose handlers record themselves in a :class:`Journal`.

    ``start`` runs one command (a generator handler, yapapi's style) and then raises if
    ``start_error``; ``run`` (a coroutine) runs ``/bin/work`` every ``work_every`` seconds (or
    just waits) and raises ``run_error_after`` seconds after it began; ``shutdown`` waits
    ``shutdown_s`` seconds (``math.inf``: forever) and records that it finished.
    """

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        shutdown_s: float = SHUTDOWN_S,
        start_error: bool = False,
        run_error_after: float | None = None,
        work_every: float | None = None,
        command: str = "/bin/work",
        responsive: bool = True,
    ) -> None:
        super().__init__()
        self.journal = journal if journal is not None else Journal()
        self.shutdown_s = shutdown_s
        self.start_error = start_error
        self.run_error_after = run_error_after
        self.work_every = work_every
        self.command = command
        self.responsive = responsive

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=HASH, min_mem_gib=0.5, min_storage_gib=2.0)

    async def start(self) -> Any:  # an async generator handler
        self._ctx.run("/bin/echo", "starting")
        yield self._ctx.commit()
        if self.start_error:
            raise RuntimeError("start failed on purpose")

    async def run(self) -> None:
        self.journal.note(self.journal.started, self.id)
        began = trio.current_time()
        with trio.move_on_at(
            math.inf if self.run_error_after is None else began + self.run_error_after
        ):
            if self.work_every is None:
                await trio.sleep_forever()
            while True:
                await trio.sleep(self.work_every)
                self._ctx.run(self.command)
                await self._ctx.commit()
        raise RuntimeError("run failed on purpose")

    async def shutdown(self) -> None:
        self.journal.note(self.journal.shutdown_began, self.id)
        await trio.sleep(self.shutdown_s)
        self.journal.note(self.journal.shutdown_done, self.id)

    async def is_activity_responsive(self) -> bool:
        if not self.responsive:
            await trio.lowlevel.checkpoint()
            return False
        return await super().is_activity_responsive()


@attrs.define(eq=False)
class Stage:
    """A LocalNet with one Golem on it; filled in as the run goes."""

    net: LocalNet
    golem: Golem
    journal: Journal
    events: list[object]
    budget: Decimal
    #: Tasks left after the Golem block that were not there before it.
    leftover: list[trio.lowlevel.Task] = attrs.field(factory=list)
    #: The ledger right after the Golem block.
    book: Mapping[str, Any] = attrs.field(factory=dict)

    def params(self, count: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
        """``instance_params`` for ``count`` :class:`Recorder` instances."""
        return [{"journal": self.journal, **kwargs} for _ in range(count)]

    def check_network(self) -> None:
        """docs/architecture.md §4: invariants on the ledger, and no task left behind by the
        engine."""
        assert self.leftover == [], f"tasks left running: {self.leftover}"
        assert_invariants(self.book, budget=self.budget)


@contextlib.asynccontextmanager
async def open_stage(
    *,
    providers: Sequence[ProviderSpec] | None = None,
    budget: Decimal = BUDGET,
    timeouts: Timeouts = TIMEOUTS,
    faults: FaultPlan | None = None,
    scripts: Mapping[str, Callable[[Sequence[str]], Reply]] = SCRIPTS,
    handle_signals: bool = False,
) -> AsyncIterator[Stage]:
    """A LocalNet and a Golem on it; the body runs inside the Golem block. After the block
    the stage holds the leftover tasks and the ledger (see :meth:`Stage.check_network`)."""
    events: list[object] = []
    async with open_localnet(
        providers if providers is not None else specs(),
        epoch=EPOCH,
        runtime=scripted_runtime_factory(scripts),
        faults=faults,
    ) as net:
        golem = Golem(
            budget=budget,
            localnet=net,
            handle_signals=handle_signals,
            timeouts=timeouts,
            event_consumer=events.append,
        )
        stage = Stage(net, golem, Journal(), events, budget)
        before = snapshot_tasks()
        try:
            async with golem:
                yield stage
        finally:
            # The network's own tasks (providers still winding down) are not the engine's.
            stage.leftover = [
                task
                for task in snapshot_tasks().new_since(before)
                if not _runs_under(task, net.daemon.nursery)
            ]
            stage.book = ledger(net)


def _runs_under(task: trio.lowlevel.Task, nursery: trio.Nursery) -> bool:
    parent: trio.Nursery | None = task.parent_nursery
    while parent is not None:
        if parent is nursery:
            return True
        parent = parent.parent_task.parent_nursery
    return False


# --- checks ------------------------------------------------------------------------------------


def check_history(record: ServiceInstance) -> None:
    """The history is a walk on :data:`TRANSITIONS` from ``pending`` that ends terminated."""
    state = ServiceState.PENDING
    for change in record.history:
        assert change.old is state, f"{record.history}: {change} does not follow {state}"
        assert TRANSITIONS.get((change.old, change.trigger)) is change.new, change
        state = change.new
    assert state is ServiceState.TERMINATED, record.history
    assert record.finished


def check_stopped(
    stage: Stage,
    record: ServiceInstance,
    reason_type: type[StopReason],
    *,
    shutdown: bool,
    shutdown_s: float = SHUTDOWN_S,
) -> StopReason:
    """One instance that ended (its last life) for ``reason_type``: its history, the
    ``shutdown`` handler (``shutdown``: whether it must have run; shielded and bounded), and
    what the network saw of its agreement and activity. Returns the reason."""
    reason = record.stop_reason
    assert isinstance(reason, reason_type), (reason, record.error)
    assert record.stop_reasons[-1] is reason
    check_history(record)
    *_, stop, cleaned = record.history
    expected = Trigger.FAILURE if reason.failure else Trigger.STOP
    assert (stop.new, stop.trigger, stop.reason) == (ServiceState.STOPPING, expected, str(reason))
    assert (cleaned.old, cleaned.trigger) == (ServiceState.STOPPING, Trigger.CLEANED_UP)
    assert not record.cleanup_timed_out

    key = record.service.id
    began = stage.journal.shutdown_began.get(key, [])
    done = stage.journal.shutdown_done.get(key, [])
    if not shutdown:
        assert not record.shutdown_ran
        assert began == [] or began[-1] < stop.at
    else:
        assert record.shutdown_ran
        assert stop.at <= began[-1] <= cleaned.at
        if math.isfinite(shutdown_s):
            # Shielded: the life's scope was cancelled, yet the handler slept to its end.
            assert not record.shutdown_timed_out
            assert done[-1] - began[-1] == shutdown_s
            assert done[-1] <= cleaned.at
        else:
            # Bounded: cut at Timeouts.shutdown, and cleanup still ran (see check_agreement).
            assert record.shutdown_timed_out
            assert len(done) < len(began)
            timeouts = stage.golem.timeouts
            assert timeouts.shutdown <= cleaned.at - began[-1] < timeouts.shutdown + 1.0

    finished = [
        e for e in stage.events if isinstance(e, ServiceFinished) and e.instance_id == record.id
    ]
    assert finished[-1].stop_code == reason.code
    assert finished[-1].failed == reason.failure
    return reason


def agreement_entry(stage: Stage, agreement_id: str) -> Mapping[str, Any]:
    (entry,) = [a for a in stage.book["agreements"] if a["id"] == agreement_id]
    return entry


def check_agreement(stage: Stage, record: ServiceInstance) -> None:
    """The last life's agreement is terminated by the right side, with the reason's code, and
    its activity (if it had one) is terminated."""
    reason = record.stop_reason
    assert reason is not None
    assert record.agreement is not None
    entry = agreement_entry(stage, record.agreement.agreement_id)
    assert entry["state"] == "Terminated", entry
    if isinstance(reason, ProviderTerminated):
        assert entry["terminator"] == "Provider", entry
    else:
        assert entry["terminator"] == "Requestor", entry
        assert entry["reason"]["golem.requestor.code"] == reason.requestor_code, entry
    activities = [a for a in stage.book["activities"] if a["agreementId"] == entry["id"]]
    if record.activity_id is not None:
        assert [a["id"] for a in activities] == [record.activity_id]
    for activity in activities:
        assert activity["state"] == "Terminated", activity
