"""Time in LocalNet: every timer and timestamp goes through trio's clock.

Inside ``trio.run(..., clock=trio.testing.MockClock(autojump_threshold=0))`` hours of agreement
life pass in milliseconds, so nothing here may read the wall clock after start-up. Wall-clock
timestamps (what the daemon writes into JSON) are the wall time at start-up plus the trio time
elapsed since.
"""

from __future__ import annotations

import datetime as dt
import time

import trio

__all__ = ["NetClock"]


class NetClock:
    """Maps trio time to wall-clock timestamps, strictly increasing.

    The daemon selects persistent events by ``timestamp > afterTimestamp``; two events with the
    same timestamp would make a client that passes the first one's timestamp miss the second.
    :meth:`stamp` therefore never returns the same instant twice (it moves on by a microsecond,
    the daemon's JSON resolution that clients keep).

    Must be created inside ``trio.run``.
    """

    def __init__(self, epoch: dt.datetime | None = None) -> None:
        start = epoch if epoch is not None else dt.datetime.fromtimestamp(time.time(), dt.UTC)
        self._epoch = start - dt.timedelta(seconds=trio.current_time())
        self._last = dt.datetime.min.replace(tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        """The current (possibly virtual) wall-clock time, timezone-aware UTC."""
        return self._epoch + dt.timedelta(seconds=trio.current_time())

    def stamp(self) -> dt.datetime:
        """:meth:`now`, but strictly later than any stamp given before."""
        value = self.now()
        if value <= self._last:
            value = self._last + dt.timedelta(microseconds=1)
        self._last = value
        return value

    def to_trio(self, when: dt.datetime) -> float:
        """The trio time at which wall-clock time ``when`` comes."""
        return (when - self._epoch).total_seconds()
