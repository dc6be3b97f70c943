"""Routes of the emulated market API (``/market-api/v1``), both sides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._core import Daemon
from ._http import (
    authenticate,
    empty_response,
    json_body,
    json_response,
    query_float,
    query_int,
    query_time,
)
from ._market import MarketState

__all__ = ["market_routes"]

PREFIX = "/market-api/v1"


def market_routes(daemon: Daemon, market: MarketState) -> list[Route]:
    """The market API's routes, each named after its OpenAPI ``operationId``."""

    async def subscribe_demand(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.subscribe_demand(me.node_id, await json_body(request)), 201)

    async def get_demands(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.list_demands(me.node_id))

    async def unsubscribe_demand(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.unsubscribe_demand(me.node_id, request.path_params["sub"])
        return empty_response(204)

    async def collect_offers(request: Request) -> Response:
        me = authenticate(daemon, request)
        events = await market.collect_offers(
            me.node_id,
            request.path_params["sub"],
            query_float(request, "timeout", 5.0),
            query_int(request, "maxEvents"),
        )
        return json_response(events)

    async def get_proposal_offer(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        return json_response(market.get_proposal_offer(me.node_id, p["sub"], p["prop"]))

    async def counter_proposal_demand(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        body = await json_body(request)
        return json_response(market.counter_proposal_demand(me.node_id, p["sub"], p["prop"], body))

    async def reject_proposal_offer(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        market.reject_proposal_offer(me.node_id, p["sub"], p["prop"], await json_body(request))
        return empty_response(204)

    async def subscribe_offer(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.subscribe_offer(me.node_id, await json_body(request)), 201)

    async def get_offers(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.list_offers(me.node_id))

    async def unsubscribe_offer(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.unsubscribe_offer(me.node_id, request.path_params["sub"])
        return empty_response(204)

    async def collect_demands(request: Request) -> Response:
        me = authenticate(daemon, request)
        events = await market.collect_demands(
            me.node_id,
            request.path_params["sub"],
            query_float(request, "timeout", 5.0),
            query_int(request, "maxEvents"),
        )
        return json_response(events)

    async def get_proposal_demand(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        return json_response(market.get_proposal_demand(me.node_id, p["sub"], p["prop"]))

    async def counter_proposal_offer(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        body = await json_body(request)
        return json_response(market.counter_proposal_offer(me.node_id, p["sub"], p["prop"], body))

    async def reject_proposal_demand(request: Request) -> Response:
        me = authenticate(daemon, request)
        p = request.path_params
        market.reject_proposal_demand(me.node_id, p["sub"], p["prop"], await json_body(request))
        return empty_response(204)

    async def create_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.create_agreement(me.node_id, await json_body(request)))

    async def list_agreements(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.list_agreements(me.node_id, request.query_params))

    async def get_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.agreement(me.node_id, request.path_params["agr"]).json())

    async def confirm_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.confirm_agreement(
            me.node_id, request.path_params["agr"], request.query_params.get("appSessionId")
        )
        return empty_response(204)

    async def wait_for_approval(request: Request) -> Response:
        me = authenticate(daemon, request)
        wait = query_float(request, "timeout", 5.0)
        await market.wait_for_approval(me.node_id, request.path_params["agr"], wait)
        return empty_response(204)

    async def cancel_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.cancel_agreement(me.node_id, request.path_params["agr"], await json_body(request))
        return empty_response(200)

    async def terminate_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        market.terminate_agreement(me.node_id, request.path_params["agr"], body)
        return empty_response(200)

    async def terminate_reason(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(market.termination_reason(me.node_id, request.path_params["agr"]))

    async def approve_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.approve_agreement(
            me.node_id, request.path_params["agr"], request.query_params.get("appSessionId")
        )
        return empty_response(204)

    async def reject_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        market.reject_agreement(me.node_id, request.path_params["agr"], await json_body(request))
        return empty_response(204)

    async def collect_agreement_events(request: Request) -> Response:
        me = authenticate(daemon, request)
        events = await market.collect_agreement_events(
            me.node_id,
            query_float(request, "timeout", 5.0),
            query_time(request, "afterTimestamp"),
            query_int(request, "maxEvents"),
            request.query_params.get("appSessionId"),
        )
        return json_response(events)

    p = PREFIX
    return [
        Route(f"{p}/demands", subscribe_demand, methods=["POST"], name="subscribeDemand"),
        Route(f"{p}/demands", get_demands, methods=["GET"], name="getDemands"),
        Route(
            f"{p}/demands/{{sub}}", unsubscribe_demand, methods=["DELETE"], name="unsubscribeDemand"
        ),
        Route(f"{p}/demands/{{sub}}/events", collect_offers, methods=["GET"], name="collectOffers"),
        Route(
            f"{p}/demands/{{sub}}/proposals/{{prop}}",
            get_proposal_offer,
            methods=["GET"],
            name="getProposalOffer",
        ),
        Route(
            f"{p}/demands/{{sub}}/proposals/{{prop}}",
            counter_proposal_demand,
            methods=["POST"],
            name="counterProposalDemand",
        ),
        Route(
            f"{p}/demands/{{sub}}/proposals/{{prop}}/reject",
            reject_proposal_offer,
            methods=["POST"],
            name="rejectProposalOffer",
        ),
        Route(f"{p}/offers", subscribe_offer, methods=["POST"], name="subscribeOffer"),
        Route(f"{p}/offers", get_offers, methods=["GET"], name="getOffers"),
        Route(
            f"{p}/offers/{{sub}}", unsubscribe_offer, methods=["DELETE"], name="unsubscribeOffer"
        ),
        Route(
            f"{p}/offers/{{sub}}/events", collect_demands, methods=["GET"], name="collectDemands"
        ),
        Route(
            f"{p}/offers/{{sub}}/proposals/{{prop}}",
            get_proposal_demand,
            methods=["GET"],
            name="getProposalDemand",
        ),
        Route(
            f"{p}/offers/{{sub}}/proposals/{{prop}}",
            counter_proposal_offer,
            methods=["POST"],
            name="counterProposalOffer",
        ),
        Route(
            f"{p}/offers/{{sub}}/proposals/{{prop}}/reject",
            reject_proposal_demand,
            methods=["POST"],
            name="rejectProposalDemand",
        ),
        Route(f"{p}/agreements", create_agreement, methods=["POST"], name="createAgreement"),
        Route(f"{p}/agreements", list_agreements, methods=["GET"], name="listAgreements"),
        Route(f"{p}/agreements/{{agr}}", get_agreement, methods=["GET"], name="getAgreement"),
        Route(
            f"{p}/agreements/{{agr}}/confirm",
            confirm_agreement,
            methods=["POST"],
            name="confirmAgreement",
        ),
        Route(
            f"{p}/agreements/{{agr}}/wait",
            wait_for_approval,
            methods=["POST"],
            name="waitForApproval",
        ),
        Route(
            f"{p}/agreements/{{agr}}/cancel",
            cancel_agreement,
            methods=["POST"],
            name="cancelAgreement",
        ),
        Route(
            f"{p}/agreements/{{agr}}/terminate",
            terminate_agreement,
            methods=["POST"],
            name="terminateAgreement",
        ),
        Route(
            f"{p}/agreements/{{agr}}/terminate/reason",
            terminate_reason,
            methods=["GET"],
            name="getTerminateAgreementReason",
        ),
        Route(
            f"{p}/agreements/{{agr}}/approve",
            approve_agreement,
            methods=["POST"],
            name="approveAgreement",
        ),
        Route(
            f"{p}/agreements/{{agr}}/reject",
            reject_agreement,
            methods=["POST"],
            name="rejectAgreement",
        ),
        Route(
            f"{p}/agreementEvents",
            collect_agreement_events,
            methods=["GET"],
            name="collectAgreementEvents",
        ),
    ]
