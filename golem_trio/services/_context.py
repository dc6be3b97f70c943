"""What every cluster and instance of one engine shares: :class:`EngineContext`, and the
engine's time bounds, :class:`Timeouts`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs
import trio

from .._errors import check_seconds
from ..payment import PaymentProcessor
from ..work import TransferStorage
from ..yagna import YagnaClient
from ._ending import Leftovers
from ._watcher import AgreementWatcher

__all__ = ["EngineContext", "Timeouts"]


def _seconds(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(f"Timeouts.{attribute.name}", value, zero=attribute.name in _MAY_BE_ZERO)


#: The fields of :class:`Timeouts` that may be zero.
_MAY_BE_ZERO = frozenset({"shutdown", "expiration_margin"})


def _given(timeouts: Timeouts, name: str) -> float:
    """A field the defaults are derived from, checked first (so a bad one is named, not a sum
    that fails on it)."""
    value = check_seconds(f"Timeouts.{name}", getattr(timeouts, name), zero=name in _MAY_BE_ZERO)
    assert value is not None
    return value


@attrs.frozen
class Timeouts:
    """The engine's time bounds, in seconds. Each field bounds one thing.

    The first four are the parts of an instance's life and stopping phase. The others bound
    waits around them; by default each is derived from the first four (as noted), so changing
    ``shutdown`` or ``cleanup`` moves them along. Health probes have their own bound,
    ``HealthCheck.probe_timeout``.

    Every field is a finite number of seconds, greater than zero (``shutdown`` and
    ``expiration_margin`` may be zero); anything else raises
    :class:`~golem_trio.ConfigurationError` (``ConfigurationTypeError`` for a value that is not
    a number) naming the field, when the ``Timeouts`` is made.
    """

    #: The user's ``shutdown`` handler in an instance's stopping phase. Cut short, or skipped,
    #: when the engine is hurried (a second Ctrl-C, ``Golem.hurry()``).
    shutdown: float = attrs.field(default=30.0, validator=_seconds)
    #: The cleanup step of an instance's stopping phase: destroying the activity, terminating
    #: the agreement, registering it for payment. Never cut short, not even when hurried.
    cleanup: float = attrs.field(default=20.0, validator=_seconds)
    #: Closing a generator handler (``aclose()``, so its ``finally`` blocks run).
    close: float = attrs.field(default=5.0, validator=_seconds)
    #: How long before the cluster's expiration a life ends, so that its stopping phase fits.
    expiration_margin: float = attrs.field(default=60.0, validator=_seconds)
    #: The daemon's ``create_activity`` call while an instance provisions; shielded, so an
    #: activity the daemon made is always known and destroyed. Default: ``cleanup``.
    activity_creation: float = attrs.field(validator=_seconds)
    #: A whole stopping phase (the ``shutdown`` handler, the cleanup and the state changes
    #: around them), as one shielded deadline. Default: ``shutdown + cleanup + 1``.
    stop_phase: float = attrs.field(validator=_seconds)
    #: Registering for payment an agreement that no instance holds (one approved just as its
    #: signing was given up: an *adoption*); shielded. Default: ``cleanup``.
    adoption: float = attrs.field(validator=_seconds)
    #: At the ``async with Golem`` block's exit: the shielded wait for every cluster to
    #: finish stopping. Default: ``shutdown + cleanup + 5``.
    exit_wait: float = attrs.field(validator=_seconds)
    #: When ``Golem.__aenter__`` fails: closing, shielded, what it had opened.
    #: Default: ``cleanup``.
    start_rollback: float = attrs.field(validator=_seconds)

    @activity_creation.default
    def _default_activity_creation(self) -> float:
        return _given(self, "cleanup")

    @stop_phase.default
    def _default_stop_phase(self) -> float:
        return _given(self, "shutdown") + _given(self, "cleanup") + 1.0

    @adoption.default
    def _default_adoption(self) -> float:
        return _given(self, "cleanup")

    @exit_wait.default
    def _default_exit_wait(self) -> float:
        return _given(self, "shutdown") + _given(self, "cleanup") + 5.0

    @start_rollback.default
    def _default_start_rollback(self) -> float:
        return _given(self, "cleanup")


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.define(eq=False)
class EngineContext:
    """The engine's shared parts, as clusters and instances see them (made by
    :func:`~golem_trio.services.open_engine`)."""

    yagna: YagnaClient
    payments: PaymentProcessor
    watcher: AgreementWatcher
    emit: Callable[[object], None]
    platform: str
    subnet_tag: str | None = None
    storage: TransferStorage | None = None
    stream_output: bool = False
    timeouts: Timeouts = Timeouts()
    now: Callable[[], dt.datetime] = _wall_now
    #: Set by a second Ctrl-C (or ``Golem.hurry()``): skip the waits that may be skipped.
    hurry: trio.Event = attrs.field(factory=trio.Event)
    #: Agreements whose instance's cleanup was cut, ended in the background by the engine.
    leftovers: Leftovers = attrs.field(factory=Leftovers)

    def to_trio_time(self, when: dt.datetime) -> float:
        """The trio-clock time at which the wall clock (``now``) shows ``when``."""
        return trio.current_time() + (when - self.now()).total_seconds()
