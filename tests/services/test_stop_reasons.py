"""One test per stop reason, end to end on LocalNet in virtual time (docs/architecture.md §3).

Each test brings one instance (or a few) to the state the cause needs, triggers the cause and
checks: the typed ``stop_reason``; a history ``... -> stopping -> terminated`` with the right
trigger; the ``shutdown`` handler ran when the instance had reached ``running`` (not when the
provider ended the agreement), shielded (a 5 s handler finishes though the life was
cancelled) and bounded (a handler that never returns is cut at ``Timeouts.shutdown``, and
cleanup still runs); the agreement terminated with ``golem.requestor.code`` equal to the
reason's ``requestor_code`` (by the provider for ``ProviderTerminated``); the activity
terminated; the docs/architecture.md §4 invariants; no task left behind.
"""

from __future__ import annotations

import datetime as dt
import math
import signal
from decimal import Decimal

import pytest
import trio
import trio.testing
from _faults_support import (
    SHUTDOWN_S,
    TIMEOUTS,
    Recorder,
    Stage,
    check_agreement,
    check_stopped,
    open_stage,
    specs,
)

from golem_trio import HealthCheck, Restart, RestartPolicy
from golem_trio.events import BudgetLimitReached
from golem_trio.localnet import FaultKind
from golem_trio.payment import Tolerance
from golem_trio.services import (
    ActivityDied,
    BudgetExhausted,
    Cluster,
    ClusterStopped,
    Expired,
    GolemExit,
    HandlerFailed,
    HealthCheckFailed,
    Interrupted,
    ProviderTerminated,
    ProvisioningFailed,
    ServiceInstance,
    ServiceState,
)

NEVER = RestartPolicy(strategy=Restart.TEMPORARY)
NO_PROBE = HealthCheck(interval=None)

#: A finite ``shutdown`` handler (shielded: it must finish) and one that never returns
#: (bounded: it must be cut at ``Timeouts.shutdown``).
SHUTDOWNS = pytest.mark.parametrize("shutdown_s", [SHUTDOWN_S, math.inf], ids=["5s", "forever"])


async def start_cluster(
    stage: Stage,
    count: int = 1,
    *,
    restart: RestartPolicy = NEVER,
    health: HealthCheck = NO_PROBE,
    expiration: dt.datetime | None = None,
    wait: bool = True,
    **params: object,
) -> Cluster[Recorder]:
    cluster = await stage.golem.run_service(
        Recorder,
        instance_params=stage.params(count, **params),
        restart=restart,
        health=health,
        expiration=expiration,
    )
    if wait:
        with trio.fail_after(600):
            await cluster.wait_running(count)
    return cluster


async def finished(cluster: Cluster[Recorder]) -> list[ServiceInstance]:
    with trio.fail_after(3600):
        await cluster.wait_finished()
    return cluster.records


# --- failures ------------------------------------------------------------------------------------


@SHUTDOWNS
async def test_provider_terminated(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, shutdown_s=shutdown_s)
        (record,) = cluster.records
        assert record.agreement is not None
        stage.net.faults.terminate_agreement(record.agreement.agreement_id, code="Overloaded")
        (record,) = await finished(cluster)
    stage.check_network()
    # The provider ended the agreement: no shutdown handler (there is nothing to talk to).
    reason = check_stopped(stage, record, ProviderTerminated, shutdown=False)
    assert isinstance(reason, ProviderTerminated)
    assert reason.provider_code == "Overloaded"
    assert record.history[-2].old is ServiceState.RUNNING
    check_agreement(stage, record)


@SHUTDOWNS
async def test_activity_died_noticed_by_a_command(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, shutdown_s=shutdown_s, work_every=3.0)
        (record,) = cluster.records
        assert record.activity_id is not None
        stage.net.faults.kill_activity(record.activity_id, reason="out of memory")
        (record,) = await finished(cluster)
    stage.check_network()
    check_stopped(stage, record, ActivityDied, shutdown=True, shutdown_s=shutdown_s)
    assert record.history[-2].old is ServiceState.RUNNING
    check_agreement(stage, record)


