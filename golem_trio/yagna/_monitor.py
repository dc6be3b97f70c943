"""Whether the daemon is available: one :class:`DaemonMonitor` per client.

The loops that run in the background for as long as the engine does (event polls, offer
collection, the polls for exec results) report every call to the client's monitor: a success
(:meth:`DaemonMonitor.succeeded`) or a failure that a daemon restart, a proxy or a stall can
cause (:func:`is_transient`; :meth:`DaemonMonitor.failed`). The monitor turns those reports
into two events, :class:`DaemonUnavailable` (the first failure after a success) and
:class:`DaemonAvailable` (the first success after that, with how long the outage lasted), and
lets the engine wait until an outage has lasted longer than it will tolerate
(:meth:`DaemonMonitor.wait_lost`).

A loop rides out a failure with a :class:`RideOut`: it reports the failure and sleeps a
bounded, jittered, growing pause before the next try; a success resets the pause.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable

import attrs
import trio

from ._errors import (
    DaemonTimeout,
    DaemonUnreachable,
    DecodeError,
    ReplyTooLarge,
    RequestTimeout,
    ServerError,
    YagnaError,
)

__all__ = [
    "TRANSIENT_ERRORS",
    "DaemonAvailable",
    "DaemonMonitor",
    "DaemonUnavailable",
    "RideOut",
    "is_transient",
]

#: The errors a daemon that restarts, stalls or sits behind a failing proxy produces: no
#: answer, a 5xx, a 408, a reply that is not the documented JSON (an HTML error page), a reply
#: past the deadline or the size cap. Loops retry after them; other errors (401, 403, 404...)
#: are answers and keep their meaning.
TRANSIENT_ERRORS: tuple[type[YagnaError], ...] = (
    DaemonUnreachable,
    DaemonTimeout,
    ReplyTooLarge,
    DecodeError,
    ServerError,
    RequestTimeout,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is one a loop should ride out (see :data:`TRANSIENT_ERRORS`)."""
    return isinstance(error, TRANSIENT_ERRORS)


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class DaemonUnavailable:
    """A call to the daemon failed after a success: from ``since`` on the daemon is taken to
    be unavailable. ``operation`` is the call that failed, ``error`` what it raised (its class
    name is ``error_type``)."""

    since: dt.datetime
    operation: str
    error_type: str
    error: str


@attrs.frozen
class DaemonAvailable:
    """A call to the daemon succeeded again at ``at``, after an outage of ``outage`` seconds
    that began at ``since``; ``failures`` calls failed in between."""

    since: dt.datetime
    at: dt.datetime
    outage: float
    failures: int


@attrs.frozen
class _Outage:
    since: float
    since_wall: dt.datetime
    error: BaseException
    operation: str


