"""LocalNet: the emulated daemon plus its emulated providers, in one trio nursery.

What ties the two wings together: :func:`open_localnet` builds the daemon emulator
(:mod:`golem_trio.localnet.emulator`), runs one provider agent of
:mod:`golem_trio.localnet.providers` per provider against it through an in-process provider
port (``_InProcessPort``), and gives a :class:`LocalNet`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import httpx2
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware

from ._server import serve_asgi
from .emulator import (
    ActivityState,
    Daemon,
    DaemonError,
    DaemonFaultMiddleware,
    FaultPlan,
    Faults,
    Ids,
    MarketState,
    NetClock,
    NodeIdentity,
    PaymentState,
    RequestCounter,
    StreamAborted,
    VpnState,
    activity_routes,
    build_app,
    fault_routes,
    format_time,
    ledger_routes,
    market_routes,
    payment_routes,
    vpn_routes,
)
from .providers import (
    OfferGone,
    ProviderAgent,
    ProviderSpec,
    RuntimeFactory,
    scripted_runtime_factory,
)

__all__ = ["LocalNet", "ProviderPopulation", "open_localnet"]

logger = logging.getLogger("golem_trio.localnet")
Json = dict[str, Any]


@attrs.frozen
class ProviderPopulation:
    """A population of ``count`` providers with prices drawn, under ``seed``, from the given
    ranges (per unit: cpu-second, second of duration, and the fixed start price)."""

    count: int = 3
    seed: int = 0
    subnet: str = "public"
    cpu_sec: tuple[Decimal, Decimal] = (Decimal("0.00005"), Decimal("0.0002"))
    duration_sec: tuple[Decimal, Decimal] = (Decimal("0.00001"), Decimal("0.00005"))
    start: tuple[Decimal, Decimal] = (Decimal("0"), Decimal("0"))

    def specs(self) -> list[ProviderSpec]:
        import random

        rng = random.Random(self.seed)

        def draw(bounds: tuple[Decimal, Decimal]) -> Decimal:
            low, high = bounds
            return (low + (high - low) * Decimal(rng.random())).quantize(Decimal("1e-9"))

        return [
            ProviderSpec(
                name=f"localnet-provider-{i}",
                subnet=self.subnet,
                cpu_threads=rng.choice((1, 2, 4, 8)),
                mem_gib=float(rng.choice((2, 4, 8, 16))),
                storage_gib=float(rng.choice((20, 50, 100))),
                price_cpu_sec=draw(self.cpu_sec),
                price_duration_sec=draw(self.duration_sec),
                price_start=draw(self.start),
            )
            for i in range(self.count)
        ]


def _is_stream_abort(exc: BaseException | None) -> bool:
    if isinstance(exc, StreamAborted):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_stream_abort(inner) for inner in exc.exceptions)
    return False


class _QuietStreamAborts(logging.Filter):
    """Drop the server's report of an event stream aborted on purpose (see
    :class:`StreamAborted`): cutting the body off is the behaviour, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_stream_abort(record.exc_info[1]))


_http_log = logging.getLogger("golem_trio.localnet.http")
_http_log.addFilter(_QuietStreamAborts())


