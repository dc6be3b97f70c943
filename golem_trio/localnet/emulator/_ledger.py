"""The ledger: everything that happened on a LocalNet, for tests and benchmarks to check.

:func:`ledger` reads it in Python; :func:`ledger_routes` serves the same JSON at
``GET /localnet/ledger``, LocalNet's own control API (not a daemon API: it answers loopback
clients only, and only with an app key of the network).
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any, Protocol

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._activity import ActivityState
from ._core import Daemon
from ._http import control_key_refusal, json_response
from ._market import Agreement, MarketState, format_time
from ._payment import PaymentState
from ._vpn import VpnState

__all__ = ["LEDGER_PATH", "LedgerSource", "ledger", "ledger_routes"]

Json = dict[str, Any]

#: Where the ledger is served.
LEDGER_PATH = "/localnet/ledger"

#: Agreement events whose reason says why an agreement ended without being terminated.
_ENDING_EVENTS = ("AgreementRejectedEvent", "AgreementCancelledEvent")


class LedgerSource(Protocol):
    """What the ledger reads: a :class:`~golem_trio.localnet.LocalNet` has it."""

    @property
    def daemon(self) -> Daemon: ...

    @property
    def market(self) -> MarketState: ...

    @property
    def activity(self) -> ActivityState: ...

    @property
    def payment(self) -> PaymentState: ...

    @property
    def vpn(self) -> VpnState: ...


def ledger(net: LedgerSource) -> Json:
    """Everything that happened on ``net``, as plain JSON-able data.

    Every entry has an ``id``; lists are in creation order. Money is a decimal string, times
    are RFC 3339 (virtual time), as the daemon writes them.

    * ``time``: the network's current (virtual) time.
    * ``agreements``: ``id``, ``providerId``, ``requestorId``, ``appSessionId`` (the session
      the requestor confirmed it under, ``null`` for none), ``state``, ``terminator``
      (``"Requestor"``, ``"Provider"`` or ``null``), ``reason`` (why it ended: the termination
      reason, or the rejection or cancellation reason; ``null`` if none was given),
      ``approvedDate`` (``null`` if never approved).
    * ``activities``: ``id``, ``agreementId``, ``providerId``, ``state``.
    * ``debitNotes``: ``id``, ``agreementId``, ``activityId``, ``totalAmountDue``, ``payable``,
      ``status``, ``acceptRequests``, ``rejectRequests``, ``honest``.
    * ``invoices``: ``id``, ``agreementId``, ``amount``, ``status``, ``acceptRequests``,
      ``rejectRequests``, ``honest``.
      ``acceptRequests`` lists the allocation named by each accept request the requestor
      sent for the document (answered or refused), ``rejectRequests`` counts its reject
      requests: who touched the document.
    * ``allocations``: ``id``, ``totalAmount``, ``spentAmount``, ``released``.
    * ``payments``: ``id``, ``payerId``, ``payeeId``, ``amount``.
    * ``networks``: ``id``, ``ip``, ``mask``, ``gateway``, ``ownerId``, ``removed``, ``nodes``.

    ``honest`` is ``false`` for a document the provider falsified on purpose (a fault), so a
    test can tell whether the requestor accepted what it should have refused.

    States are as the daemon would answer them now: agreements past their ``validTo`` read as
    expired and allocations past their timeout as released.
    """
    payment = net.payment.ledger()
    return {
        "time": format_time(net.daemon.clock.now()),
        "agreements": _agreements(net.market),
        "activities": [_with_id(entry, "id") for entry in net.activity.ledger()],
        "debitNotes": [
            _document(entry, "debitNoteId", net.payment.debit_notes)
            for entry in payment["debitNotes"]
        ],
        "invoices": [
            _document(entry, "invoiceId", net.payment.invoices) for entry in payment["invoices"]
        ],
        "allocations": [_with_id(entry, "allocationId") for entry in payment["allocations"]],
        "payments": [_with_id(entry, "paymentId") for entry in payment["payments"]],
        "networks": net.vpn.ledger(),
    }


def ledger_routes(net: LedgerSource) -> list[Route]:
    """``GET /localnet/ledger`` (``localnetLedger``): :func:`ledger` as JSON, to loopback
    clients only (403 otherwise) that send an app key of the network (the daemon's plain-text
    401 otherwise)."""

    async def get_ledger(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        if not _from_loopback(request):
            return json_response({"message": "the LocalNet ledger answers loopback only"}, 403)
        refusal = control_key_refusal(net.daemon, request)
        if refusal is not None:
            return refusal
        return json_response(ledger(net))

    return [Route(LEDGER_PATH, get_ledger, methods=["GET"], name="localnetLedger")]


def _agreements(market: MarketState) -> list[Json]:
    endings: dict[str, Json] = {}
    for record in market.events.after(None):
        reason = record.json.get("reason")
        if record.json.get("eventType") in _ENDING_EVENTS and isinstance(reason, dict):
            endings[record.agreement.agreement_id] = reason
    return [_agreement(market, agreement, endings) for agreement in market.agreements.values()]


def _agreement(market: MarketState, agreement: Agreement, endings: dict[str, Json]) -> Json:
    # Through the market's own lookup, so that an agreement past its validTo reads as expired.
    market.agreement(agreement.requestor_id, agreement.agreement_id)
    reason: Any = None
    if agreement.termination is not None:
        reason = agreement.termination.get("reason")
    else:
        reason = endings.get(agreement.agreement_id)
    return {
        "id": agreement.agreement_id,
        "providerId": agreement.provider_id,
        "requestorId": agreement.requestor_id,
        "appSessionId": agreement.app_session_id,
        "state": agreement.state.value,
        "terminator": agreement.terminator,
        "reason": copy.deepcopy(reason),
        "approvedDate": (
            None if agreement.approved_date is None else format_time(agreement.approved_date)
        ),
    }


def _with_id(entry: Json, key: str) -> Json:
    """``entry`` with its ``key`` renamed ``id`` and put first."""
    rest = {name: value for name, value in entry.items() if name != key}
    return {"id": entry[key], **rest}


def _document(entry: Json, key: str, documents: dict[str, Any]) -> Json:
    """A debit note or invoice entry, with ``honest``: the entry's own, else the document's
    ``honest`` attribute, else ``true``."""
    result = _with_id(entry, key)
    honest = result.get("honest")
    if honest is None:
        honest = getattr(documents.get(result["id"]), "honest", True)
    result["honest"] = bool(honest)
    return result


def _from_loopback(request: Request) -> bool:
    client = request.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        # Not an address: an in-process client (``ASGITransport`` names none) or a socket path.
        return client.host in ("", "localhost", "testclient")
