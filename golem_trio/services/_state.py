"""The service instance state machine, written once, as data.

:data:`TRANSITIONS` is the whole machine: every allowed ``(state, trigger) -> state`` edge.
:class:`StateMachine` applies triggers to it, refuses anything else with
:class:`IllegalTransition`, and keeps the history of every change with its reason.

The states are yapapi's (``pending``, ``starting``, ``running``, ``stopping``,
``terminated``); yapapi's ``unresponsive`` (never entered there) and ``suspended`` are not
implemented. Unlike yapapi, every active state leaves through ``stopping``: that is where the
activity is destroyed and the agreement terminated, whatever ended the instance. The user's
``shutdown`` handler runs there only if the instance reached ``running``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

import attrs
import trio

from .._errors import GolemError

__all__ = [
    "TRANSITIONS",
    "IllegalTransition",
    "ServiceState",
    "StateChange",
    "StateMachine",
    "Trigger",
]


class ServiceState(enum.StrEnum):
    """The state of one service instance."""

    PENDING = "pending"
    """Waiting for an agreement and an activity."""
    STARTING = "starting"
    """The activity exists; the ``start`` handler runs."""
    RUNNING = "running"
    """``start`` finished; the ``run`` handler runs."""
    STOPPING = "stopping"
    """Shielded, bounded shutdown: the ``shutdown`` handler (if it was running), then the
    activity destroyed and the agreement terminated."""
    TERMINATED = "terminated"
    """Nothing of this life is left on the network."""

    @property
    def is_available(self) -> bool:
        """As yapapi's ``AVAILABLE``: the instance has an activity to talk to."""
        return self in (ServiceState.STARTING, ServiceState.RUNNING, ServiceState.STOPPING)


class Trigger(enum.StrEnum):
    """Why the state changed."""

    ACTIVITY_READY = "activity-ready"
    """An agreement was signed and its activity created."""
    STARTED = "started"
    """The ``start`` handler finished."""
    RUN_FINISHED = "run-finished"
    """The ``run`` handler returned."""
    STOP = "stop"
    """A deliberate stop: ``cluster.stop()``, scale down, Golem exit, Ctrl-C, budget
    exhaustion or expiration."""
    FAILURE = "failure"
    """A failure: a handler raised, the provider terminated the agreement, the activity died,
    the health check failed, or provisioning failed."""
    CLEANED_UP = "cleaned-up"
    """The stopping phase ended."""
    RESTART = "restart"
    """The restart policy asked for a new life (a new agreement)."""


_S = ServiceState
_T = Trigger

#: Every allowed transition: ``(state, trigger) -> new state``. Nothing else is allowed.
TRANSITIONS: Mapping[tuple[ServiceState, Trigger], ServiceState] = {
    (_S.PENDING, _T.ACTIVITY_READY): _S.STARTING,
    (_S.PENDING, _T.STOP): _S.STOPPING,
    (_S.PENDING, _T.FAILURE): _S.STOPPING,
    (_S.STARTING, _T.STARTED): _S.RUNNING,
    (_S.STARTING, _T.STOP): _S.STOPPING,
    (_S.STARTING, _T.FAILURE): _S.STOPPING,
    (_S.RUNNING, _T.RUN_FINISHED): _S.STOPPING,
    (_S.RUNNING, _T.STOP): _S.STOPPING,
    (_S.RUNNING, _T.FAILURE): _S.STOPPING,
    (_S.STOPPING, _T.CLEANED_UP): _S.TERMINATED,
    (_S.TERMINATED, _T.RESTART): _S.PENDING,
}


class IllegalTransition(GolemError, RuntimeError):
    """A trigger that :data:`TRANSITIONS` does not allow in the current state."""

    def __init__(self, state: ServiceState, trigger: Trigger) -> None:
        super().__init__(f"no transition from {state.value!r} on {trigger.value!r}")
        self.state = state
        self.trigger = trigger


@attrs.frozen
class StateChange:
    """One entry of an instance's state history. ``at`` is on trio's clock."""

    old: ServiceState
    new: ServiceState
    trigger: Trigger
    reason: str | None
    at: float


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside a trio run (pure tests of the table)
        return 0.0


@attrs.define
class StateMachine:
    """The current state of one instance and how it got there.

    ``on_change`` is called after each change (synchronously; it must not block).
    """

    state: ServiceState = ServiceState.PENDING
    history: list[StateChange] = attrs.field(factory=list)
    on_change: Callable[[StateChange], None] | None = attrs.field(default=None, repr=False)

    def can(self, trigger: Trigger) -> bool:
        return (self.state, trigger) in TRANSITIONS

    def fire(self, trigger: Trigger, reason: str | None = None) -> StateChange:
        """Apply ``trigger``; :class:`IllegalTransition` if it is not allowed now."""
        try:
            new = TRANSITIONS[(self.state, trigger)]
        except KeyError:
            raise IllegalTransition(self.state, trigger) from None
        change = StateChange(self.state, new, trigger, reason, _now())
        self.state = new
        self.history.append(change)
        if self.on_change is not None:
            self.on_change(change)
        return change

    @property
    def visited(self) -> frozenset[ServiceState]:
        return frozenset({ServiceState.PENDING} | {c.new for c in self.history})
