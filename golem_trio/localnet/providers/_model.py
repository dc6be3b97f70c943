"""The provider model: what an emulated provider offers and how it negotiates and decides.

The decisions are plain functions of a :class:`ProviderSpec` and the demand in front of it, so
the same model drives providers on the emulator and, through the provider REST API, on a real
daemon. :class:`ProviderAgent` is the loop that reads a provider's market events through a
:class:`ProviderPort` and acts on them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

import attrs
import trio

__all__ = [
    "ACCEPT_TIMEOUT",
    "DEBIT_NOTE_INTERVAL",
    "PAYMENT_TIMEOUT",
    "AgreementLife",
    "Counter",
    "Negotiation",
    "OfferGone",
    "ProviderAgent",
    "ProviderFaults",
    "ProviderPort",
    "ProviderSpec",
    "Rejection",
    "linear_cost",
    "negotiate",
    "offer_properties",
]

logger = logging.getLogger("golem_trio.localnet.provider")

ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
DEBIT_NOTE_INTERVAL = "golem.com.scheme.payu.debit-note.interval-sec?"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"
EXPIRATION = "golem.srv.comp.expiration"
USAGE_VECTOR = ["golem.usage.cpu_sec", "golem.usage.duration_sec"]
#: How far past a deadline a provider that waits for it wakes (s): deadlines are strict.
_PAST = 1e-3

Json = dict[str, Any]


@attrs.frozen
class ProviderSpec:
    """One emulated provider: resources, prices, payment terms and negotiation limits.

    Prices are the linear model's coefficients: ``price_cpu_sec`` and ``price_duration_sec``
    per unit of ``golem.usage.cpu_sec`` and ``golem.usage.duration_sec``, plus ``price_start``
    (the fixed part). Times are seconds.
    """

    name: str
    subnet: str = "public"
    cpu_threads: int = 4
    mem_gib: float = 8.0
    storage_gib: float = 50.0
    runtime: str = "vm"
    runtime_version: str = "0.5.2"
    capabilities: tuple[str, ...] = ("vpn", "inet", "manifest-support")
    price_cpu_sec: Decimal = Decimal("0.0001")
    price_duration_sec: Decimal = Decimal("0.00002")
    price_start: Decimal = Decimal("0")
    platform: str = "erc20-holesky-tglm"
    #: Longest time (s) the provider lets its debit notes go unaccepted; the requestor may ask
    #: for less, down to ``min_accept_timeout``.
    accept_timeout: int = 240
    min_accept_timeout: int = 30
    #: Seconds between debit notes; a requestor may ask for more, not for less.
    debit_note_interval: int = 120
    #: Mid-agreement payments: allowed payment timeouts (s); ``None`` = not supported.
    payment_timeout_range: tuple[int, int] | None = (18000, 86400)
    #: Expiration limits (s from now): below ``min_expiration`` is refused; above
    #: ``max_expiration_without_deadline`` needs a debit-note accept timeout; above
    #: ``max_expiration_without_payments`` needs mid-agreement payments.
    min_expiration: float = 300.0
    max_expiration_without_deadline: float = 1800.0
    max_expiration_without_payments: float = 36000.0
    #: How long (s) the provider takes to approve an agreement.
    approval_delay: float = 0.0
    #: An approved agreement with no activity for this long (s) is broken (``NoActivity``).
    no_activity_timeout: float = 90.0
    #: How often (s) the provider looks at its agreements.
    tick: float = 1.0

    def coeffs(self) -> list[float]:
        """``golem.com.pricing.model.linear.coeffs``: per usage counter, then the fixed price."""
        return [float(self.price_cpu_sec), float(self.price_duration_sec), float(self.price_start)]


def offer_properties(spec: ProviderSpec, node_id: str) -> Json:
    """The offer an emulated provider publishes (flat property names)."""
    return {
        "golem.node.id.name": spec.name,
        "golem.node.debug.subnet": spec.subnet,
        "golem.node.net.is-public": False,
        "golem.inf.mem.gib": spec.mem_gib,
        "golem.inf.storage.gib": spec.storage_gib,
        "golem.inf.cpu.threads": spec.cpu_threads,
        "golem.inf.cpu.cores": max(1, spec.cpu_threads // 2),
        "golem.inf.cpu.architecture": "x86_64",
        "golem.runtime.name": spec.runtime,
        "golem.runtime.version": spec.runtime_version,
        "golem.runtime.capabilities": list(spec.capabilities),
        "golem.activity.caps.transfer.protocol": ["http", "https"],
        "golem.srv.caps.multi-activity": True,
        "golem.com.scheme": "payu",
        "golem.com.pricing.model": "linear",
        "golem.com.pricing.model.linear.coeffs": spec.coeffs(),
        "golem.com.usage.vector": list(USAGE_VECTOR),
        f"golem.com.payment.platform.{spec.platform}.address": node_id,
        "golem.com.payment.protocol.version": "3",
        ACCEPT_TIMEOUT: spec.accept_timeout,
        DEBIT_NOTE_INTERVAL: spec.debit_note_interval,
        **(
            {}
            if spec.payment_timeout_range is None
            else {PAYMENT_TIMEOUT: spec.payment_timeout_range[0]}
        ),
    }


def offer_constraints(spec: ProviderSpec, now: dt.datetime) -> str:
    """The offer's constraints on demands: a minimum expiration and the subnet."""
    earliest = int((now.timestamp() + spec.min_expiration) * 1000)
    return f"(&(golem.node.debug.subnet={spec.subnet})(golem.srv.comp.expiration>{earliest}))"


