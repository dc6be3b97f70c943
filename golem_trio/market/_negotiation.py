"""Negotiating and signing agreements: :func:`open_negotiation` and :class:`Negotiation`.

``async with open_negotiation(yagna, demand, platform=...) as market:`` publishes the demand and
collects offers in a nursery of its own; ``await market.sign()`` then returns one approved
agreement per call. Many tasks may call :meth:`Negotiation.sign` at once; at most
``max_parallel`` of them negotiate at a time (a :class:`trio.CapacityLimiter`).

Flow of one :meth:`~Negotiation.sign`: take the best offer of a provider that is not banned from
the :class:`OfferPool`, counter it (:func:`counter_properties`), wait for the provider's Draft
(a ``ProposalEvent`` whose ``prev_proposal_id`` is our counter), re-counter a Draft whose
negotiable ``…?`` terms differ from ours (at most ``max_rounds`` counters), create the agreement
from the Draft, confirm it and wait for approval until ``approval_wait`` seconds have passed.
A rejection of our proposal (final or not), terms that do not converge, a Draft whose terms
billing could not pay, or an agreement that is rejected or not approved in time ban the provider
(:class:`ProviderBans`: temporary) and move on to the next offer; a proposal that gets no answer
in ``answer_timeout`` is just skipped. Offers whose terms cannot be read
(:meth:`golem_trio.terms.Terms.from_properties`, the parser billing uses) never enter the pool.

Cancellation:

* Leaving the ``async with`` block cancels the collection loop, then withdraws the demand
  (shielded, at most ``cleanup_timeout`` seconds).
* A cancelled :meth:`~Negotiation.sign` cancels the agreement it created and has not returned
  (shielded, at most ``cleanup_timeout`` seconds), so nothing it made is left ``Pending``; one
  the provider approved just as the cancellation came is terminated instead. A
  ``create_agreement`` call cancelled in flight may still have created one on the daemon: the
  daemon expires it at its ``valid_to``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import attrs
import trio

from golem_trio._errors import GolemError
from golem_trio.terms import NEGOTIABLE_TERMS, Terms, TermsError, terms_shortfall
from golem_trio.yagna import (
    EVENT_WAIT,
    TRANSIENT_ERRORS,
    ApiError,
    DemandOfferBase,
    NotFound,
    ProposalEvent,
    ProposalRejectedEvent,
    Reason,
    YagnaClient,
    YagnaError,
)

from ._demand import counter_properties
from ._offers import OfferFilter, OfferPool, OfferView, ProviderBans, Scorer

__all__ = [
    "Admit",
    "AgreementInfo",
    "AgreementRejected",
    "AgreementSigned",
    "AgreementWithdrawn",
    "Negotiation",
    "NotAdmitted",
    "ProposalReceived",
    "ProposalRejected",
    "ProviderBanned",
    "open_negotiation",
]

logger = logging.getLogger("golem_trio.market")

_IS_FINAL = "golem.proposal.rejection.is-final"
_NAME = "golem.node.id.name"


# -- Events -----------------------------------------------------------------------------------


@attrs.frozen
class ProposalReceived:
    """An Initial proposal (an offer) arrived; ``accepted`` says whether it entered the pool."""

    provider_id: str
    provider_name: str | None
    proposal_id: str
    accepted: bool


@attrs.frozen
class ProposalRejected:
    """The provider rejected our proposal."""

    provider_id: str
    proposal_id: str
    reason: str
    final: bool


@attrs.frozen
class AgreementSigned:
    agreement_id: str
    provider_id: str
    provider_name: str | None


@attrs.frozen
class AgreementRejected:
    """The agreement was not approved (``reason``: the daemon's text, or ``timeout``)."""

    agreement_id: str
    provider_id: str
    reason: str


@attrs.frozen
class AgreementWithdrawn:
    """An agreement approved while we were giving up on it was terminated at once; its
    provider may still invoice it (whoever pays must know it)."""

    agreement_id: str
    provider_id: str


@attrs.frozen
class ProviderBanned:
    provider_id: str
    reason: str
    until: float


@attrs.frozen
class AgreementInfo:
    """An approved agreement: what :meth:`Negotiation.sign` returns."""

    agreement_id: str
    provider_id: str
    provider_name: str | None
    properties: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    terms: Mapping[str, Any] = attrs.field(factory=dict)
    #: The agreement's other side: the properties of our last counter-proposal, from which,
    #: with the provider's Draft (``properties``), the daemon made the agreement.
    demand_properties: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    #: When we confirmed it (no approval can come sooner) and when it expires.
    confirmed_at: dt.datetime | None = attrs.field(default=None, eq=False)
    valid_to: dt.datetime | None = attrs.field(default=None, eq=False)


def _terms(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {key: properties[key] for key in NEGOTIABLE_TERMS if key in properties}


def _reason_text(reason: Reason | None) -> str:
    return "no reason given" if reason is None else reason.message


class _Answer:
    """The provider's answer to one of our proposals."""

    def __init__(self, awaited: bool) -> None:
        self.event = trio.Event()
        self.value: ProposalEvent | ProposalRejectedEvent | None = None
        #: False for an answer that arrived before anyone waited for it.
        self.awaited = awaited
        self.since = trio.current_time()


class _Skip(Exception):
    """This offer did not lead to an agreement; try the next."""


#: Asked by :meth:`Negotiation.sign` whether an agreement on these terms may be made.
Admit: TypeAlias = Callable[[Terms], bool]


class NotAdmitted(GolemError):
    """:meth:`Negotiation.sign` was told not to make an agreement on ``terms`` (offered by
    ``provider_id``); nothing was created."""

    def __init__(self, provider_id: str, terms: Terms) -> None:
        super().__init__(f"an agreement with {provider_id} on these terms was not admitted")
        self.provider_id = provider_id
        self.terms = terms


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Negotiation:
    """A published demand and its offers; get one from :func:`open_negotiation`."""

    def __init__(
        self,
        yagna: YagnaClient,
        demand: DemandOfferBase,
        *,
        platform: str,
        offer_filter: OfferFilter | None,
        pool: OfferPool,
        bans: ProviderBans,
        max_parallel: int,
        answer_timeout: float,
        approval_wait: float,
        valid_for: float,
        max_rounds: int,
        app_session_id: str | None,
        emit: Callable[[object], None] | None,
        now: Callable[[], dt.datetime],
        cleanup_timeout: float,
        poll_wait: float,
    ) -> None:
        self.yagna = yagna
        self.demand = demand
        self.platform = platform
        self.offer_filter = offer_filter
        self.pool = pool
        self.bans = bans
        self.limiter = trio.CapacityLimiter(max_parallel)
        self.answer_timeout = answer_timeout
        self.approval_wait = approval_wait
        self.valid_for = valid_for
        self.max_rounds = max_rounds
        self.app_session_id = app_session_id
        self._emit = emit
        self._now = now
        self.cleanup_timeout = cleanup_timeout
        self.poll_wait = poll_wait
        self.subscription_id: str | None = None
        #: How many times the demand was published (1 + re-subscriptions).
        self.subscriptions = 0
        #: Rejections of our proposals, oldest first: (provider id, reason).
        self.rejections: list[tuple[str, str]] = []
        self._answers: dict[str, _Answer] = {}
        self._offers_changed = trio.Event()

    def _publish(self, event: object) -> None:
        if self._emit is not None:
            self._emit(event)

    def _ban(self, provider_id: str, reason: str) -> None:
        ban = self.bans.ban(provider_id, reason, trio.current_time())
        self.pool.remove(provider_id)
        self._publish(ProviderBanned(provider_id, reason, ban.until))

    # -- collection ---------------------------------------------------------------------------

    async def _subscribe(self) -> str:
        sub = await self.yagna.market.subscribe_demand(self.demand)
        self.subscription_id = sub
        self.subscriptions += 1
        return sub

    async def _collect(self) -> None:
        """Collect offers until cancelled. A lost subscription is published again; the
        daemon's faults (:data:`~golem_trio.yagna.TRANSIENT_ERRORS`) are reported to the
        client's monitor and ridden out with a bounded, jittered pause, also while publishing
        again. Other errors end the task (and the block)."""
        sub: str | None = self.subscription_id
        assert sub is not None
        ride = self.yagna.monitor.ride_out("collectOffers")
        while True:
            try:
                if sub is None:
                    sub = await self._subscribe()
                events = await self.yagna.market.collect_offers(
                    sub, wait=self.poll_wait, max_events=100
                )
            except NotFound:
                # Expired or dropped by the daemon: publish again; old proposals are void.
                ride.succeeded()
                for entry in self.pool.entries():
                    self.pool.remove(entry.offer.provider_id)
                sub = None
                await trio.lowlevel.checkpoint()
                continue
            except TRANSIENT_ERRORS as exc:
                await ride.failed(exc)
                continue
            ride.succeeded()
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ProposalRejectedEvent):
            self._answer(event.proposal_id, event)
        elif isinstance(event, ProposalEvent):
            proposal = event.proposal
            if proposal.prev_proposal_id is not None:
                self._answer(proposal.prev_proposal_id, event)
                return
            offer = OfferView.from_proposal(proposal)
            accepted = self._consider(offer)
            self._publish(
                ProposalReceived(offer.provider_id, offer.name, offer.proposal_id, accepted)
            )

    def _answer(self, proposal_id: str, event: ProposalEvent | ProposalRejectedEvent) -> None:
        answer = self._answers.get(proposal_id)
        if answer is None:
            # Not (yet) awaited: keep it for the signer that is about to wait for it (its
            # counter's reply may still be on the way), but not forever (a late answer to a
            # proposal given up on is never claimed).
            self._forget_unclaimed()
            answer = self._answers[proposal_id] = _Answer(awaited=False)
        answer.value = event
        answer.event.set()

    def _forget_unclaimed(self) -> None:
        limit = trio.current_time() - self.answer_timeout
        stale = [k for k, a in self._answers.items() if not a.awaited and a.since < limit]
        for key in stale:
            del self._answers[key]

    def _consider(self, offer: OfferView) -> bool:
        if offer.terms is None:  # billing could not pay it: never sign it
            return False
        if self.offer_filter is not None and not self.offer_filter(offer):
            return False
        if self.pool.add(offer, trio.current_time()) is None:
            return False
        self._offers_changed.set()
        self._offers_changed = trio.Event()
        return True

    # -- signing ------------------------------------------------------------------------------

    async def sign(self, admit: Admit | None = None) -> AgreementInfo:
        """Negotiate and sign one agreement; returns it once the provider approved it.

        Waits for offers as long as it takes (bound it with :func:`trio.fail_after`). Offers
        that fail are skipped. If cancelled, an agreement it created and did not return is
        cancelled (shielded, bounded by ``cleanup_timeout``).

        ``admit``, when given, is asked with the terms of the agreement about to be made (the
        Draft's, read with our demand as billing reads them) before it is created; when it
        says no, the offer goes back to the pool and :class:`NotAdmitted` is raised (nothing
        was created).
        """
        while True:
            changed = self._offers_changed
            async with self.limiter:
                # Take the offer only once allowed to negotiate, so waiting callers do not
                # hold offers back from the others.
                entry = self.pool.pop_best(trio.current_time())
                if entry is not None:
                    with contextlib.suppress(_Skip):
                        return await self._attempt(entry.offer, admit)
                    continue
            # Bans end and offers arrive: look again at least every second.
            with trio.move_on_after(1.0):
                await changed.wait()

    async def _wait_answer(self, proposal_id: str) -> ProposalEvent | ProposalRejectedEvent:
        answer = self._answers.setdefault(proposal_id, _Answer(awaited=True))
        answer.awaited = True
        try:
            with trio.move_on_after(self.answer_timeout):
                await answer.event.wait()
        finally:
            self._answers.pop(proposal_id, None)
        if answer.value is None:
            raise _Skip("no answer")
        return answer.value

    async def _counter(self, sub: str, proposal_id: str, properties: dict[str, Any]) -> str:
        try:
            return await self.yagna.market.counter_proposal_demand(
                sub, proposal_id, DemandOfferBase(properties, self.demand.constraints)
            )
        except ApiError as exc:  # the proposal or the subscription is gone
            raise _Skip(str(exc)) from exc

    async def _negotiate(self, offer: OfferView) -> tuple[ProposalEvent, dict[str, Any]]:
        """Counter until the provider's Draft has our terms; returns the Draft and the
        properties of the counter it answers."""
        sub = self.subscription_id
        assert sub is not None
        proposal_id = offer.proposal_id
        their_properties: Mapping[str, Any] = offer.properties
        for _ in range(self.max_rounds):
            properties = counter_properties(self.demand, their_properties, self.platform)
            ours = await self._counter(sub, proposal_id, properties)
            wanted = _terms(properties)
            answer = await self._wait_answer(ours)
            if isinstance(answer, ProposalRejectedEvent):
                reason = _reason_text(answer.reason)
                final = answer.reason is not None and answer.reason.code(_IS_FINAL) is True
                self.rejections.append((offer.provider_id, reason))
                self._publish(ProposalRejected(offer.provider_id, ours, reason, final))
                # Final or not, move on to other providers for a while.
                self._ban(offer.provider_id, f"rejected our proposal: {reason}")
                raise _Skip(reason)
            draft = answer.proposal
            # Terms the demand leaves open (say, the debit-note interval) are the provider's;
            # those it states may come back as good or better for us (terms.terms_shortfall).
            if terms_shortfall(wanted, draft.properties) is None:
                return answer, properties
            proposal_id, their_properties = draft.proposal_id, draft.properties
        self._ban(offer.provider_id, "no agreement on terms")
        raise _Skip("no agreement on terms")

    async def _attempt(self, offer: OfferView, admit: Admit | None = None) -> AgreementInfo:
        answer, ours = await self._negotiate(offer)
        draft = answer.proposal
        try:
            # The agreement's offer side is the Draft: its terms must be ones billing can pay.
            # Admission judges the terms billing will register: the Draft and our last counter
            # (whose negotiated values are settled against the offer), not the bare demand.
            Terms.from_properties(draft.properties)
            terms = Terms.from_properties(draft.properties, ours)
        except TermsError as exc:
            self._ban(offer.provider_id, f"unusable terms: {exc}")
            raise _Skip(str(exc)) from exc
        if admit is not None and not admit(terms):
            # Not this provider's fault: its offer stays in the pool for later.
            self.pool.add(offer, trio.current_time())
            raise NotAdmitted(offer.provider_id, terms)
        valid_to = self._now() + dt.timedelta(seconds=self.valid_for)
        # Shielded and bounded: once the daemon made the agreement its id must be known here,
        # or a cancellation would leave it proposed with nobody to cancel it.
        with trio.move_on_after(self.answer_timeout, shield=True) as creating:
            try:
                agreement_id = await self.yagna.market.create_agreement(draft.proposal_id, valid_to)
            except ApiError as exc:
                raise _Skip(str(exc)) from exc
        if creating.cancelled_caught:
            raise _Skip("creating the agreement timed out")
        name = draft.properties.get(_NAME)
        provider_name = name if isinstance(name, str) else offer.name
        approved = False
        try:
            confirmed_at = self._now()
            reason = await self._approve(agreement_id)
            if reason is None:
                approved = True
                self._publish(AgreementSigned(agreement_id, offer.provider_id, provider_name))
                return AgreementInfo(
                    agreement_id,
                    offer.provider_id,
                    provider_name,
                    dict(draft.properties),
                    _terms(draft.properties),
                    demand_properties=ours,
                    confirmed_at=confirmed_at,
                    valid_to=valid_to,
                )
        finally:
            if not approved:
                with trio.move_on_after(self.cleanup_timeout, shield=True):
                    if await self._withdraw(agreement_id):
                        self._publish(AgreementWithdrawn(agreement_id, offer.provider_id))
        self._publish(AgreementRejected(agreement_id, offer.provider_id, reason))
        self._ban(offer.provider_id, f"agreement not approved: {reason}")
        raise _Skip(reason)

    async def _withdraw(self, agreement_id: str) -> bool:
        """Cancel an agreement we will not return; if the provider approved it meanwhile (we
        were cancelled while its approval was on the way), terminate it instead. Returns
        whether it had been approved (and so was terminated: the provider will invoice it)."""
        try:
            await self.yagna.market.cancel_agreement(
                agreement_id, Reason("requestor gave up waiting")
            )
        except ApiError:
            # Approved after all, or rejected or expired already (then this fails too).
            await trio.lowlevel.checkpoint()
            try:
                await self.yagna.market.terminate_agreement(
                    agreement_id,
                    Reason("requestor gave up", {"golem.requestor.code": "Cancelled"}),
                )
            except ApiError:
                return False
            return True
        return False

    async def _approve(self, agreement_id: str) -> str | None:
        """Confirm and wait for approval; ``None`` if approved, else why not."""
        try:
            await self.yagna.market.confirm_agreement(
                agreement_id, app_session_id=self.app_session_id
            )
        except ApiError as exc:
            await trio.lowlevel.checkpoint()
            return f"confirm failed: {exc}"
        deadline = trio.current_time() + self.approval_wait
        while (left := deadline - trio.current_time()) > 0:
            result = await self.yagna.market.wait_for_approval(
                agreement_id, wait=max(1.0, math.ceil(left))
            )
            if result.approved:
                return None
            if not result.timed_out:
                return result.message or "rejected"
        await trio.lowlevel.checkpoint()
        return "timeout"


@asynccontextmanager
async def open_negotiation(
    yagna: YagnaClient,
    demand: DemandOfferBase,
    *,
    platform: str,
    offer_filter: OfferFilter | None = None,
    scorer: Scorer | None = None,
    pool: OfferPool | None = None,
    bans: ProviderBans | None = None,
    max_parallel: int = 50,
    answer_timeout: float = 30.0,
    approval_wait: float = 60.0,
    valid_for: float = 3600.0,
    max_rounds: int = 3,
    app_session_id: str | None = None,
    emit: Callable[[object], None] | None = None,
    now: Callable[[], dt.datetime] = _wall_now,
    cleanup_timeout: float = 5.0,
    poll_wait: float = EVENT_WAIT,
) -> AsyncIterator[Negotiation]:
    """Publish ``demand`` and negotiate on it for the duration of the block.

    ``platform`` is the payment platform to choose in counters. Offers pass ``offer_filter``
    (e.g. :class:`PriceCaps`) and are ranked by ``scorer`` in ``pool`` (default: a pool of
    10 000 offers kept 30 minutes, :func:`cheapest` first); ``bans`` (shared with the pool)
    keep failing providers out for a while. ``approval_wait`` bounds the wait for a provider's
    approval, ``answer_timeout`` the wait for its answer to a proposal; agreements are valid
    for ``valid_for`` seconds from ``now()`` (the wall clock by default). ``emit`` receives the
    events of this module (:class:`ProposalReceived`, :class:`ProposalRejected`,
    :class:`AgreementSigned`, :class:`AgreementRejected`, :class:`AgreementWithdrawn`,
    :class:`ProviderBanned`).

    The demand is published before the block starts and again whenever the daemon drops it
    (``NotFound`` on collection: an expired or withdrawn subscription). Leaving the block
    cancels collection and withdraws the demand (shielded, at most ``cleanup_timeout``
    seconds; when the daemon is away, the failure is logged and the demand left to expire).
    The collection loop rides out the daemon's faults (reported to
    ``yagna.monitor``); its other errors, but a lost subscription, end the block.
    """
    if max_parallel < 1 or max_rounds < 1:
        raise ValueError("max_parallel and max_rounds must be >= 1")
    bans = bans if bans is not None else ProviderBans()
    if pool is None:
        pool = OfferPool(10_000, 1800.0, scorer=scorer, bans=bans)
    market = Negotiation(
        yagna,
        demand,
        platform=platform,
        offer_filter=offer_filter,
        pool=pool,
        bans=bans,
        max_parallel=max_parallel,
        answer_timeout=answer_timeout,
        approval_wait=approval_wait,
        valid_for=valid_for,
        max_rounds=max_rounds,
        app_session_id=app_session_id,
        emit=emit,
        now=now,
        cleanup_timeout=cleanup_timeout,
        poll_wait=poll_wait,
    )
    try:
        await market._subscribe()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(market._collect)
            yield market
            nursery.cancel_scope.cancel()
    finally:
        sub = market.subscription_id
        if sub is not None:
            with trio.move_on_after(cleanup_timeout, shield=True):
                try:
                    await yagna.market.unsubscribe_demand(sub)
                except ApiError:
                    pass  # already gone
                except YagnaError as exc:
                    # The daemon is away: the demand stays until it expires, and nothing
                    # more is negotiated for it. Leaving must not fail over it.
                    logger.info("withdrawing demand %s: %s", sub, exc)
