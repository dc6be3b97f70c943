"""The life of one service instance, as cancel scopes (docs/architecture.md §3).

A *life* is: sign an agreement and create its activity (``pending``), run ``start``
(``starting``), run ``run`` (``running``), all inside one cancel scope owned by the instance;
then, after that scope, the stopping phase in a shielded scope with a deadline
(``Timeouts.stop_phase``): the user's ``shutdown`` handler (bounded by ``Timeouts.shutdown``;
only if the life reached ``running``), then the activity destroyed and the agreement
terminated with a ``golem.requestor.code`` (bounded by ``Timeouts.cleanup``, never skipped;
what a cleanup cut by that bound leaves, the engine finishes later: ``services/_ending.py``).
External events cancel the life's scope with a typed reason (:meth:`ServiceInstance.cancel`).
:meth:`ServiceInstance.supervise` runs lives until the restart policy says no.

An instance knows its cluster only through a :class:`~._link.ClusterLink`: what it may ask of
the cluster and the engine.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ..events import (
    ActivityCreated,
    HealthProbeFailed,
    InstanceRestarting,
    ServiceFinished,
    ServiceStateChanged,
)
from ..market import AgreementInfo, NotAdmitted
from ..network import Network, NetworkNode
from ..payment import BillingTermsError
from ..terms import AgreementTerms, Terms
from ..work import ActivityGone, Result, Script, WorkContext
from ..yagna import (
    TRANSIENT_ERRORS,
    AgreementTerminatedEvent,
    DaemonTimeout,
    YagnaError,
)
from ._ending import Ending, Leftover, destroy_activity, end_agreement
from ._link import ClusterLink
from ._policy import HealthCheck, RestartTracker
from ._reasons import (
    Aborted,
    ActivityDied,
    AgreementLost,
    Expired,
    HandlerFailed,
    HealthCheckFailed,
    ProviderTerminated,
    ProvisioningFailed,
    RunFinished,
    StopReason,
)
from ._service import ClusterView, Service, drive_handler
from ._state import ServiceState, StateChange, StateMachine, Trigger

__all__ = ["ServiceInstance"]

logger = logging.getLogger("golem_trio.services")


def _signed_terms(info: AgreementInfo, requestor_id: str) -> AgreementTerms | None:
    """The terms of an agreement this engine just made, from the two proposals it was made
    of (``None`` when ``info`` does not carry them: billing then reads the daemon's copy).
    Billing counts from the confirmation, which no approval can precede."""
    if info.demand_properties is None or info.confirmed_at is None:
        return None
    return AgreementTerms.from_sides(
        info.agreement_id,
        info.properties,
        info.demand_properties,
        provider_id=info.provider_id,
        requestor_id=requestor_id,
        approved_at=info.confirmed_at,
        valid_to=info.valid_to,
    )


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@attrs.define(eq=False)
class ServiceInstance:
    """The engine's record of one instance: its state machine, its current agreement and
    activity, and why each of its lives ended."""

    service: Service
    #: What this instance may ask of its cluster.
    link: ClusterLink
    index: int
    machine: StateMachine = attrs.field(factory=StateMachine)
    #: Why the current (or last) life ended; ``None`` while it lives.
    stop_reason: StopReason | None = None
    #: The reason of every life, oldest first.
    stop_reasons: list[StopReason] = attrs.field(factory=list)
    #: The error that ended the last life, when one did.
    error: BaseException | None = None
    agreement: AgreementInfo | None = None
    activity_id: str | None = None
    lives: int = 0
    reached_running: bool = False
    #: Whether the user's ``shutdown`` handler ran in the last life, and whether the stopping
    #: phase had to be cut short by its bounds.
    shutdown_ran: bool = False
    shutdown_timed_out: bool = False
    cleanup_timed_out: bool = False
    _life: trio.CancelScope | None = None
    _requested: StopReason | None = None
    _for_good: bool = False
    _shutdown_scope: trio.CancelScope | None = None
    _stopped: trio.Event = attrs.field(factory=trio.Event)
    #: How the agreement ended when something other than this instance ended it.
    _ended_elsewhere: Ending | None = None
    #: The cleanup steps of this life that are done (what is not, a cut cleanup hands over).
    _activity_ended: bool = False
    _agreement_ended: bool = False
    #: Whether the activity's usage was read for billing in this life's stopping phase.
    _usage_read: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)
    #: The address this instance asks for in its cluster's network: the one it was given, then
    #: the one it last held (a new life gets it back when it is still free).
    address: str | None = None
    #: Its node in the network while its activity lives.
    network_node: NetworkNode | None = None

    def __attrs_post_init__(self) -> None:
        self.machine.on_change = self._changed
        self.service._instance = self

    # --- reading ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.service.id

    @property
    def cluster(self) -> ClusterView:
        return self.link.cluster

    @property
    def state(self) -> ServiceState:
        return self.machine.state

    @property
    def history(self) -> Sequence[StateChange]:
        return tuple(self.machine.history)

    @property
    def provider_id(self) -> str | None:
        return self.agreement.provider_id if self.agreement else None

    @property
    def provider_name(self) -> str | None:
        return self.agreement.provider_name if self.agreement else None

    @property
    def stopped_for_good(self) -> bool:
        """A deliberate stop was asked for: no further life will start."""
        return self._for_good

    @property
    def finished(self) -> bool:
        """No more lives: terminated and not going to restart."""
        return self.done.is_set()

    # --- control ---------------------------------------------------------------------------

    def cancel(self, reason: StopReason) -> None:
        """End the current life for ``reason`` (the first reason of a life wins). Sync and
        idempotent; callable from any task, even before the life started."""
        if self._requested is None:
            self._requested = reason
        if self._life is not None:
            self._life.cancel(reason=reason.message)

    def stop(self, reason: StopReason) -> None:
        """End the current life and never start another one."""
        self._for_good = True
        self._stopped.set()
        self.cancel(reason)

    def hurry(self) -> None:
        """Cut the user's ``shutdown`` handler short (cleanup still runs)."""
        if self._shutdown_scope is not None:
            self._shutdown_scope.cancel()

    # --- events ----------------------------------------------------------------------------

    def _changed(self, change: StateChange) -> None:
        self.link.state_changed(change)
        self.link.emit(
            ServiceStateChanged(
                cluster_id=self.link.cluster_id,
                instance_id=self.id,
                service_class=type(self.service).__name__,
                old=change.old.value,
                new=change.new.value,
                trigger=change.trigger.value,
                reason=change.reason,
                provider_id=self.provider_id,
                provider_name=self.provider_name,
            )
        )

    # --- supervision -----------------------------------------------------------------------

    async def supervise(self, rng: random.Random) -> None:
        """Run lives until the restart policy (or a deliberate stop) ends the instance.

        Cancellation: the current life is stopped as by :class:`Aborted` (its stopping phase
        still runs, shielded and bounded) and ``Cancelled`` propagates.
        """
        policy = self.link.restart
        tracker = RestartTracker(policy)
        try:
            while True:
                reason = await self._live()
                # The cluster's expiration has passed for every new agreement too.
                final = self._for_good or isinstance(reason, Expired)
                if final or not policy.wants(reason, self.reached_running):
                    return
                if not tracker.allow(trio.current_time()):
                    logger.warning(
                        "%r: %d restarts within %.0f s; not restarting",
                        self.service,
                        policy.max_restarts,
                        policy.window,
                    )
                    return
                delay = policy.delay(tracker.attempts, rng)
                avoided = None
                if reason.failure and policy.avoid_failed_provider and self.provider_id:
                    avoided = self.provider_id
                    self.link.avoid_provider(avoided, reason.code)
                self.link.emit(
                    InstanceRestarting(
                        cluster_id=self.link.cluster_id,
                        instance_id=self.id,
                        service_class=type(self.service).__name__,
                        attempt=tracker.attempts,
                        delay=delay,
                        avoided_provider=avoided,
                    )
                )
                await self.service.reset()
                # The backoff ends early when the instance is stopped for good.
                with trio.move_on_after(delay):
                    await self._stopped.wait()
                if self.stopped_for_good:
                    return
                self.machine.fire(Trigger.RESTART, f"restart {tracker.attempts}")
        finally:
            self.done.set()
            self.link.finished()

    async def _live(self) -> StopReason:
        """One life; returns why it ended."""
        self.lives += 1
        self.stop_reason = None
        self.error = None
        self.agreement = None
        self.activity_id = None
        self.reached_running = False
        self.shutdown_ran = self.shutdown_timed_out = self.cleanup_timed_out = False
        self._ended_elsewhere = None
        self._activity_ended = self._agreement_ended = self._usage_read = False
        if not self._for_good:
            self._requested = None
        life = trio.CancelScope()
        self._life = life
        if self._requested is not None:
            life.cancel(reason=self._requested.message)
        failure: StopReason | None = None
        ctx: WorkContext | None = None
        engine = self.link.engine
        try:
            with life:
                life.deadline = engine.to_trio_time(self.link.expiration) - (
                    engine.timeouts.expiration_margin
                )
                phase = "provisioning"
                try:
                    ctx = await self._provision()
                    async with trio.open_nursery() as nursery:
                        phase = "start"
                        await self._drive("start", nursery)
                        self.reached_running = True
                        self.machine.fire(Trigger.STARTED)
                        health = self.link.health
                        if health.interval is not None:
                            nursery.start_soon(self._health_loop, health)
                        phase = "run"
                        await self._drive("run", nursery)
                        failure = RunFinished()
                        nursery.cancel_scope.cancel()
                except* Exception as group:
                    failure = self._classify(group, phase)
        finally:
            self._life = None
            reason = self._requested or failure
            if reason is None:
                # Only the life's deadline (the expiration minus its margin) cancels the scope
                # without a reason; a cancellation from outside is not caught by it.
                reason = Expired() if life.cancelled_caught else Aborted()
            self.stop_reason = reason
            self.stop_reasons.append(reason)
            with trio.move_on_after(engine.timeouts.stop_phase, shield=True):
                await self._stop_phase(reason, ctx)
            self._hand_over(reason)
            if self.link.network is not None:
                # Whatever the cleanup managed, the address is free for the next life.
                self.network_node = None
                self.link.network.release(self)
            self._finish(reason)
        return reason

    def _classify(self, group: BaseExceptionGroup[Exception], phase: str) -> StopReason:
        leaves = _leaves(group)
        error: BaseException = leaves[0] if len(leaves) == 1 else group
        self.error = error
        gone = next((e for e in leaves if isinstance(e, ActivityGone)), None)
        if gone is not None:
            return ActivityDied(str(gone))
        if phase == "provisioning":
            return ProvisioningFailed(f"{type(error).__name__}: {error}", error)
        logger.warning("%r: the %s handler failed: %r", self.service, phase, error)
        return HandlerFailed(phase, error)

    # --- phases ----------------------------------------------------------------------------

    async def _provision(self) -> WorkContext:
        engine = self.link.engine
        # The agreement is signed only while its worst-case exposure fits in the budget; the
        # room is held under this key until the agreement is registered for payment.
        budget = engine.payments.budget
        key = object()
        network = self.link.network
        if network is not None:
            # Held before anything is signed: a full network fails the life at once.
            self.address = network.reserve(self, self.address)
        try:
            info = await self._sign_within_budget(key)
            self.agreement = info
            engine.watcher.watch(info.agreement_id, self._agreement_terminated)
            try:
                terms = _signed_terms(info, engine.payments.requestor_id)
                await engine.payments.add_agreement(info.agreement_id, reservation=key, terms=terms)
            except BillingTermsError as exc:
                raise _ProvisionError(f"unusable payment terms: {exc}") from exc
        finally:
            budget.release(key)
        # Shielded and bounded: once the daemon made the activity, its id must be known here,
        # or cleanup could not destroy it (a stop during this call would leak it).
        with trio.fail_after(engine.timeouts.activity_creation, shield=True):
            activity_id = await engine.yagna.activity.create_activity(info.agreement_id)
        self.activity_id = activity_id
        engine.payments.activity_started(info.agreement_id, activity_id)
        if network is not None:
            self.network_node = await network.add_node(self, info.provider_id)
        engine.emit(
            ActivityCreated(
                agreement_id=info.agreement_id,
                activity_id=activity_id,
                provider_id=info.provider_id,
                provider_name=info.provider_name,
            )
        )
        ctx = WorkContext(
            engine.yagna,
            activity_id=activity_id,
            agreement_id=info.agreement_id,
            provider_id=info.provider_id,
            provider_name=info.provider_name,
            storage=engine.storage,
            emit=engine.emit,
            stream_output=engine.stream_output,
            deploy_args=self.service.get_deploy_args(),
            implicit_init=True,
        )
        self.service._ctx = ctx
        self.machine.fire(Trigger.ACTIVITY_READY, f"activity {activity_id}")
        return ctx

    async def _sign_within_budget(self, key: object) -> AgreementInfo:
        """Sign an agreement whose exposure the budget reserves under ``key``; while the budget
        does not carry it, tell the cluster and wait until it does."""
        budget = self.link.engine.payments.budget

        def admit(terms: Terms) -> bool:
            return budget.reserve(key, terms)

        try:
            while True:
                await trio.lowlevel.checkpoint()
                try:
                    return await self.link.sign(admit)
                except NotAdmitted as exc:
                    self.link.budget_wait(self.index, budget.exposure_of(exc.terms))
                    while not budget.fits(exc.terms):
                        await budget.changed.wait()
        finally:
            self.link.budget_wait(self.index, None)

    async def _read_usage(self, agreement_id: str, activity_id: str) -> None:
        """Hand the daemon's reading of the activity's usage to billing (its invoice is
        checked against it); bounded, and nothing happens when the daemon cannot answer."""
        engine = self.link.engine
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(min(5.0, engine.timeouts.cleanup / 4)):
            await trio.lowlevel.checkpoint()
            try:
                usage = await engine.yagna.activity.get_usage(activity_id)
            except YagnaError as exc:
                logger.info("reading the usage of activity %s: %s", activity_id, exc)
                return
            engine.payments.activity_usage(agreement_id, activity_id, usage)

    async def _drive(self, name: str, nursery: trio.Nursery) -> None:
        handler = getattr(self.service, name)
        await drive_handler(
            handler,
            name=name,
            run_script=self._run_script,
            nursery=nursery,
            close_timeout=self.link.engine.timeouts.close,
        )

    async def _run_script(self, script: Script) -> list[Result]:
        # The context deploys first when the handler did not (the seed's `start` does not).
        return await script.execute()

    async def _health_loop(self, health: HealthCheck) -> None:
        assert health.interval is not None
        monitor = self.link.engine.yagna.monitor
        failures = 0
        while True:
            await trio.sleep(health.interval)
            detail = "probe returned False"
            ok = False
            transient: YagnaError | None = None
            # A probe that raises at once needs no cancel point.
            with trio.move_on_after(health.probe_timeout) as probe_scope:  # noqa: ASYNC912
                try:
                    if health.probe is not None:
                        ok = await health.probe(self.service)
                    else:
                        ok = await self.service.is_activity_responsive()
                except ActivityGone as exc:
                    self.cancel(ActivityDied(str(exc)))
                    return
                except TRANSIENT_ERRORS as exc:
                    transient = exc
                except Exception as exc:
                    detail = f"{type(exc).__name__}: {exc}"
            if probe_scope.cancelled_caught:
                detail = f"no answer within {health.probe_timeout} s"
                if health.probe is None:  # the default probe only asks the daemon
                    transient = DaemonTimeout("GetActivityState", detail)
            if ok:
                failures = 0
                continue
            if transient is not None or not monitor.available:
                # The daemon failed (or is known to be failing), not the service: that is the
                # engine's to judge (``DaemonLost``), so the failure does not count here.
                if transient is not None:
                    monitor.failed(transient, "health probe")
                logger.info("%r: health probe skipped, the daemon is unavailable", self.service)
                continue
            failures += 1
            self.link.emit(
                HealthProbeFailed(
                    cluster_id=self.link.cluster_id,
                    instance_id=self.id,
                    activity_id=self.activity_id or "",
                    failures=failures,
                    detail=detail,
                )
            )
            if failures >= health.failures:
                if health.probe is None and await self._activity_terminated():
                    self.cancel(ActivityDied(detail))
                else:
                    self.cancel(HealthCheckFailed(failures, detail))
                return

    async def _activity_terminated(self) -> bool:
        if self.activity_id is None:
            await trio.lowlevel.checkpoint()
            return False
        try:
            with trio.fail_after(self.link.health.probe_timeout):
                state = await self.link.engine.yagna.activity.get_state(self.activity_id)
        except (YagnaError, trio.TooSlowError):
            await trio.lowlevel.checkpoint()
            return False
        return not state.alive

    def _agreement_terminated(self, event: AgreementTerminatedEvent) -> None:
        extra: dict[str, Any] = dict(event.reason.extra) if event.reason else {}
        message = event.reason.message if event.reason else None
        # The reason's code names the side that wrote it. (A daemon hosting both sides, as
        # LocalNet's real-daemon backend does, reports a requestor's termination on the
        # provider's copy of the agreement too, with terminator "Provider".)
        written_by_requestor = (
            "golem.requestor.code" in extra and "golem.provider.code" not in extra
        )
        if event.terminator == "Provider" and not written_by_requestor:
            code = extra.get("golem.provider.code")
            ending = Ending("Provider", None if code is None else str(code), message)
            self._ended_elsewhere = ending
            self.cancel(ProviderTerminated(ending.code, message))
        elif self._life is not None:
            # Ended on our side while this life still runs: the payment processor broke it
            # over a bad debit note (or another client of the same identity did).
            code = extra.get("golem.requestor.code")
            ending = Ending("Requestor", None if code is None else str(code), message)
            self._ended_elsewhere = ending
            self.cancel(AgreementLost(ending.code, message))

    async def _stop_phase(self, reason: StopReason, ctx: WorkContext | None) -> None:
        """The stopping phase: shielded, bounded, always run."""
        engine = self.link.engine
        timeouts = engine.timeouts
        trigger = Trigger.FAILURE if reason.failure else Trigger.STOP
        if isinstance(reason, RunFinished):
            trigger = Trigger.RUN_FINISHED
        self.machine.fire(trigger, reason.message)
        await trio.lowlevel.checkpoint()  # the caller shields and bounds the whole phase
        if self.reached_running and ctx is not None and self._ended_elsewhere is None:
            async with trio.open_nursery() as reading:
                # The usage billing needs is read while the handler runs, not after it: one
                # round trip fewer before the activity is destroyed. The reading bounds the
                # invoice as well then, with the worst case of the time after it.
                info = self.agreement
                if info is not None and self.activity_id is not None:
                    self._usage_read = True
                    reading.start_soon(self._read_usage, info.agreement_id, self.activity_id)
                with trio.move_on_after(timeouts.shutdown) as scope:
                    self._shutdown_scope = scope
                    if engine.hurry.is_set():
                        scope.cancel()
                    await trio.lowlevel.checkpoint()
                    self.shutdown_ran = True
                    try:
                        async with trio.open_nursery() as nursery:
                            await self._drive("shutdown", nursery)
                            nursery.cancel_scope.cancel()
                    except* Exception as group:
                        logger.warning(
                            "%r: the shutdown handler failed: %r", self.service, group.exceptions
                        )
                self._shutdown_scope = None
                self.shutdown_timed_out = scope.cancelled_caught
        with trio.move_on_after(timeouts.cleanup) as cleanup:
            await self._cleanup(reason)
        self.cleanup_timed_out = cleanup.cancelled_caught

    async def _leave_network(self, network: Network) -> None:
        """Remove this instance's node from the network (bounded; the address is freed
        whatever the daemon answers)."""
        self.network_node = None
        bound = min(5.0, self.link.engine.timeouts.cleanup / 4)
        with trio.move_on_after(bound):
            await trio.lowlevel.checkpoint()
            try:
                await network.remove_node(self)
            except YagnaError as exc:
                logger.info(
                    "removing %r from network %s: %s", self.service, network.network_id, exc
                )
        network.release(self)

    def _finish(self, reason: StopReason) -> None:
        engine = self.link.engine
        if self.machine.state is not ServiceState.STOPPING:
            # The stopping phase was cut before it began; it still ends here.
            self.machine.fire(Trigger.FAILURE if reason.failure else Trigger.STOP, reason.message)
        self.machine.fire(Trigger.CLEANED_UP, reason.message)
        engine.emit(
            ServiceFinished(
                cluster_id=self.link.cluster_id,
                instance_id=self.id,
                service_class=type(self.service).__name__,
                stop_reason=reason.message,
                stop_code=reason.code,
                failed=reason.failure,
                provider_id=self.provider_id,
                provider_name=self.provider_name,
            )
        )

    async def _cleanup(self, reason: StopReason) -> None:
        """Destroy the activity, leave the network, end the agreement (``services/_ending.py``);
        each step done is marked, so that what a cut cleanup left can be handed over."""
        engine = self.link.engine
        info = self.agreement
        await trio.lowlevel.checkpoint()
        if self.activity_id is not None:
            if info is not None and not self._usage_read:
                await self._read_usage(info.agreement_id, self.activity_id)
            self._activity_ended = await destroy_activity(
                engine, info, self.activity_id, engine.timeouts.cleanup / 2
            )
        if self.link.network is not None:
            await self._leave_network(self.link.network)
        if info is None:
            return
        await end_agreement(engine, info, reason, self._ended_elsewhere)
        self._agreement_ended = True

    def _hand_over(self, reason: StopReason) -> None:
        """Give the engine what a cut cleanup left of this life (see ``_ending.Leftovers``)."""
        info = self.agreement
        if info is None or self._agreement_ended:
            return
        activity_id = None if self._activity_ended else self.activity_id
        engine = self.link.engine
        engine.leftovers.take(engine, Leftover(info, activity_id, reason, self._ended_elsewhere))


class _ProvisionError(Exception):
    pass
