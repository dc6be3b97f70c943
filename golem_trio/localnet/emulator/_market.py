"""The emulated market: demands, offers, proposals, agreements and their events.

Behaviour follows the real daemon (docs/daemon-notes.md §2): proposal events are consumed when
read, agreement events are persistent and selected by ``afterTimestamp``; each side sees a
proposal under its own id prefix (``R-`` for the requestor, ``P-`` for the provider); success
and error statuses are the daemon's, not the spec's.

The provider side is served by the same methods an emulated provider (or, over REST, the real
daemon's provider API) uses: ``subscribe_offer``, ``collect_demands``, ``counter_offer``,
``reject_demand``, ``approve_agreement``, ``reject_agreement``, ``terminate_agreement``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from ._constraints import matches
from ._core import Daemon, DaemonError, flatten
from ._events import EventLog, EventQueue, QueueClosed

__all__ = ["Agreement", "AgreementState", "MarketState", "Proposal", "format_time"]

#: Demand and offer subscriptions live this long (the daemon's DEFAULT_SUBSCRIPTION_TTL).
SUBSCRIPTION_TTL = 3600.0
#: Default and bounds of ``maxEvents`` on market long polls.
MAX_EVENTS_DEFAULT = 20
MAX_EVENTS_LIMIT = 100

Json = dict[str, Any]


def format_time(value: dt.datetime) -> str:
    """RFC 3339 UTC with nanoseconds, as the daemon writes timestamps."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class AgreementState(enum.StrEnum):
    PROPOSAL = "Proposal"
    PENDING = "Pending"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    APPROVED = "Approved"
    EXPIRED = "Expired"
    TERMINATED = "Terminated"


@attrs.define(eq=False)
class Subscription:
    """A demand (requestor) or an offer (provider)."""

    id: str
    owner_id: str
    properties: dict[str, Any]
    constraints: str
    timestamp: dt.datetime
    expires: float
    events: EventQueue[Json] = attrs.field(factory=EventQueue)

    def json(self, kind: str) -> Json:
        return {
            "properties": self.properties,
            "constraints": self.constraints,
            f"{kind}Id": self.id,
            ("requestorId" if kind == "demand" else "providerId"): self.owner_id,
            "timestamp": format_time(self.timestamp),
        }


@attrs.define(eq=False)
class Proposal:
    """One step of a negotiation between one demand and one offer."""

    hash: str
    demand: Subscription
    offer: Subscription
    issuer: str  # "requestor" or "provider"
    issuer_id: str
    properties: dict[str, Any]
    constraints: str
    state: str  # Initial, Draft, Rejected, Accepted, Expired
    timestamp: dt.datetime
    prev: Proposal | None = None
    promoted: bool = False

    def id_for(self, side: str) -> str:
        return ("R-" if side == "requestor" else "P-") + self.hash

    def json(self, side: str) -> Json:
        body: Json = {
            "properties": self.properties,
            "constraints": self.constraints,
            "proposalId": self.id_for(side),
            "issuerId": self.issuer_id,
            "state": self.state,
            "timestamp": format_time(self.timestamp),
        }
        if self.prev is not None:
            body["prevProposalId"] = self.prev.id_for(side)
        return body


@attrs.define(eq=False)
class Agreement:
    agreement_id: str
    demand_proposal: Proposal  # the requestor's last proposal
    offer_proposal: Proposal  # the provider's Draft that was promoted
    valid_to: dt.datetime
    state: AgreementState
    timestamp: dt.datetime
    requestor_id: str
    provider_id: str
    app_session_id: str | None = None
    provider_session_id: str | None = None
    approved_date: dt.datetime | None = None
    terminator: str | None = None
    termination: Json | None = None
    decided: trio.Event = attrs.field(factory=trio.Event)
    #: Set when either side terminates it.
    ended: trio.Event = attrs.field(factory=trio.Event)

    def json(self) -> Json:
        demand = self.demand_proposal
        offer = self.offer_proposal
        body: Json = {
            "agreementId": self.agreement_id,
            "demand": {
                "properties": demand.properties,
                "constraints": demand.constraints,
                "demandId": demand.demand.id,
                "requestorId": self.requestor_id,
                "timestamp": format_time(demand.timestamp),
            },
            "offer": {
                "properties": offer.properties,
                "constraints": offer.constraints,
                "offerId": offer.offer.id,
                "providerId": self.provider_id,
                "timestamp": format_time(offer.timestamp),
            },
            "validTo": format_time(self.valid_to),
            "state": self.state.value,
            "timestamp": format_time(self.timestamp),
        }
        if self.approved_date is not None:
            body["approvedDate"] = format_time(self.approved_date)
        if self.app_session_id is not None:
            body["appSessionId"] = self.app_session_id
        return body


