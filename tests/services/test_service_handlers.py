"""Service handlers: every supported style, errors at the right place, implicit deploy,
class checks, and handler cleanup, end to end on a LocalNet in virtual time."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import pytest
import trio
import trio.testing
from _services_support import BaseService, World, golem_of, open_world

from golem_trio import Service
from golem_trio.market import Payload
from golem_trio.services import (
    HandlerError,
    HandlerFailed,
    Restart,
    RestartPolicy,
    RunFinished,
    ServiceDefinitionError,
    ServiceState,
    check_service_class,
)
from golem_trio.services._service import drive_handler
from golem_trio.work import CommandExecutionError, CommandNotRun, Result, Script
from golem_trio.yagna import ActivityUsage
from golem_trio.yagna._activity import ActivityApi

Gen = AsyncGenerator[Script, Awaitable[list[Result]]]
NEVER = RestartPolicy(Restart.NEVER)


async def run_to_end(world: World, service_class: type[Service], **kwargs: Any) -> list[Any]:
    """Run one instance until it finishes; its service objects."""
    golem = golem_of(world)
    cluster = await golem.run_service(service_class, num_instances=1, restart=NEVER, **kwargs)
    with trio.fail_after(3600):
        await cluster.wait_finished()
    return cluster.instances


def commands_sent(world: World, service: Service) -> list[tuple[str, ...]]:
    activity_id = service.instance.activity_id
    assert activity_id is not None
    return world.scripts_of(activity_id)


# --- the three handler styles ------------------------------------------------------------------


class SeedStyle(BaseService):
    """The seed's handlers, as written for yapapi (only ``asyncio.sleep`` became trio's)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[str | None] = []

    async def start(self) -> Gen:
        self._ctx.run("/bin/echo", "starting")
        yield self._ctx.commit()

    async def run(self) -> Gen:  # type: ignore[override]
        for i in range(3):
            await trio.sleep(10)
            self._ctx.run("/bin/echo", f"hello {i}")
            future = yield self._ctx.commit()
            results = await future
            self.outputs.append(results[0].stdout)


class ScriptStyle(BaseService):
    """yapapi's later style: handles from a script, awaited after the yield."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[str | None] = []

    async def run(self) -> Gen:  # type: ignore[override]
        script = self._ctx.new_script()
        first = script.run("/bin/echo", "one")
        second = script.run("/bin/echo", "two")
        yield script
        self.outputs.append((await first).stdout)
        self.outputs.append((await second).stdout)


class TrioStyle(BaseService):
    """Plain coroutine handlers awaiting their scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[str | None] = []

    async def run(self) -> None:
        self._ctx.run("/bin/echo", "native")
        results = await self._ctx.commit()
        self.outputs.append(results[0].stdout)
        script = self._ctx.new_script()
        handle = script.run("/bin/echo", "scripted")
        await script
        self.outputs.append((await handle).stdout)


@pytest.mark.parametrize(
    ("service_class", "expected"),
    [
        (SeedStyle, ["hello 0\n", "hello 1\n", "hello 2\n"]),
        (ScriptStyle, ["one\n", "two\n"]),
        (TrioStyle, ["native\n", "scripted\n"]),
    ],
)
async def test_every_handler_style_gets_its_outputs(
    autojump_clock: trio.testing.MockClock,
    service_class: type[SeedStyle | ScriptStyle | TrioStyle],
    expected: list[str],
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, service_class)
        assert service.outputs == expected
        assert service.instance.stop_reason == RunFinished()
        assert service.instance.state is ServiceState.TERMINATED
        assert service.instance.reached_running
    [agreement] = world.agreements()
    assert agreement["state"] == "Terminated"
    assert agreement["terminator"] == "Requestor"
    assert agreement["reason"]["golem.requestor.code"] == "Success"


