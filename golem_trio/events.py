"""``golem_trio.events``: what the engine reports while it runs, and who hears it.

Every layer reports what it does as small frozen event objects. The engine's own events are
the :class:`Event` subclasses defined here; the market and payment layers emit their own classes
(re-exported here), and so does the work layer. The daemon's availability is reported by the
client's monitor (:class:`DaemonUnavailable`, :class:`DaemonAvailable`, re-exported from
:mod:`golem_trio.yagna`). All of them go through the same
:class:`Emitter` to the consumers the user registered, unchanged.

A consumer is any callable taking one event (:data:`EventConsumer`). It is called synchronously,
in the task that emitted the event, so it must be quick and must not block; a consumer that
needs to do I/O should hand the event to a memory channel and return. A consumer that raises
does not disturb the engine: the error is logged on the ``golem_trio.events`` logger and the
other consumers still hear the event.

Events carry identifiers, names, figures and human-readable reasons; they never carry the app
key or any other secret, so they are safe to log in full
(see :func:`golem_trio._log.log_event`).

Events are the engine's observation interface and may gain fields between releases; match on
the class and read fields by name.

Names: an event is named after what happened, ``<subject><past participle>``
(``ClusterFinished``, ``HealthProbeFailed``, ``BudgetLimitReached``); where yapapi has an event
for the same thing, it has yapapi's name. The reasons an instance stops for
(:mod:`golem_trio.services`: ``ClusterStopped``, ``HealthCheckFailed``, ``BudgetExhausted``,
...) are not events, and no event shares a name with one.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import TypeAlias

import attrs

from golem_trio.market import AgreementRejected as AgreementRejected
from golem_trio.market import AgreementSigned as AgreementSigned
from golem_trio.market import ProposalReceived as ProposalReceived
from golem_trio.market import ProposalRejected as ProposalRejected
from golem_trio.market import ProviderBanned as ProviderBanned
from golem_trio.payment import AgreementTerminatedForBilling as AgreementTerminatedForBilling
from golem_trio.payment import DebitNoteAccepted as DebitNoteAccepted
from golem_trio.payment import DebitNoteRefused as DebitNoteRefused
from golem_trio.payment import InvoiceAccepted as InvoiceAccepted
from golem_trio.payment import InvoiceRejected as InvoiceRejected
from golem_trio.payment import PaymentReport
from golem_trio.yagna import DaemonAvailable as DaemonAvailable
from golem_trio.yagna import DaemonUnavailable as DaemonUnavailable

__all__ = [
    "ActivityCreated",
    "ActivityDestroyed",
    "AgreementRejected",
    "AgreementSigned",
    "AgreementTerminated",
    "AgreementTerminatedForBilling",
    "BudgetLimitReached",
    "ClusterCappedByBudget",
    "ClusterFinished",
    "ClusterStarted",
    "DaemonAvailable",
    "DaemonUnavailable",
    "DebitNoteAccepted",
    "DebitNoteRefused",
    "Emitter",
    "Event",
    "EventConsumer",
    "GolemStarted",
    "HealthProbeFailed",
    "InstanceRestarting",
    "InvoiceAccepted",
    "InvoiceRejected",
    "ProposalReceived",
    "ProposalRejected",
    "ProviderBanned",
    "ServiceFinished",
    "ServiceStateChanged",
    "ShutdownFinished",
    "ShutdownStarted",
]

logger = logging.getLogger("golem_trio.events")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the engine's events -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Event:
    """Base class of the engine's events.

    Attributes:
        timestamp: When the event was created (timezone-aware, UTC). Each event takes the clock
            when it is built, so events built in order have non-decreasing timestamps.
    """

    timestamp: dt.datetime = attrs.field(factory=_utcnow)


@attrs.frozen(kw_only=True)
class GolemStarted(Event):
    """The engine is up: connected to its daemon, with an allocation for the budget.

    Attributes:
        api_url: The daemon's base URL (for the embedded LocalNet, its local address).
        localnet: Whether the daemon is the embedded LocalNet rather than a real yagna.
        budget: The most the engine may spend, in the payment platform's token.
        payment_platform: The payment platform, e.g. ``"erc20-holesky-tglm"``.
        subnet_tag: The subnet the demand is published in, or ``None`` for any.
    """

    api_url: str
    localnet: bool
    budget: Decimal
    payment_platform: str
    subnet_tag: str | None


@attrs.frozen(kw_only=True)
class ShutdownStarted(Event):
    """The engine began to shut down.

    Attributes:
        reason: Why, in words (e.g. ``"block exited"``, ``"cancelled"``, an error).
    """

    reason: str


@attrs.frozen(kw_only=True)
class ShutdownFinished(Event):
    """The engine has shut down; the last event it emits.

    Attributes:
        payment_report: What was paid and what stays unpaid, or ``None`` if payments never
            started.
        error: What went wrong during shutdown, if anything.
    """

    payment_report: PaymentReport | None
    error: str | None = None


@attrs.frozen(kw_only=True)
class ClusterStarted(Event):
    """A cluster of service instances was started.

    Attributes:
        cluster_id: The cluster's id.
        service_class: The name of the cluster's service class.
        num_instances: How many instances it was asked to run.
    """

    cluster_id: str
    service_class: str
    num_instances: int


@attrs.frozen(kw_only=True)
class ClusterFinished(Event):
    """A cluster and all its instances have stopped (whatever stopped them; the instances'
    reasons are in their ``ServiceFinished`` events).

    Attributes:
        cluster_id: The cluster's id.
        service_class: The name of the cluster's service class.
    """

    cluster_id: str
    service_class: str


@attrs.frozen(kw_only=True)
class ServiceStateChanged(Event):
    """A service instance moved from one state to another.

    Attributes:
        cluster_id: The instance's cluster.
        instance_id: The instance's id.
        service_class: The name of the instance's service class.
        old: The state left: ``"pending"``, ``"starting"``, ``"running"``, ``"stopping"`` or
            ``"terminated"``.
        new: The state entered (same names).
        trigger: What caused the change (the state machine's transition name).
        reason: Why, in words, when there is more to say than the trigger.
        provider_id: The provider the instance runs on, once there is one.
        provider_name: That provider's name, if it gave one.
    """

    cluster_id: str
    instance_id: str
    service_class: str
    old: str
    new: str
    trigger: str
    reason: str | None
    provider_id: str | None
    provider_name: str | None


@attrs.frozen(kw_only=True)
class ServiceFinished(Event):
    """A service instance has stopped for good (it will not be restarted as this instance).

    Attributes:
        cluster_id: The instance's cluster.
        instance_id: The instance's id.
        service_class: The name of the instance's service class.
        stop_reason: Why it stopped, in words.
        stop_code: Why it stopped, as a short code (e.g. ``"ProviderTerminated"``).
        failed: Whether it stopped because something failed, rather than on request.
        provider_id: The provider it last ran on, if any.
        provider_name: That provider's name, if it gave one.
    """

    cluster_id: str
    instance_id: str
    service_class: str
    stop_reason: str
    stop_code: str
    failed: bool
    provider_id: str | None
    provider_name: str | None


@attrs.frozen(kw_only=True)
class InstanceRestarting(Event):
    """A failed service instance will be started again.

    Attributes:
        cluster_id: The instance's cluster.
        instance_id: The instance's id.
        service_class: The name of the instance's service class.
        attempt: Which restart this is (1 for the first).
        delay: Seconds of backoff before the new start.
        avoided_provider: The provider id the restart will not use (the one that failed), if
            any.
    """

    cluster_id: str
    instance_id: str
    service_class: str
    attempt: int
    delay: float
    avoided_provider: str | None


@attrs.frozen(kw_only=True)
class ActivityCreated(Event):
    """An activity was created on a provider under an agreement.

    Attributes:
        agreement_id: The agreement.
        activity_id: The new activity.
        provider_id: The provider running it.
        provider_name: That provider's name, if it gave one.
    """

    agreement_id: str
    activity_id: str
    provider_id: str
    provider_name: str | None


@attrs.frozen(kw_only=True)
class ActivityDestroyed(Event):
    """An activity was destroyed.

    Attributes:
        agreement_id: The agreement it ran under.
        activity_id: The activity.
        provider_id: The provider that ran it.
    """

    agreement_id: str
    activity_id: str
    provider_id: str


@attrs.frozen(kw_only=True)
class AgreementTerminated(Event):
    """An agreement was terminated, by either side.

    Attributes:
        agreement_id: The agreement.
        provider_id: The provider.
        provider_name: That provider's name, if it gave one.
        terminator: Who terminated it: ``"Requestor"`` or ``"Provider"``.
        code: The termination reason's code (``golem.requestor.code`` or the provider's), if
            any.
        message: The termination reason's message, if any.
    """

    agreement_id: str
    provider_id: str
    provider_name: str | None
    terminator: str
    code: str | None
    message: str | None


@attrs.frozen(kw_only=True)
class HealthProbeFailed(Event):
    """One health probe of a service instance failed. After ``HealthCheck.failures`` of them
    in a row the instance stops (for the reason ``HealthCheckFailed``, or ``ActivityDied``).

    Attributes:
        cluster_id: The instance's cluster.
        instance_id: The instance's id.
        activity_id: The activity that was checked.
        failures: Consecutive failures so far, this one included.
        detail: What the check saw, in words.
    """

    cluster_id: str
    instance_id: str
    activity_id: str
    failures: int
    detail: str


@attrs.frozen(kw_only=True)
class BudgetLimitReached(Event):
    """The engine will not take on more cost: the projected spend would exceed the budget.
    Every instance is then stopped (for the reason ``BudgetExhausted``).

    Attributes:
        budget: The budget.
        projected: The spend projected if the engine went on.
        detail: What would have been paid or started, in words.
    """

    budget: Decimal
    projected: Decimal
    detail: str


@attrs.frozen(kw_only=True)
class ClusterCappedByBudget(Event):
    """The budget carries fewer instances of a cluster than were asked for: an agreement is
    signed only while its worst-case exposure fits under the budget, and the next one does
    not. The instances beyond ``carried`` wait (pending) until room is made (an instance ends,
    or the budget is topped up); ``Cluster.wait_running`` for more than ``carried`` raises
    ``BudgetTooSmall``.

    Attributes:
        cluster_id: The cluster.
        service_class: The name of its service class.
        requested: Instances asked for (live ones).
        carried: Instances of this cluster the budget carries now (those that hold or are
            signing an agreement). The budget is the engine's, shared by all its clusters:
            what the others hold counts in ``exposure`` and leaves less room for this one.
        budget: The budget (less the margin the engine keeps).
        exposure: What can still be spent on everything signed so far, at its worst, before
            the engine could stop it.
        instance_exposure: The worst-case exposure of one more instance on the best offer.
    """

    cluster_id: str
    service_class: str
    requested: int
    carried: int
    budget: Decimal
    exposure: Decimal
    instance_exposure: Decimal


# --- consumers ---------------------------------------------------------------------------------

#: A callable that hears events. It is called synchronously and should return quickly.
EventConsumer: TypeAlias = Callable[[object], None]


@attrs.define(eq=False)
class _Registration:
    consumer: EventConsumer
    kinds: tuple[type, ...] | None
    failures: int = 0


class Emitter:
    """Hands each event to the registered consumers, in registration order.

    Consumers are called synchronously by :meth:`emit`, in the emitting task. An exception from
    a consumer is caught and logged on the ``golem_trio.events`` logger: at ERROR with its
    traceback the first time that consumer fails, at DEBUG afterwards, so one broken consumer
    cannot flood the log. The consumer stays registered and hears later events. Exceptions
    that are not :class:`Exception` subclasses (e.g. :class:`KeyboardInterrupt`, trio's
    ``Cancelled``) propagate to the emitter's caller.

    Args:
        keep: How many of the latest events :attr:`history` keeps; 0 keeps none.

    Attributes:
        history: The latest ``keep`` events, oldest first.
    """

    def __init__(self, keep: int = 0) -> None:
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.history: collections.deque[object] = collections.deque(maxlen=keep)
        self._registrations: list[_Registration] = []

    def add_consumer(self, consumer: EventConsumer, kinds: tuple[type, ...] | None = None) -> None:
        """Register ``consumer`` to hear events from now on.

        Args:
            consumer: Called with each event.
            kinds: If given, only events that are instances of one of these classes are passed
                to ``consumer``; ``None`` passes all events.
        """
        self._registrations.append(_Registration(consumer, kinds))

    def remove_consumer(self, consumer: EventConsumer) -> None:
        """Stop passing events to ``consumer`` (every registration of it); no-op if absent.

        Consumers are compared with ``==``, so a bound method such as ``events.append`` can be
        removed with a new reference to the same method.
        """
        self._registrations = [r for r in self._registrations if r.consumer != consumer]

    def emit(self, event: object) -> None:
        """Pass ``event`` to each consumer registered for its kind, in registration order.

        Never raises an :class:`Exception` raised by a consumer (see the class docstring).
        Not a checkpoint.
        """
        if self.history.maxlen:
            self.history.append(event)
        # A consumer may add or remove consumers; this event goes to those registered now.
        for registration in tuple(self._registrations):
            kinds = registration.kinds
            if kinds is not None and not isinstance(event, kinds):
                continue
            try:
                registration.consumer(event)
            except Exception:
                registration.failures += 1
                if registration.failures == 1:
                    logger.exception(
                        "Event consumer %r failed on %s; later failures are logged at DEBUG",
                        registration.consumer,
                        type(event).__name__,
                    )
                else:
                    logger.debug(
                        "Event consumer %r failed on %s (failure %d)",
                        registration.consumer,
                        type(event).__name__,
                        registration.failures,
                        exc_info=True,
                    )