async def test_activity_died_noticed_by_the_default_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    health = HealthCheck(interval=5.0, failures=2)
    async with open_stage() as stage:
        cluster = await start_cluster(stage, health=health)
        (record,) = cluster.records
        assert record.activity_id is not None
        killed_at = trio.current_time()
        stage.net.faults.kill_activity(record.activity_id)
        (record,) = await finished(cluster)
    stage.check_network()
    check_stopped(stage, record, ActivityDied, shutdown=True)
    # Nothing but the probe talks to the activity: its first probe after the death stops the
    # instance (a terminated activity is not a failure to count up to ``failures``).
    stopped_at = record.history[-2].at
    assert killed_at < stopped_at <= killed_at + health.interval + 1.0
    check_agreement(stage, record)


@SHUTDOWNS
async def test_health_check_failed_by_a_user_probe(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    calls: list[float] = []

    async def probe(service: object) -> bool:
        await trio.lowlevel.checkpoint()
        calls.append(trio.current_time())
        return len(calls) <= 2  # healthy twice, then failing

    health = HealthCheck(interval=5.0, failures=3, probe=probe)
    async with open_stage() as stage:
        cluster = await start_cluster(stage, health=health, shutdown_s=shutdown_s)
        (record,) = await finished(cluster)
    stage.check_network()
    reason = check_stopped(stage, record, HealthCheckFailed, shutdown=True, shutdown_s=shutdown_s)
    assert isinstance(reason, HealthCheckFailed)
    assert reason.failures == 3
    assert len(calls) == 5
    assert record.history[-2].at == calls[-1]
    check_agreement(stage, record)


async def test_health_check_failed_by_the_service_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The default probe is the service's is_activity_responsive(); the activity is alive, so
    # the failures are the service's own: HealthCheckFailed, not ActivityDied.
    health = HealthCheck(interval=5.0, failures=2)
    async with open_stage() as stage:
        cluster = await start_cluster(stage, health=health, responsive=False)
        (record,) = await finished(cluster)
    stage.check_network()
    reason = check_stopped(stage, record, HealthCheckFailed, shutdown=True)
    assert isinstance(reason, HealthCheckFailed)
    assert reason.failures == 2
    check_agreement(stage, record)


@SHUTDOWNS
async def test_handler_failed_in_start(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, wait=False, start_error=True, shutdown_s=shutdown_s)
        (record,) = await finished(cluster)
    stage.check_network()
    # It never reached running: no shutdown handler.
    reason = check_stopped(stage, record, HandlerFailed, shutdown=False)
    assert isinstance(reason, HandlerFailed)
    assert reason.phase == "start"
    assert isinstance(reason.error, RuntimeError)
    assert record.history[-2].old is ServiceState.STARTING
    assert record.service.id not in stage.journal.started
    check_agreement(stage, record)


@SHUTDOWNS
async def test_handler_failed_in_run(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(
            stage, run_error_after=30.0, work_every=4.0, shutdown_s=shutdown_s
        )
        (record,) = await finished(cluster)
    stage.check_network()
    reason = check_stopped(stage, record, HandlerFailed, shutdown=True, shutdown_s=shutdown_s)
    assert isinstance(reason, HandlerFailed)
    assert reason.phase == "run"
    assert str(reason.error) == "run failed on purpose"
    assert record.history[-2].old is ServiceState.RUNNING
    check_agreement(stage, record)


async def test_handler_failed_when_a_command_fails(autojump_clock: trio.testing.MockClock) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, work_every=2.0, command="/bin/fail")
        (record,) = await finished(cluster)
    stage.check_network()
    reason = check_stopped(stage, record, HandlerFailed, shutdown=True)
    assert isinstance(reason, HandlerFailed)
    assert reason.phase == "run"
    check_agreement(stage, record)


async def test_provisioning_failed(autojump_clock: trio.testing.MockClock) -> None:
    async with open_stage() as stage:
        # createActivity is not retried: one 500 ends the provisioning.
        stage.net.faults.daemon_fault("createActivity", FaultKind.DAEMON_5XX, 500)
        cluster = await start_cluster(stage, wait=False)
        (record,) = await finished(cluster)
    stage.check_network()
    reason = check_stopped(stage, record, ProvisioningFailed, shutdown=False)
    assert isinstance(reason, ProvisioningFailed)
    assert [(c.old, c.new) for c in record.history] == [
        (ServiceState.PENDING, ServiceState.STOPPING),
        (ServiceState.STOPPING, ServiceState.TERMINATED),
    ]
    assert record.activity_id is None
    # The agreement was signed before the activity failed: it is terminated all the same.
    check_agreement(stage, record)


# --- deliberate stops --------------------------------------------------------------------------


def budget_for(seconds: float, count: int, spec_kwargs: dict[str, Decimal]) -> Decimal:
    """The worst case billing accepts for ``count`` single-thread agreements that run
    ``seconds`` each (as the budget ledger counts it, grace and tolerance included)."""
    tolerance = Tolerance()
    elapsed = Decimal(str(seconds)) + Decimal(int(tolerance.grace.total_seconds()))
    rate = spec_kwargs["price_cpu_sec"] + spec_kwargs["price_duration_sec"]
    one = spec_kwargs["price_start"] + rate * elapsed * (1 + tolerance.relative)
    return count * (one + tolerance.absolute)


@SHUTDOWNS
async def test_budget_exhausted(autojump_clock: trio.testing.MockClock, shutdown_s: float) -> None:
    # Priced by duration only, so what is billed grows as fast as the worst case (the budget
    # caps exposure: idle CPU would not use it up by the planned minutes).
    prices = {
        "price_cpu_sec": Decimal("0"),
        "price_duration_sec": Decimal("0.00023"),
        "price_start": Decimal("0.01"),
    }
    providers = specs(2, cpu_threads=1, debit_note_interval=60, **prices)
    # Room for two agreements of ten minutes each plus the ledger's shutdown allowance.
    budget = budget_for(10 * 60 + 60, 2, prices)
    async with open_stage(providers=providers, budget=budget) as stage:
        started = trio.current_time()
        cluster = await start_cluster(stage, 2, shutdown_s=shutdown_s, work_every=5.0)
        records = await finished(cluster)
        assert cluster.closed
    stage.check_network()
    (exhausted,) = [e for e in stage.events if isinstance(e, BudgetLimitReached)]
    # The exposure may pass the budget at the signal (a debit note just accepted whose next
    # window no longer fits fires it at once); what is spent never does (below).
    assert exhausted.budget == budget
    for record in records:
        check_stopped(stage, record, BudgetExhausted, shutdown=True, shutdown_s=shutdown_s)
        check_agreement(stage, record)
        # Stopped before the worst case could pass the budget, not long before.
        assert started + 5 * 60 <= record.history[-2].at <= started + 10 * 60
    spent = sum(Decimal(a["spentAmount"]) for a in stage.book["allocations"])
    assert Decimal(0) < spent <= budget
    assert len(stage.book["invoices"]) == 2


@SHUTDOWNS
async def test_expired(autojump_clock: trio.testing.MockClock, shutdown_s: float) -> None:
    async with open_stage() as stage:
        expiration = stage.net.daemon.clock.now() + dt.timedelta(minutes=10)
        cluster = await start_cluster(stage, expiration=expiration, shutdown_s=shutdown_s)
        (record,) = await finished(cluster)
    stage.check_network()
    check_stopped(stage, record, Expired, shutdown=True, shutdown_s=shutdown_s)
    check_agreement(stage, record)
    # The life ended expiration_margin before the expiration, so the stopping phase fits.
    due = stage.net.daemon.clock.to_trio(expiration) - TIMEOUTS.expiration_margin
    assert due <= record.history[-2].at < due + 0.01
    assert record.history[-1].at < stage.net.daemon.clock.to_trio(expiration)


async def test_expired_is_final_even_for_a_permanent_restart_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    always = RestartPolicy(strategy=Restart.PERMANENT, backoff=1.0)
    async with open_stage() as stage:
        expiration = stage.net.daemon.clock.now() + dt.timedelta(minutes=10)
        cluster = await start_cluster(stage, expiration=expiration, restart=always)
        (record,) = await finished(cluster)
    stage.check_network()
    check_stopped(stage, record, Expired, shutdown=True)
    # A new life would sign with a demand that has expired: there is none.
    assert record.lives == 1
    check_agreement(stage, record)


@SHUTDOWNS
async def test_cluster_stopped(autojump_clock: trio.testing.MockClock, shutdown_s: float) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, 2, shutdown_s=shutdown_s)
        await trio.sleep(30)
        asked = trio.current_time()
        await cluster.stop()
        # Awaiting the stop waited for the stopping phases (and no longer than their bound).
        assert all(r.finished for r in cluster.records)
        assert trio.current_time() - asked <= TIMEOUTS.shutdown + TIMEOUTS.cleanup
        assert cluster.closed
    stage.check_network()
    for record in cluster.records:
        check_stopped(stage, record, ClusterStopped, shutdown=True, shutdown_s=shutdown_s)
        check_agreement(stage, record)