class Detached(BaseService):
    """A ``wait_for_results=False`` script: the handler gets control back at once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    async def run(self) -> Gen:  # type: ignore[override]
        script = self._ctx.new_script(wait_for_results=False)
        handle = script.run("/bin/sleep", "50")
        sent_at = trio.current_time()
        future = yield script
        self.seen["done_at_yield"] = handle.done
        self.seen["waited_at_yield"] = trio.current_time() - sent_at
        results = await future
        self.seen["stdout"] = results[0].stdout
        self.seen["waited_in_total"] = trio.current_time() - sent_at


async def test_wait_for_results_false_returns_before_the_batch_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, Detached)
    assert service.seen["done_at_yield"] is False
    assert service.seen["waited_at_yield"] < 50
    assert service.seen["stdout"] == "slept\n"
    assert service.seen["waited_in_total"] >= 50
    assert service.instance.stop_reason == RunFinished()


# --- command failures --------------------------------------------------------------------------


class FailingCommand(BaseService):
    """A failing command, caught at the ``yield``; the handler carries on."""

    def __init__(self) -> None:
        super().__init__()
        self.caught: BaseException | None = None
        self.first: BaseException | None = None
        self.later: BaseException | None = None
        self.after: str | None = None

    async def run(self) -> Gen:  # type: ignore[override]
        first = self._ctx.run("/bin/false")
        later = self._ctx.run("/bin/echo", "never")
        try:
            yield self._ctx.commit()
        except CommandExecutionError as exc:
            self.caught = exc
        with trio.fail_after(60):
            try:
                await first
            except CommandExecutionError as exc:
                self.first = exc
            try:
                await later
            except CommandNotRun as exc:
                self.later = exc
        self._ctx.run("/bin/echo", "carried on")
        future = yield self._ctx.commit()
        self.after = (await future)[0].stdout


async def test_failed_command_surfaces_at_the_yield(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, FailingCommand)
    assert isinstance(service.caught, CommandExecutionError)
    assert isinstance(service.first, CommandExecutionError)
    assert isinstance(service.later, CommandNotRun)
    assert service.after == "carried on\n"
    assert service.instance.stop_reason == RunFinished()
    ran = [op.name for op in world.ops_of(service.instance.activity_id or "")]
    assert "/bin/false" in ran
    assert ran.count("/bin/echo") == 1  # "never" did not run, "carried on" did


class Raises(BaseService):
    phase = "run"

    async def start(self) -> Gen:
        async for script in super().start():
            yield script
        if self.phase == "start":
            raise RuntimeError("start broke")

    async def run(self) -> None:
        await trio.sleep(5)
        raise RuntimeError("run broke")


class RaisesInStart(Raises):
    phase = "start"


@pytest.mark.parametrize("service_class", [Raises, RaisesInStart])
async def test_uncaught_handler_error_fails_the_instance(
    autojump_clock: trio.testing.MockClock, service_class: type[Raises]
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, service_class)
        record = service.instance
        reason = record.stop_reason
        assert isinstance(reason, HandlerFailed)
        assert reason.phase == service_class.phase
        assert isinstance(reason.error, RuntimeError)
        assert f"{service_class.phase} broke" in str(reason.error)
        assert isinstance(service.exc_info, RuntimeError)
        assert record.history[-1].reason == reason.message
        assert record.reached_running is (service_class.phase == "run")
        assert record.lives == 1
    [agreement] = world.agreements()
    assert agreement["state"] == "Terminated"
    assert agreement["terminator"] == "Requestor"
    assert agreement["reason"]["golem.requestor.code"] == HandlerFailed.requestor_code
    activity_id = record.activity_id
    assert activity_id is not None
    [activity] = [a for a in (world.book or {})["activities"] if a["id"] == activity_id]
    assert activity["state"] != "Ready"


class YieldsNone(BaseService):
    async def run(self) -> AsyncGenerator[Any, Any]:  # type: ignore[override]
        yield None


async def test_yielding_something_else_than_a_script_is_a_handler_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, YieldsNone)
    reason = service.instance.stop_reason
    assert isinstance(reason, HandlerFailed)
    assert reason.phase == "run"
    assert isinstance(reason.error, HandlerError)
    assert "yielded None" in str(reason.error)


# --- implicit deploy ---------------------------------------------------------------------------


class NoDeploy(BaseService):
    async def start(self) -> Gen:
        self._ctx.run("/bin/echo", "first")
        yield self._ctx.commit()

    async def run(self) -> Gen:  # type: ignore[override]
        self._ctx.run("/bin/echo", "second")
        yield self._ctx.commit()


class SuperStart(BaseService):
    async def start(self) -> Gen:
        async for script in super().start():
            yield script
        self._ctx.run("/bin/echo", "first")
        yield self._ctx.commit()

    async def run(self) -> Gen:  # type: ignore[override]
        self._ctx.run("/bin/echo", "second")
        yield self._ctx.commit()


@pytest.mark.parametrize("service_class", [NoDeploy, SuperStart])
async def test_deploy_comes_first_and_once(
    autojump_clock: trio.testing.MockClock, service_class: type[Service]
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, service_class)
    assert service.instance.stop_reason == RunFinished()
    activity_id = service.instance.activity_id
    assert activity_id is not None
    ops = [(op.name, op.args) for op in world.ops_of(activity_id)]
    assert ops[:4] == [
        ("deploy", ()),
        ("start", ()),
        ("/bin/echo", ("first",)),
        ("/bin/echo", ("second",)),
    ]
    assert [name for name, _ in ops].count("deploy") == 1
    assert [name for name, _ in ops].count("start") == 1
    batches = commands_sent(world, service)
    assert batches[0] == ("deploy", "start")
    assert sum(batch.count("deploy") for batch in batches) == 1


# --- class checks ------------------------------------------------------------------------------


class NotStatic(BaseService):
    async def get_payload(self) -> Payload | None:  # type: ignore[override]
        return None


class SyncPayload(BaseService):
    @staticmethod
    def get_payload() -> Payload | None:  # type: ignore[override]
        return None


class SyncRun(BaseService):
    def run(self) -> None:  # type: ignore[override]
        return None


class SyncShutdown(BaseService):
    def shutdown(self) -> None:  # type: ignore[override]
        return None


class NotAService:
    @staticmethod
    async def get_payload() -> None:
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (NotAService, "not a subclass"),
        (SeedStyle(), "not a subclass"),
        (NotStatic, "staticmethod"),
        (SyncPayload, "async def"),
        (SyncRun, r"SyncRun\.run must be an async generator"),
        (SyncShutdown, r"SyncShutdown\.shutdown must be"),
    ],
)
def test_class_checks(bad: Any, match: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=match):
        check_service_class(bad)


@pytest.mark.parametrize("good", [SeedStyle, ScriptStyle, TrioStyle, BaseService, Service])
def test_class_checks_pass_good_classes(good: type[Service]) -> None:
    check_service_class(good)


async def test_run_service_refuses_a_bad_class_before_signing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        golem = golem_of(world)
        for bad in (NotAService, NotStatic, SyncPayload, SyncRun):
            with pytest.raises(ServiceDefinitionError):
                await golem.run_service(bad, num_instances=1)  # type: ignore[type-var]
        assert golem.clusters == []
    assert world.agreements() == []


# --- cleanup of handlers -----------------------------------------------------------------------


class Lingers(BaseService):
    """A handler stopped from outside: its ``finally`` blocks run."""

    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    async def run(self) -> Gen:  # type: ignore[override]
        try:
            self._ctx.run("/bin/echo", "up")
            yield self._ctx.commit()
            self.where.append("awaiting")
            await trio.sleep_forever()
        finally:
            self.where.append("finally")


class LingersInBatch(BaseService):
    """Stopped while its yielded batch runs: the generator is closed, and its ``finally`` may
    still await (the close is shielded and bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    async def run(self) -> Gen:  # type: ignore[override]
        try:
            self._ctx.run("/bin/sleep", "100000")
            self.where.append("yielding")
            yield self._ctx.commit()
            self.where.append("after the batch")
        finally:
            await trio.sleep(1)
            self.where.append("finally")


@pytest.mark.parametrize("service_class", [Lingers, LingersInBatch])
async def test_generator_finally_runs_on_stop(
    autojump_clock: trio.testing.MockClock, service_class: type[Lingers | LingersInBatch]
) -> None:
    async with open_world() as world:
        golem = golem_of(world)
        cluster = await golem.run_service(service_class, num_instances=1)
        with trio.fail_after(600):
            [service] = await cluster.wait_running(1)
            await trio.sleep(30)
            assert "finally" not in service.where
            await cluster.stop()
        assert service.where[-1] == "finally"
        assert "after the batch" not in service.where
        assert service.instance.state is ServiceState.TERMINATED
        assert service.instance.shutdown_ran
    [agreement] = world.agreements()
    assert agreement["state"] == "Terminated"


class SlowShutdown(BaseService):
    """A shutdown handler whose script takes ten seconds."""

    async def shutdown(self) -> Gen:  # type: ignore[override]
        self._ctx.run("/bin/sleep", "10")
        yield self._ctx.commit()


async def test_usage_is_read_while_the_shutdown_handler_runs(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stopping phase reads the activity's usage for billing beside the shutdown handler,
    not after it: once, before the handler's script ends; the invoice is still paid by it
    (the world's invariants)."""
    reads: list[tuple[float, str]] = []
    original = ActivityApi.get_usage

    async def recorded(self: ActivityApi, activity_id: str) -> ActivityUsage:
        reads.append((trio.current_time(), activity_id))
        return await original(self, activity_id)

    monkeypatch.setattr(ActivityApi, "get_usage", recorded)
    async with open_world() as world:
        golem = golem_of(world)
        cluster = await golem.run_service(SlowShutdown, num_instances=1)
        with trio.fail_after(600):
            [service] = await cluster.wait_running(1)
            await trio.sleep(30)
            stop_asked = trio.current_time()
            await cluster.stop()
        assert service.instance.shutdown_ran
        assert not service.instance.shutdown_timed_out
        [(read_at, activity_id)] = reads
        assert activity_id == service.instance.activity_id
        assert stop_asked <= read_at < stop_asked + 10
    report = golem.payment_report
    assert report is not None
    [paid] = report.invoices_accepted.values()
    assert paid > 0


# --- drive_handler on its own --------------------------------------------------------------------


async def _no_script(script: Script) -> list[Result]:
    raise AssertionError(f"no script should run, got {script!r}")


async def test_drive_handler_refuses_a_non_script_and_closes_the_generator() -> None:
    closed: list[bool] = []

    async def handler() -> AsyncGenerator[Any, Any]:
        try:
            yield 42
        finally:
            closed.append(True)

    async with trio.open_nursery() as nursery:
        with pytest.raises(HandlerError, match="yielded 42"):
            await drive_handler(handler, name="run", run_script=_no_script, nursery=nursery)
    assert closed == [True]


async def test_drive_handler_refuses_a_sync_handler() -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(HandlerError, match="returned int"):
            await drive_handler(lambda: 1, name="run", run_script=_no_script, nursery=nursery)


async def test_drive_handler_runs_a_coroutine() -> None:
    ran: list[str] = []

    async def handler() -> None:
        await trio.lowlevel.checkpoint()
        ran.append("ran")

    async with trio.open_nursery() as nursery:
        await drive_handler(handler, name="run", run_script=_no_script, nursery=nursery)
    assert ran == ["ran"]


class CoroutineStartNoDeploy(BaseService):
    async def start(self) -> None:  # type: ignore[override]
        self._ctx.run("/bin/echo", "first")
        await self._ctx.commit()

    async def run(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_coroutine_start_gets_an_implicit_deploy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        [service] = await run_to_end(world, CoroutineStartNoDeploy)
    assert service.instance.stop_reason == RunFinished()
    ops = [op.name for op in world.ops_of(service.instance.activity_id or "")]
    assert ops[:3] == ["deploy", "start", "/bin/echo"]