class _InProcessPort:
    """The provider side of the emulated daemon, called directly (no HTTP)."""

    tells_ends = True

    def __init__(
        self, market: MarketState, activity: ActivityState, payment: PaymentState, node_id: str
    ) -> None:
        self._market = market
        self._activity = activity
        self._payment = payment
        self._node_id = node_id

    async def subscribe_offer(self, properties: Json, constraints: str) -> str:
        await trio.lowlevel.checkpoint()
        return self._market.subscribe_offer(
            self._node_id, {"properties": properties, "constraints": constraints}
        )

    async def unsubscribe_offer(self, offer_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._market.unsubscribe_offer(self._node_id, offer_id)

    async def collect_demands(self, offer_id: str, wait: float) -> list[Json]:
        try:
            return await self._market.collect_demands(self._node_id, offer_id, wait, 100)
        except DaemonError as exc:
            if exc.status == 404:
                raise OfferGone(offer_id) from exc
            raise

    async def counter_proposal(
        self, offer_id: str, proposal_id: str, properties: Json, constraints: str
    ) -> str:
        await trio.lowlevel.checkpoint()
        return self._market.counter_proposal_offer(
            self._node_id,
            offer_id,
            proposal_id,
            {"properties": properties, "constraints": constraints},
        )

    async def reject_proposal(self, offer_id: str, proposal_id: str, reason: Json) -> None:
        await trio.lowlevel.checkpoint()
        self._market.reject_proposal_demand(self._node_id, offer_id, proposal_id, reason)

    async def approve_agreement(self, agreement_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._market.approve_agreement(self._node_id, agreement_id, None)

    async def reject_agreement(self, agreement_id: str, reason: Json) -> None:
        await trio.lowlevel.checkpoint()
        self._market.reject_agreement(self._node_id, agreement_id, reason)

    async def agreement_state(self, agreement_id: str) -> str:
        await trio.lowlevel.checkpoint()
        return self._market.agreement(self._node_id, agreement_id).state.value

    async def terminate_agreement(self, agreement_id: str, reason: Json) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self._market.terminate_agreement(self._node_id, agreement_id, reason)
        except DaemonError as exc:
            # The requestor ended it in the meantime (410): nothing is left to end.
            if exc.status != 410:
                raise

    async def wait_ended(self, agreement_id: str) -> None:
        await self._market.agreement(self._node_id, agreement_id).ended.wait()

    async def activities(self, agreement_id: str) -> list[tuple[str, str]]:
        await trio.lowlevel.checkpoint()
        return [
            (activity_id, self._activity.get_state(self._node_id, activity_id)["state"][0])
            for activity_id in self._activity.activities_of(agreement_id)
        ]

    async def usage(self, activity_id: str) -> list[float]:
        usage = await self._activity.get_usage(self._node_id, activity_id)
        return [float(x) for x in usage["currentUsage"]]

    async def send_debit_note(
        self,
        activity_id: str,
        amount: Decimal,
        usage: list[float],
        payment_due: dt.datetime | None,
        *,
        honest: bool = True,
        unknown_agreement: bool = False,
    ) -> str:
        await trio.lowlevel.checkpoint()
        body: Json = {
            "activityId": activity_id,
            "totalAmountDue": str(amount),
            "usageCounterVector": usage,
        }
        if payment_due is not None:
            body["paymentDueDate"] = format_time(payment_due)
        if unknown_agreement:
            return self._payment.forge_debit_note(self._node_id, activity_id, body)
        note = self._payment.issue_debit_note(self._node_id, body)
        self._payment.debit_notes[note["debitNoteId"]].honest = honest
        self._payment.send_debit_note(self._node_id, note["debitNoteId"])
        return str(note["debitNoteId"])

    async def debit_note_status(self, debit_note_id: str) -> str:
        await trio.lowlevel.checkpoint()
        return self._payment.debit_note(self._node_id, debit_note_id).status.value

    async def send_invoice(
        self,
        agreement_id: str,
        activity_ids: list[str],
        amount: Decimal,
        due: dt.datetime,
        *,
        honest: bool = True,
    ) -> str:
        await trio.lowlevel.checkpoint()
        invoice = self._payment.issue_invoice(
            self._node_id,
            {
                "agreementId": agreement_id,
                "activityIds": activity_ids,
                "amount": str(amount),
                "paymentDueDate": format_time(due),
            },
        )
        self._payment.invoices[invoice["invoiceId"]].honest = honest
        self._payment.send_invoice(self._node_id, invoice["invoiceId"])
        return str(invoice["invoiceId"])


class LocalNet:
    """A running LocalNet. Get one from :func:`open_localnet`.

    ``app`` is the daemon's ASGI app; ``url`` is where it is served (``None`` when only mounted
    in-process); ``app_key`` is the requestor's app key; :meth:`transport` calls the app
    in-process; :meth:`now` is the network's clock; ``faults`` injects faults by hand and says
    which fired. ``daemon``, ``market``, ``activity``, ``payment`` and ``vpn`` are the
    emulator's state, for tests that look inside.
    """

    def __init__(
        self,
        daemon: Daemon,
        market: MarketState,
        activity: ActivityState,
        payment: PaymentState,
        requestor: NodeIdentity,
        providers: list[tuple[NodeIdentity, ProviderAgent]],
        faults: Faults | None = None,
    ) -> None:
        self.daemon = daemon
        self.market = market
        self.activity = activity
        self.payment = payment
        self.requestor = requestor
        self.providers = providers
        self.faults = faults if faults is not None else Faults(FaultPlan())
        self.vpn = VpnState(daemon, activity)
        #: The HTTP requests the daemon's app has served, by endpoint (handler name).
        self.requests_served: Counter[str] = Counter()
        self.app: Starlette = build_app(
            daemon,
            [
                *market_routes(daemon, market),
                *activity_routes(daemon, activity),
                *payment_routes(daemon, payment),
                *vpn_routes(daemon, self.vpn),
                *fault_routes(self.faults, daemon),
                *ledger_routes(self),
            ],
            middleware=[
                Middleware(RequestCounter, counts=self.requests_served),
                Middleware(DaemonFaultMiddleware, faults=self.faults),
            ],
        )
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"<LocalNet {self.url or 'in-process'} providers={len(self.providers)}>"

    @property
    def app_key(self) -> str:
        return self.requestor.app_key

    def now(self) -> dt.datetime:
        """The network's current wall-clock time, timezone-aware UTC: the clock every
        timestamp of this LocalNet comes from (trio's clock, so virtual under a
        ``MockClock``)."""
        return self.daemon.clock.now()

    def transport(self) -> httpx2.AsyncBaseTransport:
        """An httpx2 transport that calls the app in-process (no sockets): for virtual-time
        tests. It buffers whole replies, so the never-ending exec event stream needs the
        served app."""
        return httpx2.ASGITransport(app=self.app)


@asynccontextmanager
async def open_localnet(
    providers: ProviderPopulation | Sequence[ProviderSpec] = ProviderPopulation(),
    *,
    seed: int = 0,
    epoch: dt.datetime | None = None,
    runtime: RuntimeFactory | None = None,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultPlan | None = None,
) -> AsyncIterator[LocalNet]:
    """Start a LocalNet in its own nursery; everything stops when the block exits.

    ``runtime`` makes the exe-unit of each activity (default: a scripted runtime with no
    scripts, where every ``run`` fails as "command not found"). With ``serve=True`` the daemon
    is served over HTTP/1.1 (:mod:`._server`) on ``host:port`` (``0``: any free port) and
    ``LocalNet.url`` says where. ``faults`` is the fault plan (default: none); faults can
    also be triggered by hand through ``LocalNet.faults``.

    Cancellation: exiting the block (normally or by cancellation) cancels the providers and
    the server.
    """
    specs = providers.specs() if isinstance(providers, ProviderPopulation) else list(providers)
    async with trio.open_nursery() as nursery:
        daemon = Daemon(NetClock(epoch), Ids(seed), nursery)
        fault_handle = Faults(faults or FaultPlan())
        requestor = daemon.add_identity("requestor")
        market = MarketState(daemon)
        activity = ActivityState(daemon, market, runtime or scripted_runtime_factory())
        activity.faults = fault_handle

        def activity_agreement(activity_id: str) -> str | None:
            try:
                return activity.agreement_of(activity_id)
            except KeyError:
                return None

        payment = PaymentState(daemon, market, activity_agreement=activity_agreement)
        agents = []
        for spec in specs:
            identity = daemon.add_identity(spec.name)
            agent = ProviderAgent(
                spec,
                identity.node_id,
                _InProcessPort(market, activity, payment, identity.node_id),
                daemon.clock.now,
                fault_handle,
            )
            await nursery.start(agent.run)
            agents.append((identity, agent))
        fault_handle.attach(market, activity, agents)
        net = LocalNet(daemon, market, activity, payment, requestor, agents, fault_handle)
        if fault_handle.needs_scheduler():
            await nursery.start(fault_handle.run)
        if serve:
            binds = await nursery.start(serve_asgi, net.app, host, port)
            net.url = binds[0]
            logger.info("LocalNet serves the daemon API at %s", net.url)
        yield net
        nursery.cancel_scope.cancel()
