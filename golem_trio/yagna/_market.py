"""Market API (``/market-api/v1``), requestor side: demands, proposals, agreements, events.

Cancellation, for every method: a checkpoint; if cancelled, the request may or may not have
reached the daemon (a cancelled ``create_agreement`` may have created one, for example).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import trio

from ._convert import encode, format_timestamp
from ._errors import Gone, RequestTimeout
from ._http import HttpLayer
from ._models import (
    Agreement,
    AgreementEvent,
    AgreementListEntry,
    AgreementProposal,
    AgreementTerminationReason,
    Demand,
    DemandOfferBase,
    MarketEvent,
    NewScan,
    Offer,
    Proposal,
    Reason,
)

__all__ = ["ApprovalResult", "MarketApi"]


@attrs.frozen
class ApprovalResult:
    """Outcome of :meth:`MarketApi.wait_for_approval`.

    ``approved`` is True when the provider approved; False with ``timed_out`` when the wait
    ran out first (ask again); False with ``message`` when the agreement was rejected,
    cancelled or expired (the daemon's 410 text: ``Rejected``, ``Cancelled``...).
    """

    approved: bool
    timed_out: bool = False
    message: str | None = None


def _reason_body(reason: Reason | None) -> Any:
    return None if reason is None else encode(reason)


class MarketApi:
    """Typed calls of the market API. Get one from :attr:`YagnaClient.market`."""

    def __init__(self, http: HttpLayer) -> None:
        self._http = http
        self._base = http.config.market_base

    # --- demands ---------------------------------------------------------------------------------

    async def subscribe_demand(self, demand: DemandOfferBase) -> str:
        """Publish a demand; returns its subscription id (not retried)."""
        result: str = await self._http.call_json(
            "subscribeDemand", "POST", f"{self._base}/demands", str, body=encode(demand)
        )
        return result

    async def get_demands(self) -> list[Demand]:
        result: list[Demand] = await self._http.call_json(
            "getDemands", "GET", f"{self._base}/demands", list[Demand], safe=True
        )
        return result

    async def unsubscribe_demand(self, subscription_id: str) -> None:
        """Withdraw a demand. Raises :class:`NotFound` if it is unknown or already expired."""
        await self._http.call(
            "unsubscribeDemand",
            "DELETE",
            f"{self._base}/demands/{subscription_id}",
            safe=True,
            gone_ok=True,
        )

    async def collect_offers(
        self, subscription_id: str, *, wait: float = 5.0, max_events: int | None = None
    ) -> list[MarketEvent]:
        """Long-poll the negotiation events of a demand (``[]`` when ``wait`` passes).

        Events are consumed by this call. :class:`NotFound` means the subscription is gone
        (unsubscribed or expired after an hour): subscribe again.
        """
        result: list[MarketEvent] = await self._http.call_json(
            "collectOffers",
            "GET",
            f"{self._base}/demands/{subscription_id}/events",
            list[MarketEvent],
            params={"timeout": wait, "maxEvents": max_events},
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result

    async def get_proposal_offer(self, subscription_id: str, proposal_id: str) -> Proposal:
        result: Proposal = await self._http.call_json(
            "getProposalOffer",
            "GET",
            f"{self._base}/demands/{subscription_id}/proposals/{proposal_id}",
            Proposal,
            safe=True,
        )
        return result

    async def counter_proposal_demand(
        self, subscription_id: str, proposal_id: str, demand: DemandOfferBase
    ) -> str:
        """Answer an offer with our (counter-)proposal; returns our new proposal's id."""
        result: str = await self._http.call_json(
            "counterProposalDemand",
            "POST",
            f"{self._base}/demands/{subscription_id}/proposals/{proposal_id}",
            str,
            body=encode(demand),
        )
        return result

    async def reject_proposal_offer(
        self, subscription_id: str, proposal_id: str, reason: Reason | None = None
    ) -> None:
        """Reject a provider's proposal, telling it why."""
        await self._http.call(
            "rejectProposalOffer",
            "POST",
            f"{self._base}/demands/{subscription_id}/proposals/{proposal_id}/reject",
            body=_reason_body(reason),
        )

    async def query_reply_demands(self, subscription_id: str, query_id: str, value: Any) -> None:
        """Answer a property query (defined by the API, not produced by current daemons)."""
        await self._http.call(
            "queryReplyDemands",
            "POST",
            f"{self._base}/demands/{subscription_id}/propertyQuery/{query_id}",
            body=value,
        )

    # --- offer scanning --------------------------------------------------------------------------

    async def begin_scan(self, scan: NewScan | None = None) -> str:
        """Start browsing offers without negotiating; returns the scan id."""
        result: str = await self._http.call_json(
            "beginScan", "POST", f"{self._base}/scan", str, body=encode(scan or NewScan())
        )
        return result

    async def collect_scan_results(
        self, scan_id: str, *, wait: float = 5.0, max_events: int | None = None
    ) -> list[Offer]:
        result: list[Offer] = await self._http.call_json(
            "collectScanResults",
            "GET",
            f"{self._base}/scan/{scan_id}/events",
            list[Offer],
            params={"timeout": wait, "maxEvents": max_events},
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result

    async def end_scan(self, scan_id: str) -> None:
        """Stop a scan. The daemon serves ``DELETE /scan/{id}``; the spec says
        ``DELETE /scan/{id}/events``."""
        await self._http.call(
            "endScan", "DELETE", f"{self._base}/scan/{scan_id}", safe=True, gone_ok=True
        )

    # --- agreements ------------------------------------------------------------------------------

    async def create_agreement(self, proposal_id: str, valid_to: dt.datetime) -> str:
        """Turn a provider's Draft proposal into an agreement; returns its id (not retried)."""
        result: str = await self._http.call_json(
            "createAgreement",
            "POST",
            f"{self._base}/agreements",
            str,
            body=encode(AgreementProposal(proposal_id, valid_to)),
        )
        return result

    async def list_agreements(
        self,
        *,
        state: str | None = None,
        after_date: dt.datetime | None = None,
        before_date: dt.datetime | None = None,
        app_session_id: str | None = None,
    ) -> list[AgreementListEntry]:
        params = {
            "state": state,
            "afterDate": None if after_date is None else format_timestamp(after_date),
            "beforeDate": None if before_date is None else format_timestamp(before_date),
            "appSessionId": app_session_id,
        }
        result: list[AgreementListEntry] = await self._http.call_json(
            "listAgreements",
            "GET",
            f"{self._base}/agreements",
            list[AgreementListEntry],
            params=params,
            safe=True,
        )
        return result

    async def get_agreement(self, agreement_id: str) -> Agreement:
        result: Agreement = await self._http.call_json(
            "getAgreement", "GET", f"{self._base}/agreements/{agreement_id}", Agreement, safe=True
        )
        return result

    async def confirm_agreement(
        self, agreement_id: str, *, app_session_id: str | None = None
    ) -> None:
        """Sign and send the agreement to the provider (state ``Pending``). Not retried."""
        await self._http.call(
            "confirmAgreement",
            "POST",
            f"{self._base}/agreements/{agreement_id}/confirm",
            params={"appSessionId": app_session_id},
        )

    async def wait_for_approval(self, agreement_id: str, *, wait: float = 15.0) -> ApprovalResult:
        """Wait up to ``wait`` seconds for the provider's decision.

        Never raises for the provider's "no" or for the wait running out: see
        :class:`ApprovalResult`. Other failures raise as usual.
        """
        try:
            await self._http.call(
                "waitForApproval",
                "POST",
                f"{self._base}/agreements/{agreement_id}/wait",
                params={"timeout": wait},
                safe=True,
                long_poll=wait,
            )
        except RequestTimeout:
            result = ApprovalResult(False, timed_out=True)
        except Gone as exc:
            result = ApprovalResult(False, message=exc.message)
        else:
            return ApprovalResult(True)
        await trio.lowlevel.checkpoint()  # the failed call checkpointed; say so
        return result

    async def cancel_agreement(self, agreement_id: str, reason: Reason | None = None) -> None:
        """Withdraw an agreement the provider has not approved yet."""
        await self._http.call(
            "cancelAgreement",
            "POST",
            f"{self._base}/agreements/{agreement_id}/cancel",
            body=_reason_body(reason),
        )

    async def terminate_agreement(self, agreement_id: str, reason: Reason | None = None) -> None:
        """End an approved agreement with a reason (``golem.requestor.code`` in its extras).

        Retried; a repeat that finds it already terminated (410) counts as done.
        """
        await self._http.call(
            "terminateAgreement",
            "POST",
            f"{self._base}/agreements/{agreement_id}/terminate",
            body=_reason_body(reason),
            safe=True,
            gone_ok=True,
        )

    async def get_terminate_agreement_reason(self, agreement_id: str) -> AgreementTerminationReason:
        """Who terminated the agreement, and why. The daemon serves this as ``GET`` (the spec
        says ``POST``)."""
        result: AgreementTerminationReason = await self._http.call_json(
            "getTerminateAgreementReason",
            "GET",
            f"{self._base}/agreements/{agreement_id}/terminate/reason",
            AgreementTerminationReason,
            safe=True,
        )
        return result

    async def collect_agreement_events(
        self,
        *,
        wait: float = 5.0,
        after_timestamp: dt.datetime | None = None,
        max_events: int | None = None,
        app_session_id: str | None = None,
    ) -> list[AgreementEvent]:
        """Long-poll agreement events newer than ``after_timestamp`` (oldest first).

        Events are persistent: pass the last seen ``event_date`` to move on.
        """
        params = {
            "timeout": wait,
            "afterTimestamp": (
                None if after_timestamp is None else format_timestamp(after_timestamp)
            ),
            "maxEvents": max_events,
            "appSessionId": app_session_id,
        }
        result: list[AgreementEvent] = await self._http.call_json(
            "collectAgreementEvents",
            "GET",
            f"{self._base}/agreementEvents",
            list[AgreementEvent],
            params=params,
            safe=True,
            long_poll=wait,
            retry_408=True,
        )
        return result
