"""``Cluster``: the instances of one service class, and the handle to control them.

The engine starts a cluster (:meth:`Cluster._run`, in the engine's nursery); each instance
gets a :class:`~._link.ClusterLink` made by the cluster, not the cluster itself.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import uuid
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

import trio

from .._errors import GolemError
from ..events import ClusterCappedByBudget, ClusterFinished, ClusterStarted
from ..market import Negotiation, Payload, build_demand, open_negotiation
from ..network import REMOVAL_BOUND, Network
from ._context import EngineContext
from ._instance import ServiceInstance
from ._link import ClusterLink
from ._policy import HealthCheck, RestartPolicy
from ._reasons import ClusterStopped, StopReason
from ._service import Service
from ._state import ServiceState, StateChange

__all__ = ["BudgetTooSmall", "Cluster", "ClusterClosed", "InstancesLost", "Stopping"]

logger = logging.getLogger("golem_trio.services")

S = TypeVar("S", bound=Service)


class ClusterClosed(GolemError, RuntimeError):
    """The cluster was stopped: it spawns nothing any more."""


class InstancesLost(GolemError, RuntimeError):
    """``wait_running`` can no longer succeed: too few instances are left alive."""


class BudgetTooSmall(InstancesLost):
    """``wait_running`` asked for more instances than the budget carries: an agreement is
    signed only while its worst-case exposure fits under the budget. The figures are those
    of the last :class:`~golem_trio.events.ClusterCappedByBudget`."""

    def __init__(self, wanted: int, capped: ClusterCappedByBudget) -> None:
        super().__init__(
            f"the budget carries {capped.carried} instance(s) of {capped.service_class}, "
            f"{wanted} wanted: {capped.exposure} GLM may be spent at worst on those signed and "
            f"one more may cost up to {capped.instance_exposure} GLM before it can be stopped, "
            f"over a budget of {capped.budget} GLM"
        )
        self.wanted = wanted
        self.carried = capped.carried
        self.budget = capped.budget
        self.exposure = capped.exposure
        self.instance_exposure = capped.instance_exposure


def check_addresses(network: Network | None, addresses: Iterable[str] | None) -> list[str]:
    """The addresses given for new instances, each checked against the network (no
    duplicates); :class:`~golem_trio.network.AddressError`, or ``ValueError`` without a
    network."""
    if addresses is None:
        return []
    if isinstance(addresses, str):
        raise TypeError("network_addresses must be an iterable of addresses, not one string")
    listed = list(addresses)
    if network is None:
        if listed:
            raise ValueError("network_addresses need a network (run_service(network=...))")
        return []
    checked = [network.check_address(a) for a in listed]
    if len(set(checked)) != len(checked):
        raise ValueError(f"network_addresses lists an address twice: {listed!r}")
    return checked


def make_services(
    service_class: type[S],
    num_instances: int | None,
    instance_params: Iterable[Mapping[str, Any]] | None,
) -> list[S]:
    """The service objects for ``num_instances`` (which wins over the length of
    ``instance_params``; without either, one) made with ``instance_params`` as keyword
    arguments. Raises ``ValueError`` (nothing is made) when the params run out first."""
    if num_instances is None and instance_params is None:
        num_instances = 1
    if num_instances is not None and num_instances < 0:
        raise ValueError(f"num_instances must be >= 0, got {num_instances}")
    params: list[Mapping[str, Any]] = []
    if instance_params is None:
        params = [{}] * (num_instances or 0)
    else:
        source = iter(instance_params)
        while num_instances is None or len(params) < num_instances:
            try:
                params.append(next(source))
            except StopIteration:
                if num_instances is None:
                    break
                raise ValueError(
                    f"instance_params iterable depleted after {len(params)} spawned instances."
                ) from None
    return [service_class(**p) for p in params]


class Stopping:
    """Returned by the stop methods: the stop has begun; ``await`` it to wait until every
    affected instance is terminated (each stop is bounded by the stopping phase's bounds)."""

    def __init__(self, instances: Iterable[ServiceInstance]) -> None:
        self._instances = list(instances)

    async def wait(self) -> None:
        """Wait for the instances to finish. Cancellation: only the wait is cancelled."""
        await trio.lowlevel.checkpoint()
        for instance in self._instances:
            await instance.done.wait()

    def __await__(self) -> Generator[Any, None, None]:
        return self.wait().__await__()


class Cluster(Generic[S]):
    """The instances of one service, made by ``Golem.run_service``.

    ``instances`` lists every service object the cluster made, terminated ones included (as
    yapapi does); ``live_instances`` only those not finished.

    The engine drives it through the private :meth:`_run` and :meth:`_hurry`; everything
    public here is for the program that asked for the cluster.
    """

    def __init__(
        self,
        context: EngineContext,
        service_class: type[S],
        payload: Payload,
        *,
        expiration: dt.datetime | None,
        restart: RestartPolicy,
        health: HealthCheck,
        seed: int | None = None,
        negotiation_options: Mapping[str, Any] | None = None,
        demand_options: Mapping[str, Any] | None = None,
        network: Network | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        #: The network the instances join (each instance's ``network_node``), if any.
        self.network = network
        self._context = context
        self.service_class = service_class
        self.payload = payload
        self.expiration = expiration
        self.restart = restart
        self.health = health
        self._rng = random.Random(seed)
        self._negotiation_options = dict(negotiation_options or {})
        self._demand_options = dict(demand_options or {})
        self._instances: list[ServiceInstance] = []
        self._nursery: trio.Nursery | None = None
        self._market: Negotiation | None = None
        self._link: ClusterLink | None = None
        self._closed = False
        self._close_reason: StopReason | None = None
        self._stop_requested = trio.Event()
        self._finished = trio.Event()
        self._changed = trio.Event()
        self._counter = itertools.count()
        #: Instances per state, and how many are finished, kept on every change.
        self._counts: Counter[ServiceState] = Counter()
        self._done_count = 0
        #: Instances waiting for the budget to carry them (by index), and the last report.
        self._budget_waiting: set[int] = set()
        self._capped: ClusterCappedByBudget | None = None

    # --- reading ---------------------------------------------------------------------------

    @property
    def instances(self) -> list[S]:
        """Every service object of the cluster (a copy), oldest first."""
        return [i.service for i in self._instances]  # type: ignore[misc]

    @property
    def live_instances(self) -> list[S]:
        """The service objects that are not finished."""
        return [i.service for i in self._instances if not i.finished]  # type: ignore[misc]

    @property
    def records(self) -> list[ServiceInstance]:
        """The engine's records of every instance (state history, stop reasons)."""
        return list(self._instances)

    def states(self) -> Counter[ServiceState]:
        """How many instances are in each state."""
        return Counter({s: n for s, n in self._counts.items() if n})

    @property
    def market(self) -> Negotiation:
        if self._market is None:
            raise RuntimeError("the cluster is not running")
        return self._market

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> Iterator[S]:
        return iter(self.instances)

    def __len__(self) -> int:
        return len(self._instances)

    def __repr__(self) -> str:
        states = ", ".join(f"{s.value}={n}" for s, n in self.states().items())
        return f"<Cluster {self.id} {self.service_class.__name__} [{states}]>"

    # --- waiting ---------------------------------------------------------------------------

    async def wait_running(self, n: int | None = None) -> list[S]:
        """Wait until at least ``n`` instances (default: every live one) are running at once;
        returns the running ones.

        Bound the wait with the caller's own scope (``with trio.fail_after(300): ...``).
        Raises :class:`InstancesLost` when it can no longer happen (fewer than ``n`` instances
        are left that could run), :class:`BudgetTooSmall` (an :class:`InstancesLost`) when
        the budget carries fewer than ``n`` (see
        :class:`~golem_trio.events.ClusterCappedByBudget`) and :class:`ClusterClosed` when the
        cluster stops.
        Cancellation: only the wait is cancelled.
        """
        await trio.lowlevel.checkpoint()
        # Counts kept on every change, so waiting on a large cluster costs nothing per change.
        while True:
            possible = len(self._instances) - self._done_count
            want = n if n is not None else possible
            if want > 0 and self._counts[ServiceState.RUNNING] >= want:
                running = [i for i in self._instances if i.state is ServiceState.RUNNING]
                return [i.service for i in running]  # type: ignore[misc]
            if self._closed:
                raise ClusterClosed(f"cluster {self.id} was stopped")
            capped = self._capped
            if capped is not None and self._budget_waiting and want > capped.carried:
                raise BudgetTooSmall(want, capped)
            if (n is not None and possible < n) or (n is None and possible == 0):
                raise InstancesLost(
                    f"only {possible} instance(s) of {self.service_class.__name__} are left; "
                    f"{n if n is not None else 'none'} can run"
                )
            await self._changed.wait()

    async def wait_finished(self) -> None:
        """Wait until every instance is finished (terminated with no restart to come).

        Returns at once (after a checkpoint) when they are. It waits only; it stops nothing
        (see :meth:`stop`). Cancellation: a checkpoint, and nothing is shielded: cancelling
        the wait ends only the wait, and the instances go on as they were. To wait on the way
        out (in a ``finally``, during a shutdown), shield and bound it yourself, as the engine
        does at exit (``Timeouts.exit_wait``).
        """
        await trio.lowlevel.checkpoint()
        while self._done_count < len(self._instances):
            await self._changed.wait()

    # --- control ---------------------------------------------------------------------------

    def spawn_instances(
        self,
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, Any]] | None = None,
        network_addresses: Iterable[str] | None = None,
    ) -> list[S]:
        """Start more instances (scale up); returns the new service objects.

        ``num_instances`` wins over the length of ``instance_params`` (keyword arguments of
        the service class, one mapping per instance); running out of params raises
        ``ValueError``. Without either, one instance. ``network_addresses`` are the
        addresses of the first new instances in the cluster's network (the others get free
        ones); :class:`~golem_trio.network.AddressError` for one the network cannot give.
        """
        if self._closed:
            raise ClusterClosed(f"cluster {self.id} was stopped; it spawns nothing more")
        if self._nursery is None:
            raise RuntimeError("the cluster is not running")
        addresses = check_addresses(self.network, network_addresses)
        services = make_services(self.service_class, num_instances, instance_params)
        self._add(services, addresses)
        return services

    def _add(self, services: Iterable[S], addresses: Sequence[str] = ()) -> None:
        assert self._nursery is not None
        assert self._link is not None
        for position, service in enumerate(services):
            record = ServiceInstance(service, self._link, next(self._counter))
            if position < len(addresses):
                record.address = addresses[position]
            self._instances.append(record)
            self._counts[record.state] += 1
            self._nursery.start_soon(
                record.supervise, random.Random(self._rng.random()), name=f"instance-{record.id}"
            )
        self._notify()

    def stop(self, reason: StopReason | None = None) -> Stopping:
        """Stop every instance for good and spawn nothing more. Sync; ``await`` the result to
        wait until they are all terminated. Idempotent."""
        reason = reason or ClusterStopped()
        if not self._closed:
            self._closed = True
            self._close_reason = reason
        records = list(self._instances)
        for record in records:
            record.stop(reason)
        self._stop_requested.set()
        self._notify()
        return Stopping(records)

    def stop_instance(self, service: S, reason: StopReason | None = None) -> Stopping:
        """Stop one instance for good (it is not restarted). ``await`` to wait for it."""
        record = self._record(service)
        record.stop(reason or ClusterStopped("stopped by stop_instance"))
        return Stopping([record])

    def scale(self, n: int) -> Stopping:
        """Make the number of live instances ``n``: spawn more, or stop the surplus (those not
        running first, newest first). ``await`` the result to wait for the stopped ones."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        live = [i for i in self._instances if not i.finished and not i.stopped_for_good]
        if n > len(live):
            self.spawn_instances(n - len(live))
            return Stopping([])
        # Those not running first, then the newest.
        order = sorted(live, key=lambda i: (i.state is ServiceState.RUNNING, -i.index))
        surplus = order[: len(live) - n]
        for record in surplus:
            record.stop(ClusterStopped("scaled down"))
        return Stopping(surplus)

    def _record(self, service: S) -> ServiceInstance:
        for record in self._instances:
            if record.service is service:
                return record
        raise ValueError(f"{service!r} is not an instance of cluster {self.id}")

    # --- engine side -----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _hurry(self) -> None:
        """Cut the instances' ``shutdown`` handlers short (their cleanup still runs)."""
        for record in self._instances:
            record.hurry()

    # What the instances' link calls:

    def _avoid_provider(self, provider_id: str, reason: str) -> None:
        if self._market is not None:
            self._market.bans.ban(provider_id, reason, trio.current_time())

    def _state_changed(self, change: StateChange) -> None:
        self._counts[change.old] -= 1
        self._counts[change.new] += 1
        self._notify()

    def _instance_done(self) -> None:
        self._done_count += 1
        self._notify()

    def _budget_wait(self, index: int, exposure: Decimal | None) -> None:
        """An instance waits for the budget (``exposure``: that of its agreement), or no
        longer does (``None``); a new or changed shortfall is reported as an event."""
        if exposure is None:
            if index in self._budget_waiting:
                self._budget_waiting.discard(index)
                self._notify()
            return
        self._budget_waiting.add(index)
        live = len(self._instances) - self._done_count
        carried = live - len(self._budget_waiting)
        previous = self._capped
        if previous is None or previous.carried != carried or previous.requested != live:
            ledger = self._context.payments.budget
            self._capped = ClusterCappedByBudget(
                cluster_id=self.id,
                service_class=self.service_class.__name__,
                requested=live,
                carried=carried,
                budget=ledger.limit,
                exposure=ledger.exposure(),
                instance_exposure=exposure,
            )
            logger.warning("%s", BudgetTooSmall(live, self._capped))
            self._context.emit(self._capped)
        self._notify()

    async def _run(
        self,
        services: Iterable[S],
        addresses: Sequence[str] = (),
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Publish the demand and supervise the instances until :meth:`stop` (the engine
        starts it in its nursery: ``await nursery.start(cluster._run, services)``)."""
        if self.network is not None:
            # Raises NetworkClosed (to run_service) when the network is being removed.
            self.network.attach()
        engine = self._context
        expiration = self.expiration or (engine.now() + dt.timedelta(minutes=180))
        self.expiration = expiration
        demand = build_demand(
            self.payload,
            expiration=expiration,
            payment_platform=engine.platform,
            subnet_tag=engine.subnet_tag,
            now=engine.now(),
            **self._demand_options,
        )
        try:
            # Agreements are confirmed under the engine's application session (the one its
            # payment processor reads documents for), whatever the options say.
            session = engine.payments.app_session_id
            options = {**self._negotiation_options, "app_session_id": session}
            async with open_negotiation(
                engine.yagna,
                demand,
                platform=engine.platform,
                emit=engine.emit,
                now=engine.now,
                **options,
            ) as market:
                self._market = market
                self._link = ClusterLink(
                    cluster=self,
                    engine=engine,
                    restart=self.restart,
                    health=self.health,
                    expiration=expiration,
                    sign=market.sign,
                    avoid_provider=self._avoid_provider,
                    state_changed=self._state_changed,
                    finished=self._instance_done,
                    budget_wait=self._budget_wait,
                    network=self.network,
                )
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._add(services, addresses)
                    engine.emit(
                        ClusterStarted(
                            cluster_id=self.id,
                            service_class=self.service_class.__name__,
                            num_instances=len(self._instances),
                        )
                    )
                    task_status.started()
                    await self._stop_requested.wait()
        finally:
            self._closed = True
            self._nursery = None
            if self.network is not None:
                # The last cluster out removes a network asked to go (shielded, bounded).
                with trio.move_on_after(REMOVAL_BOUND, shield=True):
                    await self.network.detach()
            self._finished.set()
            self._notify()
            engine.emit(
                ClusterFinished(cluster_id=self.id, service_class=self.service_class.__name__)
            )
