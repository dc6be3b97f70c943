"""The client for the whole requestor-side REST API of one daemon."""

from __future__ import annotations

import random
from types import TracebackType

import httpx2

from ._activity import ActivityApi
from ._config import ApiConfig
from ._http import HttpLayer
from ._identity import IdentityApi
from ._market import MarketApi
from ._monitor import DaemonMonitor
from ._net import NetApi
from ._payment import PaymentApi

__all__ = ["YagnaClient"]


class YagnaClient:
    """Typed access to a yagna daemon: ``market``, ``activity``, ``payment``, ``net`` (v1
    paths), ``net_v2`` (v2 paths) and ``identity`` (identity and version).

    One client per daemon, shared by everything that talks to it, closed with ``async with``::

        async with YagnaClient(ApiConfig.from_env()) as yagna:
            me = await yagna.identity.get_identity()

    ``transport`` replaces the network (an ``httpx2.MockTransport`` or ``ASGITransport`` in
    tests); ``long_poll_transport`` does the same for the long-poll pool (default: the same).
    ``monitor`` is where the background loops of the layers above report the daemon's
    availability (default: a new :class:`DaemonMonitor`).
    """

    def __init__(
        self,
        config: ApiConfig,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        long_poll_transport: httpx2.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        monitor: DaemonMonitor | None = None,
    ) -> None:
        self.config = config
        #: The daemon's availability, as the loops that use this client report it.
        self.monitor = monitor if monitor is not None else DaemonMonitor()
        self._http = HttpLayer(
            config, transport=transport, long_poll_transport=long_poll_transport, rng=rng
        )
        self.identity = IdentityApi(self._http)
        self.market = MarketApi(self._http)
        self.activity = ActivityApi(self._http)
        self.payment = PaymentApi(self._http)
        self.net = NetApi(self._http, "v1")
        self.net_v2 = NetApi(self._http, "v2")

    def __repr__(self) -> str:
        return f"<YagnaClient {self.config.api_url}>"

    async def aclose(self) -> None:
        """Close the connection pools. Shielded, so it completes even when cancelled."""
        await self._http.aclose()

    async def __aenter__(self) -> YagnaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