@attrs.frozen
class AgreementEventRecord:
    """A persistent agreement event; ``json`` is what both sides are sent."""

    stamp: dt.datetime
    agreement: Agreement
    json: Json


def _check_max_events(max_events: int | None) -> int:
    if max_events is None:
        return MAX_EVENTS_DEFAULT
    if not 1 <= max_events <= MAX_EVENTS_LIMIT:
        raise DaemonError(400, f"maxEvents must be between 1 and {MAX_EVENTS_LIMIT}")
    return max_events


def _reason(body: object) -> Json | None:
    if body is None:
        return None
    if not isinstance(body, Mapping) or not isinstance(body.get("message"), str):
        raise DaemonError(400, "Reason must be an object with a message")
    return dict(body)


class MarketState:
    """The market of one emulated daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.demands: dict[str, Subscription] = {}
        self.offers: dict[str, Subscription] = {}
        self.proposals: dict[str, Proposal] = {}
        self.agreements: dict[str, Agreement] = {}
        self.events: EventLog[AgreementEventRecord] = EventLog(daemon.clock)

    # --- subscriptions ---------------------------------------------------------------------------

    def _subscription(self, owner_id: str, body: object) -> Subscription:
        if not isinstance(body, Mapping):
            raise DaemonError(400, "expected a JSON object with properties and constraints")
        properties = body.get("properties")
        constraints = body.get("constraints")
        if not isinstance(properties, Mapping) or not isinstance(constraints, str):
            raise DaemonError(400, "missing field properties or constraints")
        return Subscription(
            id=self.daemon.ids.subscription(),
            owner_id=owner_id,
            properties=flatten(properties),
            constraints=constraints,
            timestamp=self.daemon.clock.stamp(),
            expires=trio.current_time() + SUBSCRIPTION_TTL,
        )

    def _live(self, table: dict[str, Subscription], sub_id: str, owner_id: str) -> Subscription:
        sub = table.get(sub_id)
        if sub is not None and trio.current_time() >= sub.expires:
            self._unsubscribe(table, sub)
            sub = None
        if sub is None or sub.owner_id != owner_id:
            raise DaemonError(404, f"Subscription [{sub_id}] not found")
        return sub

    def _unsubscribe(self, table: dict[str, Subscription], sub: Subscription) -> None:
        table.pop(sub.id, None)
        sub.events.close()

    def subscribe_demand(self, requestor_id: str, body: object) -> str:
        demand = self._subscription(requestor_id, body)
        self.demands[demand.id] = demand
        for offer in list(self.offers.values()):
            self._match(demand, offer)
        return demand.id

    def subscribe_offer(self, provider_id: str, body: object) -> str:
        offer = self._subscription(provider_id, body)
        self.offers[offer.id] = offer
        for demand in list(self.demands.values()):
            self._match(demand, offer)
        return offer.id

    def _match(self, demand: Subscription, offer: Subscription) -> None:
        now = trio.current_time()
        if now >= demand.expires or now >= offer.expires:
            return
        if not matches(demand.properties, demand.constraints, offer.properties, offer.constraints):
            return
        proposal = self._new_proposal(
            demand, offer, "provider", offer.owner_id, offer.properties, offer.constraints, None
        )
        proposal.state = "Initial"
        demand.events.put(self._proposal_event(proposal, "requestor"))

    def _new_proposal(
        self,
        demand: Subscription,
        offer: Subscription,
        issuer: str,
        issuer_id: str,
        properties: dict[str, Any],
        constraints: str,
        prev: Proposal | None,
    ) -> Proposal:
        proposal = Proposal(
            hash=self.daemon.ids.proposal_hash(),
            demand=demand,
            offer=offer,
            issuer=issuer,
            issuer_id=issuer_id,
            properties=properties,
            constraints=constraints,
            state="Draft",
            timestamp=self.daemon.clock.stamp(),
            prev=prev,
        )
        self.proposals[proposal.hash] = proposal
        return proposal

    def _proposal_event(self, proposal: Proposal, side: str) -> Json:
        return {
            "eventType": "ProposalEvent",
            "eventDate": format_time(self.daemon.clock.stamp()),
            "proposal": proposal.json(side),
        }

    def list_demands(self, requestor_id: str) -> list[Json]:
        now = trio.current_time()
        return [
            d.json("demand")
            for d in self.demands.values()
            if d.owner_id == requestor_id and d.expires > now
        ]

    def list_offers(self, provider_id: str) -> list[Json]:
        now = trio.current_time()
        return [
            o.json("offer")
            for o in self.offers.values()
            if o.owner_id == provider_id and o.expires > now
        ]

    def unsubscribe_demand(self, requestor_id: str, demand_id: str) -> None:
        self._unsubscribe(self.demands, self._live(self.demands, demand_id, requestor_id))

    def unsubscribe_offer(self, provider_id: str, offer_id: str) -> None:
        self._unsubscribe(self.offers, self._live(self.offers, offer_id, provider_id))

    async def collect_offers(
        self, requestor_id: str, demand_id: str, wait: float, max_events: int | None
    ) -> list[Json]:
        """The requestor's negotiation events (consumed); 404 once the demand is gone."""
        limit = _check_max_events(max_events)
        demand = self._live(self.demands, demand_id, requestor_id)
        try:
            return await demand.events.take(limit, wait)
        except QueueClosed:
            raise DaemonError(404, f"Subscription [{demand_id}] not found") from None

    async def collect_demands(
        self, provider_id: str, offer_id: str, wait: float, max_events: int | None
    ) -> list[Json]:
        """The provider's events (proposals and agreements to decide on), consumed."""
        limit = _check_max_events(max_events)
        offer = self._live(self.offers, offer_id, provider_id)
        try:
            return await offer.events.take(limit, wait)
        except QueueClosed:
            raise DaemonError(404, f"Subscription [{offer_id}] not found") from None

    # --- proposals -------------------------------------------------------------------------------

    def _proposal(self, proposal_id: str, prefix: str) -> Proposal:
        if not proposal_id.startswith(prefix) or len(proposal_id) != len(prefix) + 64:
            raise DaemonError(400, f"Invalid proposal id [{proposal_id}]")
        proposal = self.proposals.get(proposal_id[len(prefix) :])
        if proposal is None:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        return proposal

    def get_proposal_offer(self, requestor_id: str, demand_id: str, proposal_id: str) -> Json:
        demand = self._live(self.demands, demand_id, requestor_id)
        proposal = self._proposal(proposal_id, "R-")
        if proposal.demand is not demand:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        return proposal.json("requestor")

    def get_proposal_demand(self, provider_id: str, offer_id: str, proposal_id: str) -> Json:
        offer = self._live(self.offers, offer_id, provider_id)
        proposal = self._proposal(proposal_id, "P-")
        if proposal.offer is not offer:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        return proposal.json("provider")

    def counter_proposal_demand(
        self, requestor_id: str, demand_id: str, proposal_id: str, body: object
    ) -> str:
        """The requestor answers a provider's proposal; the provider gets it as a Draft."""
        demand = self._live(self.demands, demand_id, requestor_id)
        prev = self._proposal(proposal_id, "R-")
        if prev.demand is not demand:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        if prev.issuer != "provider":
            raise DaemonError(400, f"Can't counter own Proposal [{proposal_id}]")
        if prev.state == "Rejected":
            raise DaemonError(400, f"Proposal [{proposal_id}] was rejected")
        offer = prev.offer
        if offer.id not in self.offers:
            raise DaemonError(410, f"Offer [{offer.id}] unsubscribed")
        counter = self._subscription(requestor_id, body)
        proposal = self._new_proposal(
            demand, offer, "requestor", requestor_id, counter.properties, counter.constraints, prev
        )
        offer.events.put(self._proposal_event(proposal, "provider"))
        return proposal.id_for("requestor")

    def counter_proposal_offer(
        self, provider_id: str, offer_id: str, proposal_id: str, body: object
    ) -> str:
        """The provider answers the requestor's proposal with a Draft."""
        offer = self._live(self.offers, offer_id, provider_id)
        prev = self._proposal(proposal_id, "P-")
        if prev.offer is not offer:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        if prev.issuer != "requestor":
            raise DaemonError(400, f"Can't counter own Proposal [{proposal_id}]")
        demand = prev.demand
        if demand.id not in self.demands:
            raise DaemonError(410, f"Demand [{demand.id}] unsubscribed")
        counter = self._subscription(provider_id, body)
        proposal = self._new_proposal(
            demand, offer, "provider", provider_id, counter.properties, counter.constraints, prev
        )
        demand.events.put(self._proposal_event(proposal, "requestor"))
        return proposal.id_for("provider")

    def reject_proposal_offer(
        self, requestor_id: str, demand_id: str, proposal_id: str, body: object
    ) -> None:
        """The requestor rejects a provider's proposal; the provider is told."""
        demand = self._live(self.demands, demand_id, requestor_id)
        proposal = self._proposal(proposal_id, "R-")
        if proposal.demand is not demand or proposal.issuer != "provider":
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        reason = _reason(body)
        proposal.state = "Rejected"
        if proposal.offer.id in self.offers:
            proposal.offer.events.put(self._rejected_event(proposal, "provider", reason))

    def reject_proposal_demand(
        self, provider_id: str, offer_id: str, proposal_id: str, body: object
    ) -> None:
        """The provider rejects the requestor's proposal; the requestor gets a
        ``ProposalRejectedEvent``."""
        offer = self._live(self.offers, offer_id, provider_id)
        proposal = self._proposal(proposal_id, "P-")
        if proposal.offer is not offer or proposal.issuer != "requestor":
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        reason = _reason(body)
        proposal.state = "Rejected"
        if proposal.demand.id in self.demands:
            proposal.demand.events.put(self._rejected_event(proposal, "requestor", reason))

    def _rejected_event(self, proposal: Proposal, side: str, reason: Json | None) -> Json:
        event: Json = {
            "eventType": "ProposalRejectedEvent",
            "eventDate": format_time(self.daemon.clock.stamp()),
            "proposalId": proposal.id_for(side),
        }
        if reason is not None:
            event["reason"] = reason
        return event

    # --- agreements ------------------------------------------------------------------------------

    def create_agreement(self, requestor_id: str, body: object) -> str:
        if not isinstance(body, Mapping) or not isinstance(body.get("proposalId"), str):
            raise DaemonError(400, "missing field proposalId")
        valid_to_text = body.get("validTo")
        if not isinstance(valid_to_text, str):
            raise DaemonError(400, "missing field validTo")
        try:
            valid_to = dt.datetime.fromisoformat(valid_to_text.replace("Z", "+00:00"))
        except ValueError:
            raise DaemonError(400, f"invalid validTo [{valid_to_text}]") from None
        if valid_to.tzinfo is None:
            valid_to = valid_to.replace(tzinfo=dt.UTC)
        proposal_id = body["proposalId"]
        proposal = self._proposal(proposal_id, "R-")
        if proposal.demand.owner_id != requestor_id:
            raise DaemonError(404, f"Proposal [{proposal_id}] not found")
        if proposal.issuer != "provider" or proposal.state != "Draft" or proposal.prev is None:
            raise DaemonError(
                400, f"Proposal [{proposal_id}] has no previous proposal from the requestor"
            )
        if proposal.promoted:
            raise DaemonError(409, f"Proposal [{proposal_id}] already promoted to an Agreement")
        if valid_to <= self.daemon.clock.now():
            raise DaemonError(400, f"Agreement validTo [{valid_to_text}] is in the past")
        proposal.promoted = True
        agreement = Agreement(
            agreement_id=self.daemon.ids.agreement(),
            demand_proposal=proposal.prev,
            offer_proposal=proposal,
            valid_to=valid_to,
            state=AgreementState.PROPOSAL,
            timestamp=self.daemon.clock.stamp(),
            requestor_id=requestor_id,
            provider_id=proposal.issuer_id,
        )
        self.agreements[agreement.agreement_id] = agreement
        return agreement.agreement_id

    def agreement(self, node_id: str, agreement_id: str) -> Agreement:
        agreement = self.agreements.get(agreement_id)
        if agreement is None or node_id not in (agreement.requestor_id, agreement.provider_id):
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        self._expire(agreement)
        return agreement

    def _expire(self, agreement: Agreement) -> None:
        unsettled = (AgreementState.PROPOSAL, AgreementState.PENDING)
        if agreement.state in unsettled and self.daemon.clock.now() >= agreement.valid_to:
            agreement.state = AgreementState.EXPIRED
            agreement.decided.set()

    def list_agreements(self, node_id: str, params: Mapping[str, str]) -> list[Json]:
        entries = []
        for agreement in self.agreements.values():
            self._expire(agreement)
            for role, owner in (
                ("Requestor", agreement.requestor_id),
                ("Provider", agreement.provider_id),
            ):
                if owner != node_id:
                    continue
                if params.get("state") and params["state"] != agreement.state.value:
                    continue
                session = (
                    agreement.app_session_id
                    if role == "Requestor"
                    else agreement.provider_session_id
                )
                if params.get("appSessionId") and params["appSessionId"] != session:
                    continue
                entries.append(
                    {
                        "id": agreement.agreement_id,
                        "timestamp": format_time(agreement.timestamp),
                        "approvedDate": (
                            None
                            if agreement.approved_date is None
                            else format_time(agreement.approved_date)
                        ),
                        "role": role,
                    }
                )
        return entries

    def confirm_agreement(
        self, requestor_id: str, agreement_id: str, app_session_id: str | None
    ) -> None:
        agreement = self.agreement(requestor_id, agreement_id)
        if agreement.requestor_id != requestor_id:
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        if agreement.state is not AgreementState.PROPOSAL:
            raise DaemonError(409, f"Agreement [{agreement_id}] in state {agreement.state}")
        agreement.state = AgreementState.PENDING
        agreement.app_session_id = app_session_id
        offer = agreement.offer_proposal.offer
        if offer.id in self.offers:
            offer.events.put(
                {
                    "eventType": "AgreementEvent",
                    "eventDate": format_time(self.daemon.clock.stamp()),
                    "agreement": agreement.json(),
                }
            )

    async def wait_for_approval(self, requestor_id: str, agreement_id: str, wait: float) -> None:
        """Returns when approved; raises the daemon's 410/400/408 otherwise."""
        agreement = self.agreement(requestor_id, agreement_id)
        if agreement.state is AgreementState.PROPOSAL:
            raise DaemonError(400, f"Agreement [{agreement_id}] not confirmed")
        with trio.move_on_after(max(wait, 0.0)):
            # Pending agreements expire at validTo: wake up then too.
            with trio.move_on_at(self.daemon.clock.to_trio(agreement.valid_to)):
                await agreement.decided.wait()
        await trio.lowlevel.checkpoint()
        self._expire(agreement)
        state = agreement.state
        if state is AgreementState.APPROVED:
            return
        if state in (AgreementState.REJECTED, AgreementState.CANCELLED, AgreementState.EXPIRED):
            raise DaemonError(410, state.value)
        if state is AgreementState.TERMINATED:
            raise DaemonError(400, f"Agreement [{agreement_id}] terminated")
        raise DaemonError(408, "Timeout")

    def approve_agreement(
        self, provider_id: str, agreement_id: str, app_session_id: str | None
    ) -> None:
        agreement = self.agreement(provider_id, agreement_id)
        if agreement.provider_id != provider_id:
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        if agreement.state is not AgreementState.PENDING:
            raise DaemonError(410, f"Agreement [{agreement_id}] in state {agreement.state}")
        agreement.state = AgreementState.APPROVED
        agreement.provider_session_id = app_session_id
        agreement.approved_date = self.daemon.clock.now()
        agreement.decided.set()
        self._log(agreement, "AgreementApprovedEvent", {})

    def reject_agreement(self, provider_id: str, agreement_id: str, body: object) -> None:
        agreement = self.agreement(provider_id, agreement_id)
        if agreement.provider_id != provider_id:
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        if agreement.state is not AgreementState.PENDING:
            raise DaemonError(410, f"Agreement [{agreement_id}] in state {agreement.state}")
        reason = _reason(body)
        agreement.state = AgreementState.REJECTED
        agreement.decided.set()
        self._log(agreement, "AgreementRejectedEvent", {} if reason is None else {"reason": reason})

    def cancel_agreement(self, requestor_id: str, agreement_id: str, body: object) -> None:
        agreement = self.agreement(requestor_id, agreement_id)
        if agreement.requestor_id != requestor_id:
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        if agreement.state not in (AgreementState.PROPOSAL, AgreementState.PENDING):
            raise DaemonError(409, f"Agreement [{agreement_id}] in state {agreement.state}")
        reason = _reason(body)
        agreement.state = AgreementState.CANCELLED
        agreement.decided.set()
        self._log(
            agreement, "AgreementCancelledEvent", {} if reason is None else {"reason": reason}
        )

    def terminate_agreement(self, node_id: str, agreement_id: str, body: object) -> None:
        """Either side ends an approved agreement with a reason."""
        agreement = self.agreement(node_id, agreement_id)
        if agreement.state is AgreementState.PROPOSAL:
            raise DaemonError(409, f"Agreement [{agreement_id}] not confirmed")
        if agreement.state is not AgreementState.APPROVED:
            raise DaemonError(410, f"Agreement [{agreement_id}] in state {agreement.state}")
        reason = _reason(body)
        terminator = "Requestor" if node_id == agreement.requestor_id else "Provider"
        agreement.state = AgreementState.TERMINATED
        agreement.terminator = terminator
        agreement.ended.set()
        extra: Json = {"terminator": terminator, "signature": ""}
        if reason is not None:
            extra["reason"] = reason
        record = self._log(agreement, "AgreementTerminatedEvent", extra)
        agreement.termination = {
            "agreementId": agreement.agreement_id,
            "eventDate": record.json["eventDate"],
            **extra,
        }

    def termination_reason(self, node_id: str, agreement_id: str) -> Json:
        agreement = self.agreement(node_id, agreement_id)
        if agreement.termination is None:
            raise DaemonError(404, f"Agreement [{agreement_id}] not terminated")
        return agreement.termination

    def _log(self, agreement: Agreement, event_type: str, extra: Json) -> AgreementEventRecord:
        return self.events.append(
            lambda stamp: AgreementEventRecord(
                stamp,
                agreement,
                {
                    "eventType": event_type,
                    "eventDate": format_time(stamp),
                    "agreementId": agreement.agreement_id,
                    **extra,
                },
            )
        )

    async def collect_agreement_events(
        self,
        node_id: str,
        wait: float,
        after: dt.datetime | None,
        max_events: int | None,
        app_session_id: str | None,
    ) -> list[Json]:
        limit = _check_max_events(max_events)

        def mine(record: AgreementEventRecord) -> bool:
            agreement = record.agreement
            if node_id == agreement.requestor_id:
                session = agreement.app_session_id
            elif node_id == agreement.provider_id:
                session = agreement.provider_session_id
            else:
                return False
            return app_session_id is None or app_session_id == session

        records = await self.events.wait_after(after, wait, limit=limit, match=mine)
        return [record.json for record in records]