async def test_cluster_stopped_while_pending(autojump_clock: trio.testing.MockClock) -> None:
    # Every provider withholds approval: the instance is still pending when it is stopped.
    async with open_stage() as stage:
        for i in range(3):
            stage.net.faults.never_approve(f"p{i}")
        cluster = await start_cluster(stage, wait=False)
        await trio.sleep(20)
        assert cluster.records[0].state is ServiceState.PENDING
        await cluster.stop()
    stage.check_network()
    (record,) = cluster.records
    check_stopped(stage, record, ClusterStopped, shutdown=False)
    assert [(c.old, c.new) for c in record.history] == [
        (ServiceState.PENDING, ServiceState.STOPPING),
        (ServiceState.STOPPING, ServiceState.TERMINATED),
    ]


@SHUTDOWNS
async def test_golem_exit(autojump_clock: trio.testing.MockClock, shutdown_s: float) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, 2, shutdown_s=shutdown_s)
        await trio.sleep(30)
        left = trio.current_time()
    stage.check_network()
    for record in cluster.records:
        check_stopped(stage, record, GolemExit, shutdown=True, shutdown_s=shutdown_s)
        check_agreement(stage, record)
        assert record.history[-2].at == left


@SHUTDOWNS
async def test_interrupted_by_stop(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, 2, shutdown_s=shutdown_s)
        stage.golem.stop(Interrupted("SIGTERM"))
        with trio.fail_after(TIMEOUTS.shutdown + TIMEOUTS.cleanup):
            await cluster.wait_finished()
    stage.check_network()
    for record in cluster.records:
        reason = check_stopped(stage, record, Interrupted, shutdown=True, shutdown_s=shutdown_s)
        assert reason == Interrupted("SIGTERM")
        check_agreement(stage, record)