@attrs.frozen
class Negotiation:
    """The payment terms both sides settled on."""

    accept_timeout: int | None
    debit_note_interval: int
    payment_timeout: int | None


@attrs.frozen
class Counter:
    """Answer with a Draft carrying these properties."""

    properties: Json
    terms: Negotiation


@attrs.frozen
class Rejection:
    """Reject the proposal; ``final`` says whether trying again is pointless."""

    message: str
    final: bool

    def reason(self) -> Json:
        return {"message": self.message, "golem.proposal.rejection.is-final": self.final}


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def negotiate(
    spec: ProviderSpec, node_id: str, demand: Mapping[str, Any], now: dt.datetime
) -> Counter | Rejection:
    """The provider's answer to a requestor's proposal.

    Expiration: refused below ``min_expiration``; above ``max_expiration_without_deadline``
    only with a debit-note accept timeout; above ``max_expiration_without_payments`` only with
    mid-agreement payments. Terms: the accept timeout is the requestor's, capped at the
    provider's (and refused below ``min_accept_timeout``); the debit-note interval is the
    requestor's but not shorter than the provider's; the payment timeout is the requestor's
    clamped to the provider's range, or refused if the provider has none.
    """
    expiration_ms = _int(demand.get(EXPIRATION))
    if expiration_ms is None:
        return Rejection("no expiration in the demand", final=True)
    left = expiration_ms / 1000 - now.timestamp()
    if left < spec.min_expiration:
        return Rejection(f"expiration too soon: {left:.0f} s < {spec.min_expiration:.0f} s", True)

    accept = _int(demand.get(ACCEPT_TIMEOUT))
    if accept is not None:
        if accept < spec.min_accept_timeout:
            return Rejection(
                f"debit-note accept timeout {accept} s < {spec.min_accept_timeout} s", True
            )
        accept = min(accept, spec.accept_timeout)
    if left > spec.max_expiration_without_deadline and accept is None:
        return Rejection(f"expiration {left:.0f} s needs a debit-note accept timeout", final=True)

    interval = _int(demand.get(DEBIT_NOTE_INTERVAL))
    interval = (
        spec.debit_note_interval if interval is None else max(interval, spec.debit_note_interval)
    )

    payment = _int(demand.get(PAYMENT_TIMEOUT))
    if payment is not None:
        if spec.payment_timeout_range is None:
            return Rejection("mid-agreement payments are not supported", final=True)
        low, high = spec.payment_timeout_range
        payment = min(max(payment, low), high)
    if left > spec.max_expiration_without_payments and payment is None:
        return Rejection(f"expiration {left:.0f} s needs mid-agreement payments", final=True)

    properties = offer_properties(spec, node_id)
    for key, value in ((ACCEPT_TIMEOUT, accept), (PAYMENT_TIMEOUT, payment)):
        if value is None:
            properties.pop(key, None)
        else:
            properties[key] = value
    properties[DEBIT_NOTE_INTERVAL] = interval
    chosen = demand.get("golem.com.payment.chosen-platform")
    if isinstance(chosen, str):
        properties["golem.com.payment.chosen-platform"] = chosen
    return Counter(properties, Negotiation(accept, interval, payment))


