"""LocalNet on the real yagna daemon: the same simulated providers, a real daemon in between.

:func:`open_yagna_localnet` starts a local chain (anvil) and a real ``yagna`` (PyPI
``golem-node``) offline on loopback with one provider identity per simulated provider, then
runs, for each provider:

* a :class:`~golem_trio.localnet.providers.ProviderAgent` (the provider model the emulator
  runs too: offers, negotiation, approval, billing, invoices) over
  :class:`~._rest_port.RestProviderPort`, the daemon's provider REST API;
* an :class:`ActivityHost`, which follows the provider's activity events and starts an
  :class:`~._exeunit.ExeUnit` on the daemon's service bus for each new activity, with the
  same runtimes as the emulator (scripted or local), and ends it when the activity is
  destroyed.

The requestor talks to the daemon's REST API at :attr:`YagnaLocalNet.url` with
:attr:`YagnaLocalNet.app_key`, as to any daemon. Payments are real: allocations, debit notes
and invoices go through the daemon's erc20 driver to the local chain.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx2
import trio

from ..providers import (
    ProviderAgent,
    ProviderSpec,
    RuntimeContext,
    RuntimeFactory,
    scripted_runtime_factory,
)
from ._chain import LocalChain
from ._exeunit import ExeUnit
from ._gsb import GsbBus, open_gsb
from ._node import NodeIdentity, YagnaNode
from ._rest_port import RestProviderPort, provider_client

__all__ = ["ActivityHost", "YagnaLocalNet", "open_yagna_localnet"]

logger = logging.getLogger("golem_trio.localnet.yagna")

#: How long one poll of the provider's activity events waits.
EVENTS_WAIT = 2.0


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.define(eq=False)
class ActivityHost:
    """The exe-unit side of one provider identity: an :class:`ExeUnit` per activity.

    It polls ``GET /activity-api/v1/events`` with the provider's key and the session its
    agreements were approved in; ``CreateActivity`` starts an exe-unit (registered on the
    bus before the daemon is told the activity is ``Initialized``), ``DestroyActivity`` ends
    it.
    """

    client: httpx2.AsyncClient
    bus: GsbBus
    provider: NodeIdentity
    requestor_id: str
    app_session_id: str
    runtime: RuntimeFactory
    units: dict[str, ExeUnit] = attrs.field(factory=dict)

    async def _context(self, activity_id: str, agreement_id: str) -> RuntimeContext:
        demand: dict[str, Any] = {}
        offer: dict[str, Any] = {}
        reply = await self.client.get(f"/market-api/v1/agreements/{agreement_id}")
        if reply.status_code == 200:
            agreement = reply.json()
            demand = dict(agreement.get("demand", {}).get("properties", {}))
            offer = dict(agreement.get("offer", {}).get("properties", {}))
        return RuntimeContext(
            activity_id=activity_id,
            agreement_id=agreement_id,
            requestor_id=self.requestor_id,
            provider_id=self.provider.node_id,
            demand_properties=demand,
            offer_properties=offer,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve activities until cancelled; exe-units still running are terminated
        (shielded, bounded) on the way out."""
        after = _wall_now() - dt.timedelta(seconds=2)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        reply = await self.client.get(
                            "/activity-api/v1/events",
                            params={
                                "afterTimestamp": after.isoformat(),
                                "appSessionId": self.app_session_id,
                                "timeout": EVENTS_WAIT,
                                "maxEvents": 50,
                            },
                            timeout=EVENTS_WAIT + 10,
                        )
                    except httpx2.TransportError as exc:
                        logger.warning("activity events of %s: %s", self.provider.alias, exc)
                        await trio.sleep(1.0)
                        continue
                    # No event within the wait: the daemon answers 408.
                    events = reply.json() if reply.status_code == 200 else []
                    for event in events:
                        after = max(after, dt.datetime.fromisoformat(event["eventDate"]))
                        await self._handle(event, nursery)
        finally:
            with trio.move_on_after(10, shield=True):
                await trio.lowlevel.checkpoint()
                for unit in list(self.units.values()):
                    await unit.terminate("the provider stopped")

    async def _handle(self, event: dict[str, Any], nursery: trio.Nursery) -> None:
        kinds = event.get("eventType") or {}
        kind = next(iter(kinds), None) if isinstance(kinds, dict) else kinds
        activity_id = event.get("activityId")
        if not isinstance(activity_id, str):
            await trio.lowlevel.checkpoint()
            return
        if kind == "CreateActivity" and activity_id not in self.units:
            context = await self._context(activity_id, str(event.get("agreementId")))
            unit = ExeUnit(self.bus, context, self.runtime)
            self.units[activity_id] = unit
            await nursery.start(unit.run)
        elif kind == "DestroyActivity" and activity_id in self.units:
            await self.units.pop(activity_id).terminate()
        else:
            await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class YagnaLocalNet:
    """A running real-daemon LocalNet; get one from :func:`open_yagna_localnet`."""

    node: YagnaNode
    chain: LocalChain | None
    agents: list[ProviderAgent]
    ports: list[RestProviderPort]
    hosts: list[ActivityHost]

    @property
    def url(self) -> str:
        """The daemon's REST root."""
        return self.node.api_url

    @property
    def app_key(self) -> str:
        """The requestor's app key."""
        return self.node.requestor_app_key

    @property
    def requestor_id(self) -> str:
        return self.node.requestor_id

    @property
    def payment_platform(self) -> str | None:
        return self.node.payment_platform if self.chain is not None else None


@asynccontextmanager
async def open_yagna_localnet(
    providers: Sequence[ProviderSpec],
    *,
    runtime: RuntimeFactory | None = None,
    payments: bool = True,
) -> AsyncIterator[YagnaLocalNet]:
    """Start a local chain (with ``payments``) and a real daemon, and serve ``providers`` on
    it until the block exits; then everything is stopped (by PID, even when cancelled).

    ``runtime`` makes each activity's exe-unit work (default: a scripted runtime with no
    scripts). Starting takes a few seconds (the daemon starts twice).
    """
    if not providers:
        raise ValueError("at least one provider is needed")
    runtime = runtime or scripted_runtime_factory()
    chain: LocalChain | None = None
    node: YagnaNode | None = None
    try:
        if payments:
            chain = await trio.to_thread.run_sync(LocalChain.start)
        started_chain = chain
        node = await trio.to_thread.run_sync(
            lambda: YagnaNode.start(chain=started_chain, providers=len(providers))
        )
        net = YagnaLocalNet(node, chain, [], [], [])
        async with open_gsb(node.gsb_url, name="golem-trio-localnet") as bus:
            clients = [provider_client(node.api_url, p.app_key) for p in node.providers]
            try:
                async with trio.open_nursery() as nursery:
                    for spec, identity, client in zip(
                        providers, node.providers, clients, strict=True
                    ):
                        port = RestProviderPort(client, identity.node_id)
                        agent = ProviderAgent(spec, identity.node_id, port, _wall_now, None)
                        host = ActivityHost(
                            client, bus, identity, node.requestor_id, port.app_session_id, runtime
                        )
                        await nursery.start(host.run)
                        await nursery.start(agent.run)
                        net.agents.append(agent)
                        net.ports.append(port)
                        net.hosts.append(host)
                    yield net
                    nursery.cancel_scope.cancel()
            finally:
                with trio.move_on_after(5, shield=True):
                    for client in clients:
                        await client.aclose()
    finally:
        with trio.move_on_after(30, shield=True):
            if node is not None:
                await trio.to_thread.run_sync(node.stop)
            if chain is not None:
                await trio.to_thread.run_sync(chain.stop)
