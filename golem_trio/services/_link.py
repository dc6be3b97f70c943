"""What an instance may ask of the cluster that holds it: :class:`ClusterLink`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal

import attrs

from ..market import Admit, AgreementInfo
from ..network import Network
from ._context import EngineContext
from ._policy import HealthCheck, RestartPolicy
from ._service import ClusterView
from ._state import StateChange

__all__ = ["ClusterLink"]


@attrs.frozen(eq=False)
class ClusterLink:
    """Everything an instance may ask of its cluster, and nothing more.

    A cluster makes one when it starts and hands it to each instance it spawns; the instance
    never sees the cluster's own attributes or callbacks.
    """

    #: The cluster as its service objects see it (``Service.cluster``).
    cluster: ClusterView
    #: The engine's shared parts: the daemon, payments, the agreement watcher, the events, the
    #: bounds and the clock.
    engine: EngineContext = attrs.field(repr=False)
    #: When a life ends and whether another one starts.
    restart: RestartPolicy = attrs.field(repr=False)
    #: How a running life is probed.
    health: HealthCheck = attrs.field(repr=False)
    #: When the cluster's agreements expire; a life ends ``Timeouts.expiration_margin`` sooner.
    expiration: dt.datetime = attrs.field(repr=False)
    #: Sign one agreement on the cluster's market, admitted by the callable given (which
    #: reserves its exposure in the budget).
    sign: Callable[[Admit | None], Awaitable[AgreementInfo]] = attrs.field(repr=False)
    #: Keep a provider out of the cluster's market for a while: ``(provider_id, reason)``.
    avoid_provider: Callable[[str, str], None] = attrs.field(repr=False)
    #: Tell the cluster that an instance changed state (it keeps counts per state).
    state_changed: Callable[[StateChange], None] = attrs.field(repr=False)
    #: Tell the cluster that an instance finished for good.
    finished: Callable[[], None] = attrs.field(repr=False)
    #: Tell the cluster that an instance waits for the budget to carry it, with the exposure of
    #: its agreement (``(index, exposure)``), or no longer waits (``(index, None)``).
    budget_wait: Callable[[int, Decimal | None], None] = attrs.field(
        repr=False, default=lambda index, exposure: None
    )
    #: The network the cluster's instances join, if any.
    network: Network | None = attrs.field(repr=False, default=None)

    @property
    def cluster_id(self) -> str:
        return self.cluster.id

    def emit(self, event: object) -> None:
        """Hand an event to the engine's consumers."""
        self.engine.emit(event)
