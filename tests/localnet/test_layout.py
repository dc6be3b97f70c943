"""LocalNet's public clock. Its import rules (nothing from the SDK, the
wings one way, each entered through its ``__init__.py``) are contracts of ``lint-imports``
(``.importlinter``), run by ``make test``; its exports are checked with everyone's in
``tests/test_exports.py``."""

from __future__ import annotations

import datetime as dt

import trio
import trio.testing

from golem_trio.localnet import open_localnet

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


async def test_now_is_the_networks_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with open_localnet([], epoch=EPOCH) as net:
        assert net.now() == EPOCH
        assert net.now() == net.daemon.clock.now()
        await trio.sleep(3600)
        assert net.now() == EPOCH + dt.timedelta(hours=1)
        assert net.now().tzinfo is not None