@SHUTDOWNS
async def test_sigint_in_the_main_thread(
    autojump_clock: trio.testing.MockClock, shutdown_s: float
) -> None:
    cluster: Cluster[Recorder] | None = None
    after_signal: list[str] = []
    # Golem's block raises a bare KeyboardInterrupt once everything is cleaned up; LocalNet's
    # nursery (around it) wraps it in a group.
    with pytest.RaisesGroup(KeyboardInterrupt):
        async with open_stage(handle_signals=True) as stage:
            cluster = await start_cluster(stage, 2, shutdown_s=shutdown_s)
            signal.raise_signal(signal.SIGINT)
            # The engine cancels the block's body; a sleep would be the last thing it did.
            await trio.sleep(3600)
            after_signal.append("not cancelled")
    assert after_signal == []
    assert cluster is not None
    stage.check_network()
    for record in cluster.records:
        reason = check_stopped(stage, record, Interrupted, shutdown=True, shutdown_s=shutdown_s)
        assert reason == Interrupted("SIGINT")
        check_agreement(stage, record)


async def test_second_hurry_cuts_the_shutdown_handler_not_the_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_stage() as stage:
        cluster = await start_cluster(stage, 2, shutdown_s=math.inf)
        stage.golem.stop()
        await trio.sleep(1.0)
        assert len(stage.journal.shutdown_began) == 2  # both handlers are waiting
        hurried = trio.current_time()
        stage.golem.hurry()
        await cluster.wait_finished()
        assert trio.current_time() - hurried < 1.0
    stage.check_network()
    for record in cluster.records:
        assert isinstance(record.stop_reason, GolemExit)
        assert record.shutdown_ran
        assert record.shutdown_timed_out
        assert not record.cleanup_timed_out
        assert record.history[-1].at - hurried < 1.0
        check_agreement(stage, record)
