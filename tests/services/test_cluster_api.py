"""The ``Cluster`` handle: readiness, stopping, scaling, instance params and restart policies,
end to end on a LocalNet in virtual time; plus the policy values on their own."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import pytest
import trio
import trio.testing
from _services_support import BaseService, World, golem_of, open_world, settle

from golem_trio.events import InstanceRestarting, ServiceStateChanged
from golem_trio.localnet import ledger
from golem_trio.services import (
    ClusterClosed,
    ClusterStopped,
    HandlerFailed,
    HealthCheck,
    InstancesLost,
    ProviderTerminated,
    Restart,
    RestartPolicy,
    RunFinished,
    Service,
    ServiceInstance,
    ServiceState,
    Trigger,
)
from golem_trio.services._policy import RestartTracker
from golem_trio.work import Result, Script

Gen = AsyncGenerator[Script, Awaitable[list[Result]]]
NEVER = RestartPolicy(Restart.NEVER)
LONG = 3600.0


class Idle(BaseService):
    """Deploys, then runs until stopped."""


class Finishes(BaseService):
    async def run(self) -> None:
        await trio.sleep(10)


class FailsStart(BaseService):
    async def start(self) -> Gen:
        async for script in super().start():
            yield script
        raise RuntimeError("start broke")


class FailsFirstStart(BaseService):
    """``start`` fails in the first life only."""

    async def start(self) -> Gen:
        async for script in super().start():
            yield script
        if self.instance.lives == 1:
            raise RuntimeError("first start broke")


class FailsRun(BaseService):
    async def run(self) -> None:
        await trio.sleep(10)
        raise RuntimeError("run broke")


class FailsFirstRun(BaseService):
    """``run`` fails in the first life and returns in the later ones."""

    async def run(self) -> None:
        await trio.sleep(10)
        if self.instance.lives == 1:
            raise RuntimeError("first run broke")


class Named(BaseService):
    def __init__(self, name: str, block: bool = False) -> None:
        super().__init__()
        self.name = name
        self.block = block

    async def start(self) -> Gen:
        async for script in super().start():
            yield script
        if self.block:
            await trio.sleep_forever()


def record_of(service: BaseService) -> ServiceInstance:
    return service.instance


def agreements_now(world: World) -> list[dict[str, Any]]:
    agreements: list[dict[str, Any]] = ledger(world.net)["agreements"]
    return agreements


def providers_by_life(world: World, service: BaseService) -> list[str | None]:
    """The provider of each life of one instance, from the state events."""
    return [
        e.provider_id
        for e in world.of(ServiceStateChanged)
        if e.instance_id == service.id and e.new == ServiceState.STARTING.value
    ]


async def wait_lives(world: World, record: ServiceInstance, lives: int) -> None:
    """Wait until ``record`` lives its ``lives``-th life."""
    await world.until(lambda: record.lives >= lives and record.state is not ServiceState.TERMINATED)


# --- readiness ---------------------------------------------------------------------------------


async def test_wait_running_returns_running_instances(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Idle, num_instances=3)
        with trio.fail_after(LONG):
            some = await cluster.wait_running(2)
        assert len(some) >= 2
        assert all(s.state is ServiceState.RUNNING for s in some)
        assert all(any(s is t for t in cluster.instances) for s in some)
        with trio.fail_after(LONG):
            everyone = await cluster.wait_running()
        assert len(everyone) == 3
        assert cluster.states() == {ServiceState.RUNNING: 3}
        assert len({s.provider_id for s in everyone}) >= 1
    assert all(a["state"] == "Terminated" for a in world.agreements())


async def test_wait_running_raises_when_too_few_can_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        golem = golem_of(world)
        failing = await golem.run_service(FailsStart, num_instances=2, restart=NEVER)
        with trio.fail_after(LONG), pytest.raises(InstancesLost):
            await failing.wait_running(2)
        await failing.wait_finished()
        assert all(isinstance(r.stop_reason, HandlerFailed) for r in failing.records)
        idle = await golem.run_service(Idle, num_instances=2)
        with trio.fail_after(1), pytest.raises(InstancesLost):
            await idle.wait_running(3)


# --- stopping ----------------------------------------------------------------------------------


async def test_awaited_stop_returns_once_all_terminated_and_nothing_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    always = RestartPolicy(Restart.ALWAYS, max_restarts=100)
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Idle, num_instances=2, restart=always)
        with trio.fail_after(LONG):
            await cluster.wait_running()
            await cluster.stop()
        for record in cluster.records:
            assert record.state is ServiceState.TERMINATED
            assert record.finished
            assert record.stop_reason == ClusterStopped()
            assert record.history[-1].trigger is Trigger.CLEANED_UP
        assert [a["state"] for a in agreements_now(world)] == ["Terminated"] * 2
        with pytest.raises(ClusterClosed):
            cluster.spawn_instances(1)
        with pytest.raises(ClusterClosed):
            await cluster.wait_running(1)
        await settle(600)
        assert len(agreements_now(world)) == 2
        assert [r.lives for r in cluster.records] == [1, 1]
        assert world.of(InstanceRestarting) == []
        await cluster.stop()  # idempotent
    assert all(a["reason"]["golem.requestor.code"] == "Success" for a in world.agreements())


async def test_stop_without_await_still_stops(autojump_clock: trio.testing.MockClock) -> None:
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Idle, num_instances=2)
        with trio.fail_after(LONG):
            await cluster.wait_running()
        cluster.stop()
        assert cluster.closed
    for record in cluster.records:
        assert record.state is ServiceState.TERMINATED
        assert record.stop_reason == ClusterStopped()
    assert [a["state"] for a in world.agreements()] == ["Terminated"] * 2


async def test_stop_instance_stops_one_for_good(autojump_clock: trio.testing.MockClock) -> None:
    always = RestartPolicy(Restart.ALWAYS, max_restarts=100)
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Idle, num_instances=2, restart=always)
        with trio.fail_after(LONG):
            first, second = await cluster.wait_running(2)
            await cluster.stop_instance(first)
        assert first.state is ServiceState.TERMINATED
        assert isinstance(first.stop_reason, ClusterStopped)
        assert second.state is ServiceState.RUNNING
        await settle(600)
        assert first.state is ServiceState.TERMINATED
        assert record_of(first).lives == 1
        assert second.state is ServiceState.RUNNING
        assert cluster.live_instances == [second]
        assert len(cluster.instances) == 2
        assert len(agreements_now(world)) == 2


# --- scaling -----------------------------------------------------------------------------------


async def test_spawn_instances_scales_up(autojump_clock: trio.testing.MockClock) -> None:
    async with open_world(providers=4) as world:
        cluster = await golem_of(world).run_service(Idle, num_instances=1)
        with trio.fail_after(LONG):
            await cluster.wait_running(1)
            more = cluster.spawn_instances(2)
            assert len(more) == 2
            assert cluster.spawn_instances(0) == []
            running = await cluster.wait_running(3)
        assert len(running) == 3
        assert all(any(s is r for r in running) for s in more)
        with trio.fail_after(LONG):
            await cluster.scale(4)
            await cluster.wait_running(4)
        assert len(cluster) == 4


async def test_scale_down_stops_the_non_running_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    params = [{"name": "a"}, {"name": "stuck", "block": True}, {"name": "c"}]
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Named, instance_params=params)  # type: ignore[arg-type]
        with trio.fail_after(LONG):
            await cluster.wait_running(2)
            stuck = next(s for s in cluster.instances if s.name == "stuck")
            assert cluster.states()[ServiceState.STARTING] == 1
            assert stuck.state is ServiceState.STARTING
            await cluster.scale(2)
        assert record_of(stuck).state is ServiceState.TERMINATED
        assert stuck.stop_reason == ClusterStopped("scaled down")
        assert sorted(s.name for s in cluster.live_instances) == ["a", "c"]
        with trio.fail_after(LONG):
            await cluster.scale(1)
        [left] = cluster.live_instances
        assert left.state is ServiceState.RUNNING
        assert sum(s.state is ServiceState.TERMINATED for s in cluster.instances) == 2
        await settle(300)
        assert len(cluster.live_instances) == 1
        with pytest.raises(ValueError, match="n must be >= 0"):
            cluster.scale(-1)


# --- instance params ---------------------------------------------------------------------------


async def test_instance_params_reach_init(autojump_clock: trio.testing.MockClock) -> None:
    async with open_world() as world:
        golem = golem_of(world)
        both = await golem.run_service(Named, instance_params=[{"name": "a"}, {"name": "b"}])
        assert [s.name for s in both.instances] == ["a", "b"]
        one = await golem.run_service(
            Named, num_instances=1, instance_params=({"name": n} for n in "xyz")
        )
        assert [s.name for s in one.instances] == ["x"]
        with pytest.raises(
            ValueError, match=r"^instance_params iterable depleted after 1 spawned instances\.$"
        ):
            one.spawn_instances(num_instances=3, instance_params=[{"name": "late"}])
        assert one.spawn_instances(num_instances=0, instance_params=[{"name": "no"}]) == []
        with trio.fail_after(LONG):
            await both.wait_running()


async def test_run_service_params_depletion_is_a_value_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        with pytest.raises(
            ValueError, match=r"^instance_params iterable depleted after 2 spawned instances\.$"
        ):
            await golem_of(world).run_service(
                Named, num_instances=3, instance_params=[{"name": "a"}, {"name": "b"}]
            )


# --- restart policies --------------------------------------------------------------------------


async def run_until_finished(
    world: World, service_class: type[BaseService], restart: RestartPolicy | None = None
) -> BaseService:
    cluster = await golem_of(world).run_service(service_class, num_instances=1, restart=restart)
    with trio.fail_after(LONG):
        await cluster.wait_finished()
    [service] = cluster.instances
    return service


async def test_never_restarts_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with open_world() as world:
        service = await run_until_finished(world, FailsStart, NEVER)
        assert record_of(service).lives == 1
        assert isinstance(service.stop_reason, HandlerFailed)
    assert len(world.agreements()) == 1


async def test_default_restarts_a_failed_start_on_another_provider(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(providers=3) as world:
        cluster = await golem_of(world).run_service(FailsFirstStart, num_instances=1)
        with trio.fail_after(LONG):
            [service] = await cluster.wait_running(1)
        record = record_of(service)
        assert record.lives == 2
        first_reason = record.stop_reasons[0]
        assert isinstance(first_reason, HandlerFailed)
        assert first_reason.phase == "start"
        first, second = providers_by_life(world, service)
        assert first is not None
        assert second is not None
        assert first != second
        [restarting] = world.of(InstanceRestarting)
        assert restarting.avoided_provider == first
        assert restarting.attempt == 1
        assert [a["providerId"] for a in agreements_now(world)] == [first, second]
        assert [c.trigger for c in record.history].count(Trigger.RESTART) == 1


async def test_default_does_not_restart_a_failed_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        service = await run_until_finished(world, FailsRun)
        record = record_of(service)
        assert record.lives == 1
        assert isinstance(service.stop_reason, HandlerFailed)
        assert service.stop_reason.phase == "run"
        await settle(300)
        assert len(agreements_now(world)) == 1


async def test_on_failure_restarts_failures_only(autojump_clock: trio.testing.MockClock) -> None:
    policy = RestartPolicy(Restart.ON_FAILURE)
    async with open_world() as world:
        service = await run_until_finished(world, FailsFirstRun, policy)
        record = record_of(service)
        assert record.lives == 2
        assert isinstance(record.stop_reasons[0], HandlerFailed)
        assert record.stop_reasons[1] == RunFinished()
    assert len(world.agreements()) == 2


async def test_always_restarts_after_run_returns_until_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RestartPolicy(Restart.ALWAYS, max_restarts=100, jitter=0.0)
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Finishes, num_instances=1, restart=policy)
        [service] = cluster.instances
        record = record_of(service)
        with trio.fail_after(LONG):
            await wait_lives(world, record, 3)
            await cluster.wait_running(1)
            await cluster.stop()
        lives = record.lives
        assert lives >= 3
        assert all(r == RunFinished() for r in record.stop_reasons[:-1])
        assert record.stop_reasons[-1] == ClusterStopped()
        await settle(600)
        assert record.lives == lives
        assert record.finished
        assert len(agreements_now(world)) == lives


async def test_restart_budget_gives_up_with_growing_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RestartPolicy(
        Restart.ON_FAILURE, max_restarts=3, window=1e6, backoff=2.0, max_backoff=5.0, jitter=0.0
    )
    async with open_world(providers=4) as world:
        service = await run_until_finished(world, FailsStart, policy)
        record = record_of(service)
        assert record.lives == 4
        assert record.finished
        assert all(isinstance(r, HandlerFailed) for r in record.stop_reasons)
        restarts = [e for e in world.of(InstanceRestarting) if e.instance_id == service.id]
        assert [e.attempt for e in restarts] == [1, 2, 3]
        assert [e.delay for e in restarts] == [2.0, 4.0, 5.0]
        # Each new life began no sooner than its backoff after the last one ended.
        ends = [c.at for c in record.history if c.trigger is Trigger.CLEANED_UP]
        begins = [c.at for c in record.history if c.trigger is Trigger.RESTART]
        for end, begin, event in zip(ends, begins, restarts, strict=False):
            assert begin - end >= event.delay
        assert len(set(providers_by_life(world, service))) == 4
        await settle(600)
        assert record.lives == 4
    assert len(world.agreements()) == 4


async def test_restart_budget_counts_within_the_window_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One restart per 5 s, but each restart waits 10 s: the budget never runs out.
    policy = RestartPolicy(
        Restart.ON_FAILURE, max_restarts=1, window=5.0, backoff=10.0, max_backoff=10.0, jitter=0
    )
    async with open_world(providers=3) as world:
        cluster = await golem_of(world).run_service(FailsStart, num_instances=1, restart=policy)
        [service] = cluster.instances
        with trio.fail_after(LONG):
            await wait_lives(world, record_of(service), 4)
            await cluster.stop()
        assert record_of(service).lives >= 4


# --- policy values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "failure_before_running", "failure_while_running", "clean_end"),
    [
        (Restart.NEVER, False, False, False),
        (Restart.ON_FAILURE_BEFORE_RUNNING, True, False, False),
        (Restart.ON_FAILURE, True, True, False),
        (Restart.ALWAYS, True, True, True),
    ],
)
def test_policy_wants(
    strategy: Restart,
    failure_before_running: bool,
    failure_while_running: bool,
    clean_end: bool,
) -> None:
    policy = RestartPolicy(strategy)
    failed = HandlerFailed("start", RuntimeError())
    assert policy.wants(failed, reached_running=False) is failure_before_running
    assert policy.wants(ProviderTerminated("x"), reached_running=True) is failure_while_running
    assert policy.wants(RunFinished(), reached_running=True) is clean_end


def test_default_policy_is_yapapis() -> None:
    assert RestartPolicy().strategy is Restart.ON_FAILURE_BEFORE_RUNNING
    # The yapapi-flavoured names are aliases of the same members.
    for value, names in [
        ("never", ("TEMPORARY", "NEVER")),
        ("on-failure", ("TRANSIENT", "ON_FAILURE")),
        ("always", ("PERMANENT", "ALWAYS")),
    ]:
        assert all(Restart[name] is Restart(value) for name in names)


def test_backoff_grows_to_its_cap_within_jitter() -> None:
    rng = random.Random(7)
    exact = RestartPolicy(backoff=1.0, max_backoff=10.0, jitter=0.0)
    assert [exact.delay(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    spread = RestartPolicy(backoff=1.0, max_backoff=10.0, jitter=0.25)
    for n in range(1, 7):
        base = exact.delay(n, rng)
        assert base * 0.75 <= spread.delay(n, rng) <= base * 1.25
    assert RestartPolicy(backoff=0.0).delay(3, rng) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_restarts": -1},
        {"window": 0.0},
        {"window": -1.0},
        {"backoff": -0.1},
        {"max_backoff": -1.0},
        {"jitter": -0.5},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RestartPolicy(**kwargs)


def test_tracker_allows_max_restarts_within_the_window() -> None:
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window=10.0))
    assert tracker.allow(0.0)
    assert tracker.allow(1.0)
    assert not tracker.allow(2.0)
    assert not tracker.allow(9.9)
    assert tracker.attempts == 2
    # The first restart leaves the window at 10.0, the second at 11.0.
    assert tracker.allow(10.0)
    assert not tracker.allow(10.5)
    assert tracker.allow(11.0)
    assert tracker.attempts == 4


def test_tracker_with_no_budget_never_allows() -> None:
    tracker = RestartTracker(RestartPolicy(max_restarts=0))
    assert not tracker.allow(0.0)
    assert not tracker.allow(1e9)
    assert tracker.attempts == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0.0}, "interval"),
        ({"interval": -5.0}, "interval"),
        ({"failures": 0}, "failures"),
        ({"probe_timeout": 0.0}, "probe_timeout"),
        ({"probe_timeout": -1.0}, "probe_timeout"),
    ],
)
def test_health_check_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HealthCheck(**kwargs)


def test_health_check_defaults_and_off() -> None:
    default = HealthCheck()
    assert (default.interval, default.failures, default.probe_timeout) == (60.0, 3, 10.0)
    assert HealthCheck(interval=None).interval is None


# --- known gaps (strict: they fail loudly once fixed, so the mark can go) --------------------


async def test_stop_during_restart_backoff_is_prompt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RestartPolicy(Restart.ALWAYS, backoff=1000.0, max_backoff=1000.0, jitter=0.0)
    async with open_world() as world:
        cluster = await golem_of(world).run_service(Finishes, num_instances=1, restart=policy)
        [record] = cluster.records
        with trio.fail_after(LONG):
            await world.until(lambda: bool(record.stop_reasons))
        await trio.sleep(5)  # in the backoff now
        stopped_at = trio.current_time()
        with trio.fail_after(LONG):
            await cluster.stop()
        assert record.lives == 1
        assert trio.current_time() - stopped_at < 100


async def test_wait_running_all_raises_when_none_is_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        cluster = await golem_of(world).run_service(FailsStart, num_instances=1, restart=NEVER)
        with trio.fail_after(LONG), pytest.raises(InstancesLost):
            await cluster.wait_running()


async def test_scale_down_stops_the_newest_running_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        cluster = await golem_of(world).run_service(
            Named, instance_params=[{"name": "old"}, {"name": "new"}]
        )
        with trio.fail_after(LONG):
            await cluster.wait_running(2)
            await cluster.scale(1)
        assert [s.name for s in cluster.live_instances] == ["old"]


def test_an_id_is_stable_even_when_a_subclass_skips_the_base_init() -> None:
    class Forgetful(Service):
        def __init__(self) -> None:  # no super().__init__()
            self.name = "forgetful"

    one, two = Forgetful(), Forgetful()
    first = one.id
    assert one.id == first
    assert len(first) == 32
    assert two.id == two.id != first
    made = Service()
    assert made.id == made.id != first
