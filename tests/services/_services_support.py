"""Shared setup of the services tests: a Golem engine on an in-process LocalNet whose
activities run a scripted runtime that records every operation, in virtual time."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio

from golem_trio import Golem, Service, vm
from golem_trio.localnet import LocalNet, ProviderSpec, Reply, RuntimeContext, ledger, open_localnet
from golem_trio.localnet.providers import ScriptedRuntime
from golem_trio.market import Payload
from golem_trio.services import Timeouts
from golem_trio.testing import assert_invariants
from golem_trio.work import ScriptSent

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
IMAGE_HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
BUDGET = 10.0

E = TypeVar("E")


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", duration_s=0.1)


def fail(args: Sequence[str]) -> Reply:
    return Reply(stderr="it failed\n", exit_code=3, duration_s=0.1)


def sleep(args: Sequence[str]) -> Reply:
    return Reply(stdout="slept\n", duration_s=float(args[0]) if args else 1.0)


SCRIPTS = {"/bin/echo": echo, "/bin/false": fail, "/bin/sleep": sleep}


@attrs.frozen
class Op:
    """One operation an activity's runtime performed."""

    activity_id: str
    provider_id: str
    name: str
    args: tuple[str, ...] = ()


class RecordingRuntime(ScriptedRuntime):
    """A scripted runtime that appends every operation to a shared log."""

    def __init__(self, context: RuntimeContext, log: list[Op], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context = context
        self._log = log

    def _record(self, name: str, args: Sequence[str] = ()) -> None:
        self._log.append(
            Op(self._context.activity_id, self._context.provider_id, name, tuple(args))
        )

    async def deploy(self, params: Mapping[str, Any]) -> None:
        self._record("deploy")
        await super().deploy(params)

    async def start(self, args: Sequence[str]) -> None:
        self._record("start", args)
        await super().start(args)

    async def run(
        self, entry_point: str, args: Sequence[str], capture: Mapping[str, Any] | None
    ) -> Any:
        self._record(entry_point, args)
        return await super().run(entry_point, args, capture)

    async def terminate(self) -> None:
        self._record("terminate")
        await super().terminate()


class BaseService(Service):
    """A service on the test image; subclasses add handlers."""

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=IMAGE_HASH, min_mem_gib=0.5, min_storage_gib=2.0)


@attrs.define
class World:
    """One test's network, engine, events and runtime log."""

    net: LocalNet
    events: list[object]
    ops: list[Op]
    golem: Golem | None = None
    book: dict[str, Any] | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def record(self, event: object) -> None:
        """The engine's event consumer: keep the event and wake :meth:`until`."""
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, looking again after every event."""
        await trio.lowlevel.checkpoint()
        while not condition():
            await self._changed.wait()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def ops_of(self, activity_id: str) -> list[Op]:
        return [op for op in self.ops if op.activity_id == activity_id]

    def scripts_of(self, activity_id: str) -> list[tuple[str, ...]]:
        """The commands of each batch sent to one activity, in order."""
        return [e.commands for e in self.of(ScriptSent) if e.activity_id == activity_id]

    def agreements(self) -> list[dict[str, Any]]:
        book = self.book if self.book is not None else ledger(self.net)
        agreements: list[dict[str, Any]] = book["agreements"]
        return agreements


@contextlib.asynccontextmanager
async def open_world(
    providers: int = 3,
    *,
    scripts: Mapping[str, Any] | None = None,
    check: bool = True,
    timeouts: Timeouts | None = None,
) -> AsyncIterator[World]:
    """A LocalNet with ``providers`` providers and a Golem engine on it.

    After the block, ``world.book`` holds the ledger and (with ``check``) the
    docs/architecture.md §4 invariants are asserted: nothing left open, unpaid or wrongly paid.
    """
    log: list[Op] = []
    table = dict(SCRIPTS if scripts is None else scripts)

    def runtime(context: RuntimeContext) -> RecordingRuntime:
        return RecordingRuntime(context, log, scripts=table)

    specs = [ProviderSpec(name=f"p{i}") for i in range(providers)]
    async with open_localnet(specs, epoch=EPOCH, runtime=runtime) as net:
        world = World(net=net, events=[], ops=log)
        async with Golem(
            budget=BUDGET,
            localnet=net,
            handle_signals=False,
            event_consumer=world.record,
            timeouts=timeouts,
        ) as golem:
            world.golem = golem
            yield world
        world.book = ledger(net)
        if check:
            assert_invariants(net, budget=BUDGET)


def golem_of(world: World) -> Golem:
    assert world.golem is not None
    return world.golem


async def settle(seconds: float = 120.0) -> None:
    """Let virtual time pass (so anything that would wrongly happen gets the chance)."""
    await trio.sleep(seconds)
