"""LocalNet on the real yagna daemon: the same simulated providers, real daemons in between.

:func:`open_yagna_localnet` starts a local chain (anvil) and real ``yagna`` daemons (PyPI
``golem-node``), offline, with one provider identity per simulated provider. On two nodes
(the default) the requestor's identity and the providers' live on two daemons that meet on a
central net through a third, the hub, all inside a private network namespace
(:class:`~._netns.PrivateNetwork`); on one node a single daemon on loopback holds them all.
Then it runs, for each provider:

* a :class:`~golem_trio.localnet.providers.ProviderAgent` (the provider model the emulator
  runs too: offers, negotiation, approval, billing, invoices) over
  :class:`~._rest_port.RestProviderPort`, the providers' daemon's provider REST API;
* an :class:`ActivityHost`, which follows the provider's activity events and starts an
  :class:`~._exeunit.ExeUnit` on that daemon's service bus for each new activity, with the
  same runtimes as the emulator (scripted or local), and ends it when the activity is
  destroyed.

The requestor talks to its daemon's REST API at :attr:`YagnaLocalNet.url` with
:attr:`YagnaLocalNet.app_key`, as to any daemon. Payments are real: allocations, debit notes
and invoices go through the daemons' erc20 drivers to the local chain.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx2
import trio

from ...gsb import GsbBus, open_gsb
from ..providers import (
    ProviderAgent,
    ProviderSpec,
    RuntimeContext,
    RuntimeFactory,
    scripted_runtime_factory,
)
from ._chain import LocalChain
from ._exeunit import ExeUnit
from ._faults import YagnaFaults
from ._netns import PrivateNetwork, namespaces_problem
from ._node import HUB_ADDRESS, NodeIdentity, YagnaNode
from ._rest_port import RestProviderPort, provider_client

__all__ = ["NODE_COUNTS", "ActivityHost", "YagnaLocalNet", "open_yagna_localnet"]

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
    #: Every activity it served: activity id -> agreement id.
    seen: dict[str, str] = attrs.field(factory=dict)

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
            self.seen[activity_id] = context.agreement_id
            await nursery.start(unit.run)
        elif kind == "DestroyActivity" and activity_id in self.units:
            await self.units.pop(activity_id).terminate()
        else:
            await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class YagnaLocalNet:
    """A running real-daemon LocalNet; get one from :func:`open_yagna_localnet`.

    ``node`` is the requestor's daemon and ``provider_node`` the providers' (the same daemon
    on one node); with two nodes, ``hub`` is the central net's hub and ``network`` the
    private network namespace they all run in."""

    node: YagnaNode
    provider_node: YagnaNode
    chain: LocalChain | None
    agents: list[ProviderAgent] = attrs.field(factory=list)
    ports: list[RestProviderPort] = attrs.field(factory=list)
    hosts: list[ActivityHost] = attrs.field(factory=list)
    hub: YagnaNode | None = None
    network: PrivateNetwork | None = None
    #: The faults its providers ask about and that can be fired on it.
    faults: YagnaFaults = attrs.field(factory=YagnaFaults)

    @property
    def nodes(self) -> int:
        """How many daemons hold identities: 1 or 2."""
        return 1 if self.provider_node is self.node else 2

    @property
    def url(self) -> str:
        """The requestor daemon's REST root."""
        return self.node.api_url

    @property
    def app_key(self) -> str:
        """The requestor's app key."""
        return self.node.requestor_app_key

    @property
    def requestor_id(self) -> str:
        return self.node.requestor_id

    @property
    def gsb_url(self) -> str:
        """The requestor daemon's service bus (where a requestor's gftp files are bound)."""
        return self.node.gsb_url

    @property
    def payment_platform(self) -> str | None:
        return self.node.payment_platform if self.chain is not None else None


#: The ``nodes`` values :func:`open_yagna_localnet` takes.
NODE_COUNTS: Final = (1, 2)

#: Seconds allowed for stopping everything on the way out.
STOP_BOUND: Final = 30.0


