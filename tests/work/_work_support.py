"""Helpers of the work layer's tests: an activity on LocalNet, wrapped in a WorkContext."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs

from golem_trio.localnet import LocalNet, ProviderSpec, RuntimeFactory, open_localnet
from golem_trio.market import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, open_negotiation
from golem_trio.work import HttpStorage, WorkContext
from golem_trio.yagna import ApiConfig, DemandOfferBase, YagnaClient

PLATFORM = "erc20-holesky-tglm"


def demand(extra: Mapping[str, Any] | None = None) -> DemandOfferBase:
    expiration = int((dt.datetime.now(dt.UTC).timestamp() + 3 * 3600) * 1000)
    properties = {
        "golem.srv.comp.expiration": expiration,
        "golem.node.debug.subnet": "public",
        ACCEPT_TIMEOUT: 120,
        DEBIT_NOTE_INTERVAL: 60,
        **(extra or {}),
    }
    return DemandOfferBase(properties, "(golem.node.debug.subnet=public)")


@attrs.define
class Work:
    net: LocalNet
    yagna: YagnaClient
    ctx: WorkContext
    events: list[object]


@asynccontextmanager
async def open_work(
    runtime: RuntimeFactory,
    *,
    serve: bool = False,
    stream_output: bool = False,
    storage: HttpStorage | None = None,
    properties: Mapping[str, Any] | None = None,
    emit: Callable[[object], None] | None = None,
) -> AsyncIterator[Work]:
    """One LocalNet provider, one approved agreement and a new activity on it."""
    provider = ProviderSpec(name="p0", tick=0.1)
    async with open_localnet([provider], runtime=runtime, serve=serve) as net:
        config = ApiConfig(app_key=net.app_key, api_url=net.url or "http://localnet")
        transport = None if serve else net.transport()
        async with YagnaClient(config, transport=transport) as yagna:
            async with open_negotiation(yagna, demand(properties), platform=PLATFORM) as market:
                info = await market.sign()
            activity_id = await yagna.activity.create_activity(info.agreement_id)
            events: list[object] = []
            ctx = WorkContext(
                yagna,
                activity_id=activity_id,
                agreement_id=info.agreement_id,
                provider_id=info.provider_id,
                provider_name=info.provider_name,
                storage=storage,
                emit=emit or events.append,
                stream_output=stream_output,
            )
            yield Work(net, yagna, ctx, events)