class OfferGone(Exception):
    """The daemon no longer knows the offer (it expired or was withdrawn)."""


def linear_cost(spec: ProviderSpec, usage: list[float]) -> Decimal:
    """What the linear price model charges for ``usage`` (``[cpu_sec, duration_sec]``)."""
    cpu, duration = (Decimal(repr(float(x))) for x in [*usage, 0.0, 0.0][:2])
    return spec.price_start + spec.price_cpu_sec * cpu + spec.price_duration_sec * duration


def agreed_terms(agreement: Mapping[str, Any]) -> tuple[Negotiation, float]:
    """The payment terms and the expiration (epoch seconds) written in an agreement."""
    offer = agreement["offer"]["properties"]
    demand = agreement["demand"]["properties"]
    interval = _int(offer.get(DEBIT_NOTE_INTERVAL)) or 120
    terms = Negotiation(_int(offer.get(ACCEPT_TIMEOUT)), interval, _int(offer.get(PAYMENT_TIMEOUT)))
    expiration_ms = _int(demand.get(EXPIRATION)) or 0
    return terms, expiration_ms / 1000


class ProviderPort(Protocol):
    """The provider side of a daemon's market, as an emulated provider uses it.

    ``collect_demands`` raises :class:`OfferGone` when the offer is gone.
    """

    async def subscribe_offer(self, properties: Json, constraints: str) -> str: ...

    async def unsubscribe_offer(self, offer_id: str) -> None: ...

    async def collect_demands(self, offer_id: str, wait: float) -> list[Json]: ...

    async def counter_proposal(
        self, offer_id: str, proposal_id: str, properties: Json, constraints: str
    ) -> str: ...

    async def reject_proposal(self, offer_id: str, proposal_id: str, reason: Json) -> None: ...

    async def approve_agreement(self, agreement_id: str) -> None: ...

    async def reject_agreement(self, agreement_id: str, reason: Json) -> None: ...

    async def agreement_state(self, agreement_id: str) -> str: ...

    async def terminate_agreement(self, agreement_id: str, reason: Json) -> None: ...

    #: Whether :meth:`wait_ended` tells when an agreement ends; if not, the provider looks at
    #: its agreements every ``tick``.
    tells_ends: bool

    async def wait_ended(self, agreement_id: str) -> None:
        """Return once the agreement has been terminated (by either side); only called when
        :attr:`tells_ends`."""
        ...

    async def activities(self, agreement_id: str) -> list[tuple[str, str]]:
        """``(activity id, state)`` of every activity of the agreement."""
        ...

    async def usage(self, activity_id: str) -> list[float]: ...

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
        """Issue and send a debit note; ``honest=False`` marks one falsified on purpose (a
        fault), ``unknown_agreement`` sends it for an agreement the requestor never made."""
        ...

    async def debit_note_status(self, debit_note_id: str) -> str: ...

    async def send_invoice(
        self,
        agreement_id: str,
        activity_ids: list[str],
        amount: Decimal,
        due: dt.datetime,
        *,
        honest: bool = True,
    ) -> str: ...


