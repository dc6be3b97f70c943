"""The services engine: :func:`open_engine` and the :class:`Engine` it yields.

``async with open_engine(yagna, payments, events=..., platform=...) as engine:`` runs, for the
duration of the block, everything the services layer owns on top of a daemon client and a
payment processor it is given:

- the nursery every cluster lives in (:meth:`Engine.run_service` starts them there);
- the one agreement-event watcher of the engine (:class:`~._watcher.AgreementWatcher`);
- the budget watch: when the budget ledger says the budget is exhausted it emits
  :class:`~golem_trio.events.BudgetLimitReached` and stops every cluster
  (:class:`~._reasons.BudgetExhausted`);
- the daemon watch: the client's :class:`~golem_trio.yagna.DaemonMonitor` hands its events
  (:class:`~golem_trio.events.DaemonUnavailable`, :class:`~golem_trio.events.DaemonAvailable`)
  to ``events``, and an outage longer than ``daemon_outage_limit`` stops every cluster
  (:class:`~._reasons.DaemonLost`);
- adoptions: an agreement that was approved just as its signing was given up
  (:class:`~golem_trio.market.AgreementWithdrawn`, heard through a subscription to the
  events) is registered for payment, so its invoice is still validated and paid;
- leftovers: an agreement whose instance's cleanup was cut by ``Timeouts.cleanup`` (the
  daemon away longer than that) is terminated and paid in the background once the daemon
  answers (:class:`~._ending.Leftovers`, in the adoptions' nursery);
- stopping (:meth:`Engine.stop`, then :meth:`Engine.wait_finished`) and hurrying
  (:meth:`Engine.hurry`).

Leaving the block cancels the clusters' nursery (stop them first, and wait, for a graceful
end), then waits for the adoptions under way (each shielded and bounded by
``Timeouts.adoption``) and the leftovers (each given ``Timeouts.cleanup`` more).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar

import trio

from ..events import BudgetLimitReached, Emitter
from ..market import AgreementWithdrawn, ImageResolver, Payload, use_resolver
from ..network import Network
from ..payment import BillingTermsError, PaymentProcessor
from ..work import TransferStorage
from ..yagna import TRANSIENT_ERRORS, DaemonTimeout, YagnaClient, YagnaError
from ._cluster import Cluster, check_addresses, make_services
from ._context import EngineContext, Timeouts
from ._policy import HealthCheck, RestartPolicy
from ._reasons import BudgetExhausted, DaemonLost, StopReason
from ._service import Service, check_service_class
from ._watcher import AgreementWatcher

__all__ = ["Engine", "open_engine"]

logger = logging.getLogger("golem_trio.services")

#: How long (s) the daemon may stay unavailable before the services stop (:class:`DaemonLost`).
DEFAULT_OUTAGE_LIMIT = 300.0
#: Seconds one probe of the daemon may take during an outage.
PROBE_BOUND = 5.0

S = TypeVar("S", bound=Service)


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Engine:
    """A running services engine, as :func:`open_engine` yields it."""

    def __init__(
        self,
        context: EngineContext,
        adopters: trio.Nursery,
        resolver: ImageResolver | None,
        seed: int | None = None,
    ) -> None:
        self._seed = seed
        #: The shared parts every cluster and instance of this engine sees.
        self.context = context
        self._adopters = adopters
        self._resolver = resolver
        self._nursery: trio.Nursery | None = None
        self._clusters: list[Cluster[Any]] = []
        self._networks: list[Network] = []
        self._stop_reason: StopReason | None = None

    @property
    def clusters(self) -> list[Cluster[Any]]:
        """Every cluster started, oldest first (a copy)."""
        return list(self._clusters)

    @property
    def stop_reason(self) -> StopReason | None:
        """The first reason the engine was stopped for; ``None`` while nothing stopped it."""
        return self._stop_reason

    async def run_service(
        self,
        service_class: type[S],
        payload: Payload | None = None,
        *,
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, Any]] | None = None,
        expiration: dt.datetime | None = None,
        restart: RestartPolicy | None = None,
        health: HealthCheck | None = None,
        negotiation_options: Mapping[str, Any] | None = None,
        demand_options: Mapping[str, Any] | None = None,
        network: Network | None = None,
        network_addresses: Iterable[str] | None = None,
    ) -> Cluster[S]:
        """Start a cluster of ``service_class`` in the engine's nursery; returns once its demand
        is published (see ``Golem.run_service``).

        Raises ``ServiceDefinitionError`` for a class the engine cannot drive, ``ValueError``
        without a payload (or with one that differs from the class's own), ``RuntimeError``
        once the engine is stopped or closed. Cancellation: if cancelled before the cluster
        started, nothing was started.
        """
        check_service_class(service_class)
        addresses = check_addresses(network, network_addresses)
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._stop_reason is not None:
            raise RuntimeError("the engine is shutting down")
        if self._nursery is None:
            raise RuntimeError("the engine is closed")
        with contextlib.ExitStack() as stack:
            if self._resolver is not None:
                stack.enter_context(use_resolver(self._resolver))
            own = await service_class.get_payload()
        if payload is None:
            payload = own
        elif own is not None and own != payload:
            raise ValueError(f"{service_class.__name__}.get_payload() and the payload given differ")
        if payload is None:
            raise ValueError(
                f"{service_class.__name__}.get_payload() returned None and no payload was given"
            )
        services = make_services(service_class, num_instances, instance_params)
        cluster: Cluster[S] = Cluster(
            self.context,
            service_class,
            payload,
            expiration=expiration,
            restart=restart or RestartPolicy(),
            health=health or HealthCheck(),
            negotiation_options=negotiation_options,
            demand_options=demand_options,
            network=network,
            seed=None if self._seed is None else hash((self._seed, len(self._clusters))),
        )
        if self._nursery is None:  # closed while the payload was being resolved
            raise RuntimeError("the engine is closed")
        self._clusters.append(cluster)
        await self._nursery.start(cluster._run, services, addresses)
        return cluster

    async def create_network(
        self,
        ip: str,
        *,
        owner_address: str | None = None,
        mask: str | None = None,
        gateway: str | None = None,
    ) -> Network:
        """Create a VPN network on the daemon (see ``Golem.create_network``); the engine
        removes it when it closes, if it is still there."""
        if self._stop_reason is not None:
            raise RuntimeError("the engine is shutting down")
        if self._nursery is None:
            raise RuntimeError("the engine is closed")
        network = await Network.create(
            self.context.yagna, ip, owner_address=owner_address, mask=mask, gateway=gateway
        )
        self._networks.append(network)
        return network

    @property
    def networks(self) -> list[Network]:
        """Every network created, oldest first (a copy)."""
        return list(self._networks)

    async def _remove_networks(self) -> None:
        """Remove every network still there (each shielded and bounded)."""
        await trio.lowlevel.checkpoint()
        for network in self._networks:
            await network.close()

    def stop(self, reason: StopReason) -> None:
        """Stop every cluster for good, for ``reason`` (the first reason is kept as
        :attr:`stop_reason`); no new cluster starts. Sync and idempotent."""
        if self._stop_reason is None:
            self._stop_reason = reason
        for cluster in self._clusters:
            cluster.stop(reason)

    async def wait_finished(self) -> None:
        """Wait until every cluster has finished (see :meth:`Cluster.wait_finished`).

        Cancellation: a checkpoint, nothing shielded; cancelling it ends only the wait. On the
        way out, shield and bound it (``Golem.__aexit__`` does, with ``Timeouts.exit_wait``).
        """
        await trio.lowlevel.checkpoint()
        for cluster in list(self._clusters):
            await cluster.wait_finished()

    def hurry(self) -> None:
        """Cut the waits of the stopping phases that may be cut (the ``shutdown`` handlers);
        activities are still destroyed and agreements terminated."""
        self.context.hurry.set()
        for cluster in self._clusters:
            cluster._hurry()

    def adopt(self, agreement_id: str) -> None:
        """Register for payment an agreement that no instance holds, in the background
        (shielded, at most ``Timeouts.adoption`` seconds), so that its invoice is validated
        and paid like any other. Sync."""
        self._adopters.start_soon(self._adopt, agreement_id)

    # --- the engine's own tasks and subscriptions ---------------------------------------------

    def _on_withdrawn(self, event: object) -> None:
        """An event consumer for :class:`AgreementWithdrawn`: such an agreement is adopted."""
        if isinstance(event, AgreementWithdrawn):
            self.adopt(event.agreement_id)

    async def _adopt(self, agreement_id: str) -> None:
        """Shielded and bounded, so a shutdown under way does not skip it."""
        payments = self.context.payments
        with trio.move_on_after(self.context.timeouts.adoption, shield=True):
            await trio.lowlevel.checkpoint()
            try:
                await payments.add_agreement(agreement_id)
            except (YagnaError, BillingTermsError) as exc:
                logger.warning("agreement %s cannot be paid: %s", agreement_id, exc)
                return
            payments.agreement_ended(agreement_id)

    async def _watch_budget(self) -> None:
        reason = await self.context.payments.budget.wait_exhausted()
        detail = str(reason)
        self.context.emit(
            BudgetLimitReached(budget=reason.budget, projected=reason.projected, detail=detail)
        )
        self.stop(BudgetExhausted(detail))

    async def _watch_daemon(self) -> None:
        """Stop every cluster (:class:`DaemonLost`) once an outage of the daemon lasts longer
        than the monitor's limit. While an outage lasts, the daemon is asked for the identity
        now and then (:meth:`_probe_daemon`), so that its return is noticed at once rather than
        when the next long poll ends. The instances' cleanup then waits, within its bounds,
        for the daemon to come back to terminate their agreements."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._probe_daemon)
            outage, error = await self.context.yagna.monitor.wait_lost()
            nursery.cancel_scope.cancel()
        logger.warning("the daemon has been unavailable for %.0f s: %s", outage, error)
        self.stop(DaemonLost(outage, f"{type(error).__name__}: {error}"))

    async def _probe_daemon(self) -> None:
        """During each outage, ask the daemon for the identity (each try bounded by
        :data:`PROBE_BOUND`, with the monitor's pauses between tries) until it answers."""
        yagna = self.context.yagna
        monitor = yagna.monitor
        while True:
            await monitor.wait_unavailable()
            ride = monitor.ride_out("getIdentity")
            while not monitor.available:
                answered = False
                failure: BaseException = DaemonTimeout("getIdentity", "no answer to the probe")
                with trio.move_on_after(PROBE_BOUND):
                    await trio.lowlevel.checkpoint()
                    try:
                        await yagna.identity.get_identity()
                        answered = True
                    except TRANSIENT_ERRORS as exc:
                        failure = exc
                if answered:
                    ride.succeeded()
                else:
                    await ride.failed(failure)


@contextlib.asynccontextmanager
async def open_engine(
    yagna: YagnaClient,
    payments: PaymentProcessor,
    *,
    events: Emitter,
    platform: str,
    subnet_tag: str | None = None,
    storage: TransferStorage | None = None,
    stream_output: bool = False,
    timeouts: Timeouts | None = None,
    now: Callable[[], dt.datetime] = _wall_now,
    resolver: ImageResolver | None = None,
    daemon_outage_limit: float | None = DEFAULT_OUTAGE_LIMIT,
    seed: int | None = None,
) -> AsyncIterator[Engine]:
    """Run the services engine on ``yagna`` and ``payments`` for the duration of the block
    (see the module's docstring for what it owns).

    ``events`` receives every event of the engine and its clusters; the engine also subscribes
    to it, for the :class:`~golem_trio.market.AgreementWithdrawn` events it adopts.
    ``platform`` and ``subnet_tag`` go into every demand; ``storage`` serves file transfers;
    ``stream_output`` follows each batch's event stream; ``now`` is the daemon's clock;
    ``resolver``, when given, resolves the payloads of :meth:`Engine.run_service`.
    ``daemon_outage_limit`` (seconds, > 0, or ``None`` for no limit) is how long the daemon
    may stay unavailable before every cluster stops as :class:`DaemonLost`; it becomes the
    limit of ``yagna.monitor``, whose events go to ``events`` while the block runs.
    ``seed`` seeds each cluster's random choices (restart jitter); ``None``: unseeded.

    Cancellation: entering checkpoints (the agreement watcher starts). Leaving the block,
    however it is left, cancels the clusters (each instance's stopping phase still runs,
    shielded and bounded) and waits for the adoptions, each shielded and bounded.
    """
    # One application session for the engine: its agreements are confirmed under the
    # session its payment processor reads documents for, and only they are watched.
    watcher = AgreementWatcher(yagna, now=now, app_session_id=payments.app_session_id)
    context = EngineContext(
        yagna=yagna,
        payments=payments,
        watcher=watcher,
        emit=events.emit,
        platform=platform,
        subnet_tag=subnet_tag,
        storage=storage,
        stream_output=stream_output,
        timeouts=timeouts or Timeouts(),
        now=now,
    )
    monitor = yagna.monitor
    monitor.outage_limit = daemon_outage_limit  # (validates it)
    monitor.add_listener(events.emit)
    # The budget counts, for each agreement, the stopping phase as its shutdown allowance.
    payments.budget.shutdown = context.timeouts.stop_phase
    # Adoptions outlive the clusters: the final invoice wait needs them registered.
    async with trio.open_nursery() as adopters:
        engine = Engine(context, adopters, resolver, seed)
        context.leftovers.open(adopters)
        events.add_consumer(engine._on_withdrawn, (AgreementWithdrawn,))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(watcher.run)
                nursery.start_soon(engine._watch_budget)
                nursery.start_soon(engine._watch_daemon)
                engine._nursery = nursery
                try:
                    yield engine
                finally:
                    engine._nursery = None
                    nursery.cancel_scope.cancel()
        finally:
            # The clusters are gone: what their cleanups left has its last bound now.
            context.leftovers.close(context.timeouts.cleanup)
            # No network is used any more. Each removal is bounded.
            with trio.CancelScope(shield=True):
                await engine._remove_networks()
            events.remove_consumer(engine._on_withdrawn)
            monitor.remove_listener(events.emit)
