"""LocalNet's event feeds, in virtual time."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
import trio.testing

from golem_trio.localnet.emulator import NetClock
from golem_trio.localnet.emulator._events import EventLog, EventQueue, QueueClosed

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_clock_follows_trio_time_and_stamps_strictly_increase(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = NetClock(EPOCH)
    assert clock.now() == EPOCH
    first, second = clock.stamp(), clock.stamp()
    assert second > first
    await trio.sleep(3 * 3600)
    assert clock.now() == EPOCH + dt.timedelta(hours=3)
    assert clock.to_trio(EPOCH + dt.timedelta(hours=4)) == pytest.approx(trio.current_time() + 3600)


async def test_log_selects_strictly_after_and_waits(autojump_clock: trio.testing.MockClock) -> None:
    log: EventLog[tuple[dt.datetime, str]] = EventLog(NetClock(EPOCH))
    a = log.append(lambda t: (t, "a"))
    b = log.append(lambda t: (t, "b"))
    assert log.after(None) == [a, b]
    assert log.after(a[0]) == [b]
    assert log.after(b[0]) == []
    assert log.after(None, limit=1) == [a]
    assert log.after(None, match=lambda e: e[1] == "b") == [b]

    # Nothing new: the poll waits the whole time and answers [].
    start = trio.current_time()
    assert await log.wait_after(b[0], 5.0) == []
    assert trio.current_time() - start == pytest.approx(5.0)

    async def later() -> None:
        await trio.sleep(2)
        log.append(lambda t: (t, "c"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        start = trio.current_time()
        (c,) = await log.wait_after(b[0], 10.0)
    assert c[1] == "c"
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_queue_consumes_and_closes(autojump_clock: trio.testing.MockClock) -> None:
    queue: EventQueue[int] = EventQueue()
    for i in range(5):
        queue.put(i)
    assert await queue.take(3, 1.0) == [0, 1, 2]
    assert await queue.take(3, 1.0) == [3, 4]
    assert await queue.take(3, 1.0) == []

    async def close_soon() -> None:
        await trio.sleep(1)
        queue.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(QueueClosed):
            await queue.take(1, 10.0)
    with pytest.raises(QueueClosed):
        await queue.take(1, 0.0)


async def test_zero_waits_return_what_is_there(autojump_clock: trio.testing.MockClock) -> None:
    log: EventLog[str] = EventLog(NetClock(EPOCH))
    log.append(lambda t: "a")
    assert await log.wait_after(None, 0.0) == ["a"]
    queue: EventQueue[int] = EventQueue()
    queue.put(1)
    assert await queue.take(5, 0.0) == [1]


async def test_a_cancelled_take_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    queue: EventQueue[int] = EventQueue()
    queue.put(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.take(5, 10.0)
    assert await queue.take(5, 0.0) == [1]