@asynccontextmanager
async def open_yagna_localnet(
    providers: Sequence[ProviderSpec],
    *,
    runtime: RuntimeFactory | None = None,
    payments: bool = True,
    nodes: int | None = None,
    faults: YagnaFaults | None = None,
) -> AsyncIterator[YagnaLocalNet]:
    """Start a local chain (with ``payments``) and real daemons, and serve ``providers`` on
    them until the block exits; then everything is stopped (by PID, even when cancelled).

    ``runtime`` makes each activity's exe-unit work (default: a scripted runtime with no
    scripts). ``nodes`` defaults to two where a network namespace can be made (root, Linux,
    ``unshare``/``nsenter``/``ip``; :func:`~._netns.namespaces_problem`), else one (logged).
    ``nodes=1``: one daemon on loopback holds the requestor's
    and the providers' identities (it starts twice); no root needed, but that daemon never
    carries the exec event stream to the requestor and reports a requestor's termination on
    the provider's copy of the agreement as the provider's (``docs/daemon-notes.md`` §10.7).
    ``nodes=2``: the requestor's daemon and the providers'
    daemon are two nodes of a central net, with a third daemon as its hub, all in a private
    network namespace (``_netns.py``; needs root: else
    :class:`~._netns.NamespacesUnavailable`); the REST APIs and the chain listen on the
    namespace's address, which the host reaches. Starting takes about five seconds on one
    node, about six on two.

    Raises:
        ValueError: no providers, or ``nodes`` not in :data:`NODE_COUNTS`.
        NamespacesUnavailable: ``nodes=2`` where a network namespace cannot be made.
        YagnaNodeError, LocalChainError: a daemon or the chain did not start.

    Cancellation: starting and stopping run in worker threads; whatever started is stopped
    (shielded, bounded) however the block ends.
    """
    if not providers:
        raise ValueError("at least one provider is needed")
    if nodes is None:
        problem = namespaces_problem()
        nodes = 2 if problem is None else 1
        if problem is not None:
            logger.info("LocalNet on one yagna node: %s", problem)
    if nodes not in NODE_COUNTS:
        raise ValueError(f"nodes must be 1 or 2, got {nodes!r}")
    runtime = runtime or scripted_runtime_factory()
    network: PrivateNetwork | None = None
    chain: LocalChain | None = None
    started: list[YagnaNode] = []  # stopped in reverse: the nodes, then the hub
    try:
        # Each piece is made here and started in a worker thread, so that one whose start is
        # cancelled or fails half-way is still stopped below.
        if nodes == 2:
            network = PrivateNetwork()
            await trio.to_thread.run_sync(network.__enter__)
        if payments:
            chain = LocalChain(network=network)
            await trio.to_thread.run_sync(chain.__enter__)
            # Deployed once, before two nodes start side by side and would both deploy it.
            await trio.to_thread.run_sync(chain.ensure_token)
        if network is None:
            node = await _start_node(started, chain=chain, providers=len(providers))
            provider_node = node
            net = YagnaLocalNet(node, provider_node, chain)
        else:
            net = await _start_two_nodes(started, network, chain, len(providers))
            node, provider_node = net.node, net.provider_node
        if faults is not None:
            net.faults = faults
        net.faults.net = net
        async with open_gsb(provider_node.gsb_url, name="golem-trio-localnet") as bus:
            clients = [
                provider_client(provider_node.api_url, p.app_key) for p in provider_node.providers
            ]
            try:
                async with trio.open_nursery() as nursery:
                    net.faults.nursery = nursery
                    for spec, identity, client in zip(
                        providers, provider_node.providers, clients, strict=True
                    ):
                        port = RestProviderPort(client, identity.node_id)
                        agent = ProviderAgent(spec, identity.node_id, port, _wall_now, net.faults)
                        host = ActivityHost(
                            client, bus, identity, node.requestor_id, port.app_session_id, runtime
                        )
                        await nursery.start(host.run)
                        # The agent learns of an agreement's end from its events, not by
                        # looking at every agreement every tick.
                        await nursery.start(port.watch_ends)
                        await nursery.start(agent.run)
                        net.agents.append(agent)
                        net.ports.append(port)
                        net.hosts.append(host)
                    yield net
                    nursery.cancel_scope.cancel()
            finally:
                net.faults.nursery = None
                with trio.move_on_after(5, shield=True):
                    for client in clients:
                        await client.aclose()
    finally:
        with trio.move_on_after(STOP_BOUND, shield=True):
            # The nodes first (side by side), then the hub they lean on, the chain and the
            # namespace, which goes with its last process.
            async with trio.open_nursery() as stopping:
                for daemon in started:
                    if daemon.role != "hub":
                        stopping.start_soon(trio.to_thread.run_sync, daemon.stop)
            for daemon in started:
                await trio.to_thread.run_sync(daemon.stop)
            if chain is not None:
                await trio.to_thread.run_sync(chain.stop)
            if network is not None:
                await trio.to_thread.run_sync(network.stop)


async def _start_node(started: list[YagnaNode], **options: Any) -> YagnaNode:
    """Start one daemon in a worker thread; it joins ``started`` as soon as it exists, so that
    a start cancelled or failing half-way is still stopped."""
    node = YagnaNode(**options)
    started.append(node)
    await trio.to_thread.run_sync(node.__enter__)
    return node


async def _start_two_nodes(
    started: list[YagnaNode], network: PrivateNetwork, chain: LocalChain | None, providers: int
) -> YagnaLocalNet:
    """The hub, then the requestor's and the providers' nodes side by side."""
    await _start_node(started, role="hub", network=network)
    hub = started[-1]
    common: dict[str, Any] = {"network": network, "hub": HUB_ADDRESS, "chain": chain}
    found: dict[str, YagnaNode] = {}

    async def start(role: str, count: int) -> None:
        found[role] = await _start_node(started, role=role, providers=count, **common)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start, "requestor", 0)
        nursery.start_soon(start, "providers", providers)
    return YagnaLocalNet(found["requestor"], found["providers"], chain, hub=hub, network=network)
