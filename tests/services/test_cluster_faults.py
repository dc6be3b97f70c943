"""Whole clusters on LocalNet in virtual time under random faults (docs/architecture.md §4).

Hypothesis draws a restart policy, a budget, an expiration and a list of commands (provider
terminations, activity deaths, failing commands, failing health probes, scaling up and down,
stopping instances, time passing); one trio run interprets them against a Golem on LocalNet,
then stops the cluster or just leaves the Golem block. Whatever happened, after the block:
the invariants of docs/architecture.md §4 hold on the network's ledger, every instance is
terminated with a recorded reason per life and a history that follows ``TRANSITIONS``, the
restart policy was obeyed, and the engine left no task behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import hypothesis
import hypothesis.strategies as st
import trio
import trio.testing
from _faults_support import SCRIPTS, Recorder, Stage, check_history, open_stage, specs

from golem_trio import HealthCheck, Restart, RestartPolicy
from golem_trio.localnet import Reply
from golem_trio.localnet.emulator import FaultError
from golem_trio.services import (
    Aborted,
    Cluster,
    ClusterClosed,
    ServiceInstance,
    ServiceState,
    StopReason,
    Trigger,
)
from golem_trio.yagna import BadRequest

Command = tuple[str, int]

COMMANDS = st.one_of(
    st.tuples(st.just("terminate-agreement"), st.integers(0, 7)),
    st.tuples(st.just("kill-activity"), st.integers(0, 7)),
    st.tuples(st.just("exit-nonzero"), st.integers(1, 3)),
    st.tuples(st.just("fail-command"), st.integers(1, 2)),
    st.tuples(st.just("unhealthy"), st.integers(0, 7)),
    st.tuples(st.just("spawn"), st.integers(1, 2)),
    st.tuples(st.just("scale"), st.integers(0, 3)),
    st.tuples(st.just("stop-instance"), st.integers(0, 7)),
    st.tuples(st.just("sleep"), st.sampled_from([1, 5, 20, 60, 240])),
    st.tuples(st.just("budget"), st.sampled_from([25, 50, 200, 400])),
)
RESTARTS = st.sampled_from(
    [Restart.TEMPORARY, Restart.ON_FAILURE_BEFORE_RUNNING, Restart.TRANSIENT, Restart.PERMANENT]
)
#: From "runs out within a minute or two" to "never runs out here".
BUDGETS = st.sampled_from([Decimal("0.15"), Decimal("1"), Decimal("20")])
#: Minutes until the cluster's agreements expire (None: the engine's default, 3 h).
EXPIRATIONS = st.sampled_from([None, 9, 30])

#: Reasons after which no life may follow.
FINAL = ("ClusterStopped", "GolemExit", "Interrupted", "BudgetExhausted", "Expired")


class Failing:
    """``/bin/work`` exits non-zero while ``left`` > 0."""

    def __init__(self) -> None:
        self.left = 0

    def work(self, args: Sequence[str]) -> Reply:
        if self.left > 0:
            self.left -= 1
            return Reply(stderr="failed\n", exit_code=3, duration_s=0.5)
        return Reply(stdout="done\n", duration_s=1.0)


def live(cluster: Cluster[Recorder]) -> list[ServiceInstance]:
    return [r for r in cluster.records if not r.finished]


def pick(records: list[ServiceInstance], index: int) -> ServiceInstance | None:
    return records[index % len(records)] if records else None


async def interpret(
    stage: Stage, cluster: Cluster[Recorder], failing: Failing, commands: list[Command]
) -> None:
    faults = stage.net.faults
    for name, arg in commands:
        record = pick(live(cluster), arg)
        try:
            if name == "terminate-agreement":
                running = [r for r in live(cluster) if r.state is ServiceState.RUNNING]
                record = pick(running, arg)
                if record is not None and record.agreement is not None:
                    faults.terminate_agreement(record.agreement.agreement_id)
                    # The provider acts on its next tick (1 s): let it, before this side ends
                    # the agreement too (LocalNet's provider does not survive that race).
                    await trio.sleep(1.5)
            elif name == "kill-activity":
                if record is not None and record.activity_id is not None:
                    faults.kill_activity(record.activity_id)
            elif name == "exit-nonzero":
                failing.left += arg
            elif name == "fail-command":
                faults.fail_next_command(count=arg)
            elif name == "unhealthy":
                if record is not None:
                    assert isinstance(record.service, Recorder)
                    record.service.responsive = False
            elif name == "spawn":
                cluster.spawn_instances(instance_params=stage.params(arg, work_every=7.0))
            elif name == "scale":
                cluster.scale(arg)
            elif name == "stop-instance":
                if record is not None:
                    cluster.stop_instance(record.service)  # type: ignore[arg-type]
            elif name == "sleep":
                await trio.sleep(arg)
            elif name == "budget":
                hypothesis.event(f"budget to {arg}%")
                # A top-up or a cut to ``arg`` percent of the budget now (refused below what
                # stopping now would cost, and once the budget ran out; a top-up the account
                # cannot fund is refused by the daemon).
                with contextlib.suppress(ValueError, RuntimeError, BadRequest):
                    await stage.golem.set_budget(stage.golem.budget * arg / 100)
                stage.budget = stage.golem.budget
        except FaultError:
            pass  # nothing to fault any more (the agreement or activity ended already)
        except ClusterClosed:
            assert cluster.closed
        await trio.sleep(0.5)


def check_lives(record: ServiceInstance, policy: RestartPolicy) -> None:
    check_history(record)
    reasons = record.stop_reasons
    assert record.lives == len(reasons) >= 1
    assert all(isinstance(r, StopReason) for r in reasons)
    assert record.stop_reason is reasons[-1]
    assert not any(isinstance(r, Aborted) for r in reasons), reasons
    restarts = [c for c in record.history if c.trigger is Trigger.RESTART]
    assert len(restarts) == record.lives - 1
    # Split the history into lives: each ends with cleaned-up; only the last may be final.
    lives: list[list[ServiceState]] = [[ServiceState.PENDING]]
    for change in record.history:
        if change.trigger is Trigger.RESTART:
            lives.append([ServiceState.PENDING])
        else:
            lives[-1].append(change.new)
    assert len(lives) == len(reasons)
    for states, reason in zip(lives[:-1], reasons[:-1], strict=True):
        assert reason.code not in FINAL, (reason, reasons)
        assert policy.wants(reason, ServiceState.RUNNING in states), (policy, reason)
    if policy.strategy is Restart.TEMPORARY:
        assert record.lives == 1


@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    initial=st.integers(1, 3),
    strategy=RESTARTS,
    budget=BUDGETS,
    expiration=EXPIRATIONS,
    commands=st.lists(COMMANDS, min_size=4, max_size=16),
    stop_first=st.booleans(),
)
async def test_clusters_under_random_faults(
    autojump_clock: trio.testing.MockClock,
    initial: int,
    strategy: Restart,
    budget: Decimal,
    expiration: int | None,
    commands: list[Command],
    stop_first: bool,
) -> None:
    # The clock is shared by the examples. Start each one on a multiple of 2**16 s: then every
    # time of the example (lasting less than that) lies in one binade, where adding whole
    # seconds is exact, so that LocalNet's providers, which compare float times, see their
    # debit-note intervals exactly.
    for _ in range(2):
        now = trio.current_time()
        autojump_clock.jump((now // 2**16 + 1) * 2**16 - now if now % 2**16 else 0.0)
    failing = Failing()
    scripts = {**SCRIPTS, "/bin/work": failing.work}
    policy = RestartPolicy(strategy=strategy, max_restarts=3, backoff=2.0, jitter=0.0)
    health = HealthCheck(interval=5.0, failures=2)
    with trio.fail_after(6 * 3600):
        async with open_stage(providers=specs(4), budget=budget, scripts=scripts) as stage:
            until = None
            if expiration is not None:
                until = stage.net.daemon.clock.now() + dt.timedelta(minutes=expiration)
            cluster = await stage.golem.run_service(
                Recorder,
                instance_params=stage.params(initial, work_every=7.0),
                restart=policy,
                health=health,
                expiration=until,
            )
            await interpret(stage, cluster, failing, commands)
            if stop_first:
                await cluster.stop()
                assert all(r.finished for r in cluster.records)
    stage.check_network()
    assert cluster.closed
    for record in cluster.records:
        check_lives(record, policy)
        assert record.state is ServiceState.TERMINATED
        for reason in record.stop_reasons:
            hypothesis.event("stop reason", reason.code)


async def test_scale_down_stops_the_newest_running_instances(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_stage() as stage:
        cluster = await stage.golem.run_service(
            Recorder, instance_params=stage.params(3), health=HealthCheck(interval=None)
        )
        with trio.fail_after(600):
            await cluster.wait_running(3)
        await cluster.scale(1)
        assert [r.finished for r in cluster.records] == [False, True, True]
        # A new pending instance goes before any running one.
        cluster.spawn_instances(instance_params=stage.params(1))
        await cluster.scale(1)
        assert [r.finished for r in cluster.records] == [False, True, True, True]
    stage.check_network()
