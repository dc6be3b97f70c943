"""The two kinds of event feeds the daemon has, with long polls on trio's clock.

* :class:`EventLog`: persistent events, selected by ``timestamp > afterTimestamp`` (agreement,
  debit-note and invoice events). Reading does not consume.
* :class:`EventQueue`: events consumed when read (a demand's proposal events). Closing it (the
  subscription ended) makes every waiting and later reader fail.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from ._clock import NetClock

__all__ = ["EventLog", "EventQueue", "QueueClosed"]

E = TypeVar("E")


class QueueClosed(Exception):
    """The queue's subscription is gone."""


class EventLog(Generic[E]):
    """Append-only, timestamped, in order; long polls wait for the first matching event."""

    def __init__(self, clock: NetClock) -> None:
        self._clock = clock
        self._stamps: list[dt.datetime] = []
        self._events: list[E] = []
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._events)

    def append(self, make: Callable[[dt.datetime], E]) -> E:
        """Stamp a new event (``make`` builds it from its timestamp) and wake the pollers."""
        stamp = self._clock.stamp()
        event = make(stamp)
        self._stamps.append(stamp)
        self._events.append(event)
        self._changed.set()
        self._changed = trio.Event()
        return event

    def after(
        self,
        after: dt.datetime | None,
        *,
        limit: int | None = None,
        match: Callable[[E], bool] | None = None,
    ) -> list[E]:
        """Events stamped strictly after ``after`` (all if ``None``), oldest first."""
        start = 0 if after is None else bisect.bisect_right(self._stamps, after)
        found: list[E] = []
        for event in self._events[start:]:
            if match is None or match(event):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def wait_after(
        self,
        after: dt.datetime | None,
        wait: float,
        *,
        limit: int | None = None,
        match: Callable[[E], bool] | None = None,
    ) -> list[E]:
        """As :meth:`after`, waiting up to ``wait`` seconds for the first event; ``[]`` if none
        came. Always a checkpoint."""
        # Checkpoint first, so that nothing awaits between finding events and returning them
        # (a zero wait must still return what is there).
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(max(wait, 0.0)):
            while True:
                changed = self._changed
                found = self.after(after, limit=limit, match=match)
                if found:
                    return found
                await changed.wait()
        return []


class EventQueue(Generic[E]):
    """Events consumed on read, for one subscriber."""

    def __init__(self) -> None:
        self._items: list[E] = []
        self._changed = trio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: E) -> None:
        if self.closed:
            return
        self._items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    def close(self) -> None:
        """End the queue: waiting readers and later reads raise :class:`QueueClosed`."""
        self.closed = True
        self._items.clear()
        self._changed.set()

    async def take(self, limit: int, wait: float) -> list[E]:
        """Up to ``limit`` items, waiting up to ``wait`` seconds for the first; ``[]`` if none
        came. Always a checkpoint."""
        # Checkpoint before taking anything: items taken are never lost to a cancellation, and
        # a zero wait still returns what is queued.
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(max(wait, 0.0)):
            while True:
                if self.closed:
                    raise QueueClosed
                if self._items:
                    taken, self._items = self._items[:limit], self._items[limit:]
                    return taken
                await self._changed.wait()
        if self.closed:
            raise QueueClosed
        return []
