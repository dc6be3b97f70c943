"""Helpers shared by LocalNet's tests."""

from __future__ import annotations

import datetime as dt

from golem_trio.localnet.emulator import MarketState

_SUBNET = {"golem.node.debug.subnet": "public"}
_CONSTRAINTS = "(golem.node.debug.subnet=public)"


async def negotiate_agreement(
    market: MarketState,
    requestor: str,
    provider: str,
    *,
    valid_to: dt.datetime,
    app_session_id: str | None = "app-1",
    provider_session_id: str | None = "prov-1",
    approve: bool = True,
    unsubscribe: bool = False,
) -> str:
    """One agreement negotiated through the market's own methods: confirmed, and approved
    unless ``approve`` is false. ``unsubscribe`` withdraws the demand and offer afterwards."""
    demand_body = {
        "properties": {**_SUBNET, "golem.com.payment.chosen-platform": "erc20-holesky-tglm"},
        "constraints": _CONSTRAINTS,
    }
    offer_body = {"properties": dict(_SUBNET), "constraints": _CONSTRAINTS}
    demand_id = market.subscribe_demand(requestor, demand_body)
    offer_id = market.subscribe_offer(provider, offer_body)
    (initial,) = await market.collect_offers(requestor, demand_id, 1, None)
    market.counter_proposal_demand(
        requestor, demand_id, initial["proposal"]["proposalId"], demand_body
    )
    (ours,) = await market.collect_demands(provider, offer_id, 1, None)
    market.counter_proposal_offer(provider, offer_id, ours["proposal"]["proposalId"], offer_body)
    (draft,) = await market.collect_offers(requestor, demand_id, 1, None)
    agreement_id = market.create_agreement(
        requestor,
        {"proposalId": draft["proposal"]["proposalId"], "validTo": valid_to.isoformat()},
    )
    market.confirm_agreement(requestor, agreement_id, app_session_id)
    if approve:
        market.approve_agreement(provider, agreement_id, provider_session_id)
    if unsubscribe:
        market.unsubscribe_demand(requestor, demand_id)
        market.unsubscribe_offer(provider, offer_id)
    return agreement_id