class ProviderFaults(Protocol):
    """Where a provider asks whether a fault applies to it (LocalNet's fault plan).

    Dishonest billing kinds: ``inflate``, ``too-fast``, ``payable-without-agreement``,
    ``second-invoice``, ``unknown-agreement``, ``invoice-above-usage``.
    """

    def reject_proposal(self, provider: str) -> bool:
        """Reject this proposal regardless of its terms."""
        ...

    def withhold_approval(self, provider: str, agreement_id: str) -> bool:
        """Never approve this agreement."""
        ...

    def dishonesty(self, provider: str, agreement_id: str) -> frozenset[str]:
        """How the provider cheats on this agreement's billing now."""
        ...

    def inflation(self) -> Decimal:
        """The factor inflated amounts are multiplied by."""
        ...

    def termination(self, agreement_id: str) -> str | None:
        """A ``golem.provider.code`` to terminate the agreement with now, if any."""
        ...


class ProviderAgent:
    """One emulated provider's market loop: publish the offer, answer proposals, approve."""

    def __init__(
        self,
        spec: ProviderSpec,
        node_id: str,
        port: ProviderPort,
        now: Any,
        faults: ProviderFaults | None = None,
    ) -> None:
        self.spec = spec
        self.node_id = node_id
        self.port = port
        self._now = now
        self.faults = faults
        #: Terms agreed per requestor proposal id this provider answered (``P-…``).
        self.terms: dict[str, Negotiation] = {}
        self.offer_id: str | None = None
        #: Approved agreements, by id.
        self.lives: dict[str, AgreementLife] = {}
        #: Every agreement it was asked to approve.
        self.agreements_seen: set[str] = set()

    async def run(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish the offer (its id reported through ``task_status``) and serve it until
        cancelled, publishing it again whenever the daemon drops it (offers expire after an
        hour, as real providers' do)."""
        async with trio.open_nursery() as nursery:
            while True:
                self.offer_id = await self.port.subscribe_offer(
                    offer_properties(self.spec, self.node_id),
                    offer_constraints(self.spec, self._now()),
                )
                task_status.started(self.offer_id)
                task_status = trio.TASK_STATUS_IGNORED
                try:
                    while True:
                        for event in await self.port.collect_demands(self.offer_id, 5.0):
                            await self._handle(event, nursery)
                except OfferGone:
                    continue

    async def _handle(self, event: Json, nursery: trio.Nursery) -> None:
        try:
            await self._answer(event, nursery)
        except OfferGone:
            raise
        except Exception as exc:
            # The requestor may have withdrawn its demand (or the proposal expired) while
            # this provider answered; as a real provider, it lives on for the next one.
            logger.info("provider %s: answering a proposal failed: %s", self.spec.name, exc)
            await trio.lowlevel.checkpoint()

    async def _answer(self, event: Json, nursery: trio.Nursery) -> None:
        assert self.offer_id is not None
        kind = event.get("eventType")
        if kind == "ProposalEvent":
            proposal = event["proposal"]
            if self.faults is not None and self.faults.reject_proposal(self.spec.name):
                await self.port.reject_proposal(
                    self.offer_id,
                    proposal["proposalId"],
                    Rejection("the provider is not taking work now", final=False).reason(),
                )
                return
            answer = negotiate(self.spec, self.node_id, proposal["properties"], self._now())
            if isinstance(answer, Rejection):
                await self.port.reject_proposal(
                    self.offer_id, proposal["proposalId"], answer.reason()
                )
                return
            draft_id = await self.port.counter_proposal(
                self.offer_id,
                proposal["proposalId"],
                answer.properties,
                offer_constraints(self.spec, self._now()),
            )
            self.terms[draft_id] = answer.terms
        elif kind == "AgreementEvent":
            nursery.start_soon(self._approve_and_serve, event["agreement"])
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint()

    async def _approve_and_serve(self, agreement: Json) -> None:
        self.agreements_seen.add(agreement["agreementId"])
        await trio.sleep(self.spec.approval_delay)
        faults = self.faults
        if faults is not None and faults.withhold_approval(
            self.spec.name, agreement["agreementId"]
        ):
            return
        try:
            await self.port.approve_agreement(agreement["agreementId"])
        except Exception as exc:
            # Cancelled or expired before the approval came: nothing to serve.
            logger.info("provider %s: approving failed: %s", self.spec.name, exc)
            return
        terms, expiration = agreed_terms(agreement)
        life = AgreementLife(self, agreement["agreementId"], terms, expiration)
        self.lives[life.agreement_id] = life
        await life.run()


class AgreementLife:
    """An approved agreement as its provider lives it.

    Every debit-note interval it bills each live activity (cumulative, at the agreed linear
    price; payable when mid-agreement payments were agreed); it breaks the agreement when a
    debit note stays unaccepted past the accept timeout (``DebitNotesDeadline``), when no
    activity comes for ``no_activity_timeout`` (``NoActivity``) and at expiration
    (``Expired``); when the agreement ends, by either side, it sends one invoice for the whole
    usage.
    """

    def __init__(
        self, agent: ProviderAgent, agreement_id: str, terms: Negotiation, expiration: float
    ) -> None:
        self.agent = agent
        self.agreement_id = agreement_id
        self.terms = terms
        self.expiration = expiration
        #: Debit notes sent and not yet accepted: id -> deadline (trio time).
        self.unaccepted: dict[str, float] = {}
        self.billed: dict[str, Decimal] = {}
        self.usage: dict[str, list[float]] = {}
        #: When each activity was last billed (trio time).
        self.noted: dict[str, float] = {}
        self.invoice_id: str | None = None
        #: Why the daemon refused the invoice, if it did.
        self.invoice_refused: str | None = None
        self.end_code: str | None = None
        self._woken = trio.Event()

    def wake(self) -> None:
        """Look at the agreement now (a fault asks to end it)."""
        self._woken.set()

    async def run(self) -> None:
        """Live the agreement until either side ends it, then invoice it.

        Where the port tells when the agreement ends (LocalNet's emulator), the provider wakes
        only when something is due (a debit note, a note's acceptance deadline, the
        no-activity deadline, expiration), when the agreement ends, or when :meth:`wake` is
        called; elsewhere it looks every ``tick``.
        """
        if not self.agent.port.tells_ends:
            await self._live(event_driven=False)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_end)
                await self._live(event_driven=True)
                nursery.cancel_scope.cancel()
        await self._invoice()

    async def _watch_end(self) -> None:
        await self.agent.port.wait_ended(self.agreement_id)
        self.wake()

    async def _live(self, *, event_driven: bool) -> None:
        port = self.agent.port
        spec = self.agent.spec
        started = trio.current_time()
        next_note = started + self.terms.debit_note_interval
        seen_activity = False
        while True:
            pause = spec.tick
            if event_driven:
                pause = max(spec.tick, self._due(trio.current_time(), next_note))
                pause = pause if seen_activity else min(pause, self._no_activity_left(started))
            with trio.move_on_after(pause):
                await self._woken.wait()
            self._woken = trio.Event()
            now = trio.current_time()
            if await port.agreement_state(self.agreement_id) != "Approved":
                return  # the requestor ended it
            activities = await port.activities(self.agreement_id)
            seen_activity = seen_activity or bool(activities)
            for note_id, _deadline in list(self.unaccepted.items()):
                if await port.debit_note_status(note_id) in ("ACCEPTED", "SETTLED"):
                    del self.unaccepted[note_id]
            code = self._breach(now, started, seen_activity)
            faults = self.agent.faults
            if code is None and faults is not None:
                code = faults.termination(self.agreement_id)
            if code is not None:
                await self._terminate(code)
                return
            if now >= next_note:
                interval: float = self.terms.debit_note_interval
                if "too-fast" in self._dishonesty():
                    interval = max(spec.tick, interval / 4)
                next_note = now + interval
                for activity_id, state in activities:
                    if state != "Terminated":
                        await self._bill(activity_id, now)

    def _due(self, now: float, next_note: float) -> float:
        """Seconds until something is due: the next debit note, a note's acceptance
        deadline, the agreement's expiration."""
        due = next_note - now
        for deadline in self.unaccepted.values():
            due = min(due, deadline - now + _PAST)
        expires_in: float = self.expiration - self.agent._now().timestamp()
        return min(due, expires_in)

    def _no_activity_left(self, started: float) -> float:
        return started + self.agent.spec.no_activity_timeout - trio.current_time() + _PAST

    def _breach(self, now: float, started: float, seen_activity: bool) -> str | None:
        if any(now > deadline for deadline in self.unaccepted.values()):
            return "DebitNotesDeadline"
        if not seen_activity and now - started > self.agent.spec.no_activity_timeout:
            return "NoActivity"
        if self.agent._now().timestamp() >= self.expiration:
            return "Expired"
        return None

    def _dishonesty(self) -> frozenset[str]:
        faults = self.agent.faults
        if faults is None:
            return frozenset()
        return faults.dishonesty(self.agent.spec.name, self.agreement_id)

    async def _bill(self, activity_id: str, now: float) -> None:
        port = self.agent.port
        usage = await port.usage(activity_id)
        self.usage[activity_id] = usage
        amount = linear_cost(self.agent.spec, usage)
        cheats = self._dishonesty()
        # A note is too fast only if it follows the activity's previous one sooner than agreed.
        previous = self.noted.get(activity_id)
        # (with a microsecond's slack: at large clock values, ticks add up to a hair less)
        too_fast = previous is not None and now - previous < self.terms.debit_note_interval - 1e-6
        self.noted[activity_id] = now
        honest = not (cheats & {"inflate", "payable-without-agreement"} or too_fast)
        if "inflate" in cheats and self.agent.faults is not None:
            amount *= self.agent.faults.inflation()
        due = None
        if self.terms.payment_timeout is not None:
            due = self.agent._now() + dt.timedelta(seconds=self.terms.payment_timeout)
        elif "payable-without-agreement" in cheats:
            due = self.agent._now() + dt.timedelta(hours=1)
        note_id = await port.send_debit_note(activity_id, amount, usage, due, honest=honest)
        if "unknown-agreement" in cheats:
            await port.send_debit_note(
                activity_id, amount, usage, due, honest=False, unknown_agreement=True
            )
        self.billed[activity_id] = amount
        if self.terms.accept_timeout is not None:
            self.unaccepted[note_id] = now + self.terms.accept_timeout

    async def _terminate(self, code: str) -> None:
        self.end_code = code
        messages = {
            "DebitNotesDeadline": "debit notes were not accepted in time",
            "NoActivity": "no activity was created",
            "Expired": "the agreement expired",
        }
        message = messages.get(code, "the provider ended the agreement")
        await self.agent.port.terminate_agreement(
            self.agreement_id, {"message": message, "golem.provider.code": code}
        )

    async def _invoice(self) -> None:
        port = self.agent.port
        activities = await port.activities(self.agreement_id)
        total = Decimal(0)
        for activity_id, _state in activities:
            usage = await port.usage(activity_id)
            self.usage[activity_id] = usage
            total += linear_cost(self.agent.spec, usage)
        due = self.agent._now() + dt.timedelta(seconds=self.terms.payment_timeout or 3600)
        cheats = self._dishonesty()
        honest = "invoice-above-usage" not in cheats
        if not honest and self.agent.faults is not None:
            total *= self.agent.faults.inflation()
        activity_ids = [a for a, _ in activities]
        try:
            self.invoice_id = await port.send_invoice(
                self.agreement_id, activity_ids, total, due, honest=honest
            )
        except Exception as exc:
            # A daemon may refuse it (the real one never lowers an amount already asked for
            # in a debit note); the provider lives on, the agreement stays uninvoiced.
            self.invoice_refused = f"{type(exc).__name__}: {exc}"
            logger.warning("provider %s: invoice refused: %s", self.agent.spec.name, exc)
            return
        if "second-invoice" in cheats:
            await port.send_invoice(self.agreement_id, activity_ids, total, due, honest=False)