class DaemonMonitor:
    """Tracks the daemon's availability from what the background loops report.

    ``outage_limit`` (seconds, ``None`` for no limit) is how long an outage may last before
    :meth:`wait_lost` returns; the services engine sets it (``Golem(daemon_outage_limit=...)``).
    ``base_delay`` and ``max_delay`` shape the pause of a :class:`RideOut`: the n-th retry in
    a row waits ``uniform(0.5, 1) * min(max_delay, base_delay * 2**n)`` seconds. ``now`` is the
    wall clock the events are stamped with; durations use trio's clock.

    Its methods are synchronous but :meth:`wait_lost`; every event goes to each listener
    (:meth:`add_listener`), synchronously, in the task that reported.
    """

    def __init__(
        self,
        *,
        outage_limit: float | None = 300.0,
        base_delay: float = 0.5,
        max_delay: float = 5.0,
        now: Callable[[], dt.datetime] = _wall_now,
        rng: random.Random | None = None,
    ) -> None:
        if base_delay < 0 or max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")
        self._changed = trio.Event()
        self.outage_limit = outage_limit
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.now = now
        self._rng = rng if rng is not None else random.Random()
        self._outage: _Outage | None = None
        self._failures = 0
        self._listeners: list[Callable[[object], None]] = []
        #: How many failures were reported in all (the monitor's lifetime).
        self.failures = 0
        #: Every outage that ended, as (start, seconds), oldest first.
        self.outages: list[tuple[dt.datetime, float]] = []

    @property
    def outage_limit(self) -> float | None:
        return self._outage_limit

    @outage_limit.setter
    def outage_limit(self, value: float | None) -> None:
        if value is not None and not (value > 0 and not math.isnan(value)):
            raise ValueError(f"outage_limit must be > 0 seconds (or None), got {value!r}")
        self._outage_limit = value
        self._notify()

    @property
    def available(self) -> bool:
        """No failure was reported since the last success."""
        return self._outage is None

    @property
    def unavailable_for(self) -> float:
        """Seconds since the current outage began (``0.0`` while available)."""
        if self._outage is None:
            return 0.0
        return max(0.0, trio.current_time() - self._outage.since)

    @property
    def last_error(self) -> BaseException | None:
        """What the first failed call of the current outage raised."""
        return self._outage.error if self._outage is not None else None

    def add_listener(self, listener: Callable[[object], None]) -> None:
        """Hand every :class:`DaemonUnavailable` and :class:`DaemonAvailable` to ``listener``
        (synchronously; it must not block)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[object], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: object) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def succeeded(self) -> None:
        """A call got a good reply: an outage under way ends (:class:`DaemonAvailable`)."""
        outage = self._outage
        if outage is None:
            return
        self._outage = None
        seconds = max(0.0, trio.current_time() - outage.since)
        self.outages.append((outage.since_wall, seconds))
        failures, self._failures = self._failures, 0
        self._notify()
        self._emit(DaemonAvailable(outage.since_wall, self.now(), seconds, failures))

    def failed(self, error: BaseException, operation: str) -> None:
        """A call failed with ``error`` (one of :data:`TRANSIENT_ERRORS`): the first failure
        after a success starts an outage (:class:`DaemonUnavailable`)."""
        self.failures += 1
        self._failures += 1
        if self._outage is not None:
            return
        self._outage = _Outage(trio.current_time(), self.now(), error, operation)
        self._notify()
        self._emit(
            DaemonUnavailable(self._outage.since_wall, operation, type(error).__name__, str(error))
        )

    def delay(self, retry: int) -> float:
        """Seconds to pause before retry number ``retry`` (from 0) of one loop."""
        jitter = self._rng.random()
        return (0.5 + jitter / 2) * min(self.max_delay, self.base_delay * 2.0 ** min(retry, 30))

    def ride_out(self, operation: str, *, give_up_after: float | None = None) -> RideOut:
        """A :class:`RideOut` for one loop that calls ``operation``."""
        return RideOut(self, operation, give_up_after)

    async def wait_unavailable(self) -> None:
        """Return once an outage is under way (at once if one is).

        Cancellation: a checkpoint; nothing to undo.
        """
        await trio.lowlevel.checkpoint()
        while self._outage is None:
            await self._changed.wait()

    async def wait_lost(self) -> tuple[float, BaseException]:
        """Wait until one outage has lasted longer than :attr:`outage_limit`; return how long
        it has lasted and what its first failed call raised. With no limit, waits forever.

        Cancellation: a checkpoint; nothing to undo.
        """
        await trio.lowlevel.checkpoint()
        while True:
            changed = self._changed
            outage = self._outage
            limit = self._outage_limit
            if outage is None or limit is None:
                await changed.wait()
                continue
            with trio.move_on_at(outage.since + limit):
                await changed.wait()
                continue
            if self._outage is outage:
                return self.unavailable_for, outage.error


class RideOut:
    """One loop's way through an outage: :meth:`failed` reports and pauses, :meth:`succeeded`
    reports and resets the pause. Get one from :meth:`DaemonMonitor.ride_out`.

    With ``give_up_after``, :meth:`failed` raises the error instead of pausing once this loop
    has failed for that many seconds in a row (for loops that must end on their own).
    """

    def __init__(self, monitor: DaemonMonitor, operation: str, give_up_after: float | None) -> None:
        self.monitor = monitor
        self.operation = operation
        self.give_up_after = give_up_after
        #: Failures in a row (reset by a success).
        self.retries = 0
        self._first_failure: float | None = None

    def succeeded(self) -> None:
        self.retries = 0
        self._first_failure = None
        self.monitor.succeeded()

    async def failed(self, error: BaseException) -> None:
        """Report ``error`` and pause before the next try (bounded, jittered, growing with
        the failures in a row). Raises ``error`` when the loop has failed for longer than
        ``give_up_after``.

        Cancellation: a checkpoint (the pause); cancelling it ends the pause.
        """
        self.monitor.failed(error, self.operation)
        now = trio.current_time()
        if self._first_failure is None:
            self._first_failure = now
        if self.give_up_after is not None and now - self._first_failure >= self.give_up_after:
            await trio.lowlevel.checkpoint()
            raise error
        delay = self.monitor.delay(self.retries)
        self.retries += 1
        await trio.sleep(delay)
