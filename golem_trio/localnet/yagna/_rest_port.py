"""The provider side of a real yagna daemon, over its REST API, as a :class:`ProviderPort`.

:class:`RestProviderPort` lets the provider model of :mod:`golem_trio.localnet.providers`
(``ProviderAgent`` and its ``AgreementLife``) drive a real daemon with a provider app key,
exactly as it drives the emulator through ``_InProcessPort``. Every method is one or a few
REST calls:

=======================  ===================================================================
Method                   Daemon calls (yagna 0.17.6) and differences from the emulator
=======================  ===================================================================
``subscribe_offer``      ``POST /market-api/v1/offers`` -> 201 ``"<offer id>"``.
``unsubscribe_offer``    ``DELETE /market-api/v1/offers/{id}`` -> 204. Unknown offer: 404;
                         already withdrawn: **410** (the emulator answers 404 for both).
``collect_demands``      ``GET /market-api/v1/offers/{id}/events?timeout=&maxEvents=100``.
                         The events are passed on as the daemon sends them; they have the
                         emulator's shapes (seen: ``ProposalEvent`` with a ``Draft`` proposal
                         ``P-…``, ``AgreementEvent`` with a ``Pending`` agreement; the agent
                         skips other kinds). :class:`OfferGone` on 404/410. The
                         daemon answers 404 only to a poll in flight when the offer goes;
                         a later poll on a withdrawn offer answers ``200 []``, so after an
                         empty poll ``GET /market-api/v1/offers`` tells whether the offer
                         still exists (the emulator answers 404 at once).
``counter_proposal``     ``POST /market-api/v1/offers/{id}/proposals/{proposal id}`` -> 200
                         ``"P-…"``. On a withdrawn offer: **400** (emulator: 404).
``reject_proposal``      ``POST …/proposals/{proposal id}/reject`` with the reason -> 204.
                         Unknown proposal: **500** ``Proposal [...] not found …`` (emulator:
                         404), raised as :class:`DaemonNotFound`.
``approve_agreement``    ``POST /market-api/v1/agreements/{id}/approve?appSessionId=&timeout=``
                         -> 204. Blocks until the requestor's daemon acknowledges (408, per
                         the spec, when not within ``approve_wait``; the emulator never
                         blocks). Not Pending: 410 (as the
                         emulator), e.g. ``Can't update Agreement state from Approved to
                         Approving.``
``reject_agreement``     ``POST /market-api/v1/agreements/{id}/reject`` -> 204; not Pending: 410.
``agreement_state``      ``GET /market-api/v1/agreements/{id}`` -> ``state``. With both
                         identities on one daemon the daemon keeps two copies of an
                         agreement and may answer with either (their states agree).
``wait_ended``           Woken by :meth:`RestProviderPort.watch_ends`, which follows ``GET
                         /market-api/v1/agreementEvents?afterTimestamp=&appSessionId=&timeout=``
                         (one long poll for the identity): an ``AgreementTerminatedEvent``
                         (or a cancelled or rejected agreement) ends the agreement's wait.
                         Without the watch, :attr:`~RestProviderPort.tells_ends` is false and
                         the agent looks at ``agreement_state`` every tick instead.
``terminate_agreement``  ``POST /market-api/v1/agreements/{id}/terminate`` -> 200. 410
                         (``Can't update Agreement state from Terminated to Terminated.``) is
                         a no-op, as in the emulator.
``activities``           ``GET /activity-api/v1/activity?agreementId=`` -> ``["<id>", …]``,
                         then ``GET /activity-api/v1/activity/{id}/state`` per activity
                         (``{"state": [current, next]}``). Unknown agreement: 404, answered
                         as ``[]`` (the emulator answers ``[]`` for any agreement with none).
``usage``                ``GET /activity-api/v1/activity/{id}/usage`` -> ``currentUsage``;
                         the daemon omits it until an exe-unit reports usage (over the
                         service bus), which is read as ``[]``. Unknown activity: 500 ``DAO
                         error: Not found…`` (as the emulator), raised as
                         :class:`DaemonNotFound`.
``send_debit_note``      ``POST /payment-api/v1/debitNotes`` -> 201, then ``POST
                         …/debitNotes/{id}/send?timeout=`` -> 200 ``null`` (no payment driver
                         or chain needed). Unknown activity: **500** ``External service error:
                         … Not found: agreement id for activity: …`` (emulator: 400 ``Activity
                         not found``), raised as :class:`DaemonNotFound`. The daemon takes notes
                         lower than the previous one and notes for terminated activities.
                         ``honest=False`` is recorded in :attr:`RestProviderPort.documents`
                         (the emulator marks its own record). ``unknown_agreement``: the daemon
                         derives a note's agreement from its activity, so a note for an
                         agreement the requestor never made cannot be issued; the attempt (for
                         an activity id nobody created) is refused as above and recorded with
                         status ``REFUSED`` under a local id (``refused-…``), which is returned
                         (the emulator issues and sends a forged note).
``debit_note_status``    ``GET /payment-api/v1/debitNotes/{id}`` -> ``status`` (unknown: 404
                         ``{"message": null}``); ``REFUSED`` for a refused forgery (local).
``send_invoice``         ``POST /payment-api/v1/invoices`` -> 201, then ``POST
                         …/invoices/{id}/send?timeout=`` -> 200 ``null``; no driver or chain
                         needed. An amount below the agreement's latest debit note is refused:
                         **400** ``Requested amount for agreement cannot be lowered. …`` (the
                         emulator takes it). Several invoices for one agreement are taken, as
                         in the emulator. Unknown agreement: 400 ``Agreement not found: …``.
=======================  ===================================================================

Errors: a refusal by the daemon is a :class:`DaemonRefused` subclass chosen by status
(:class:`DaemonNotFound` also for the daemon's ``500 … Not found`` answers), carrying the
status, the daemon's message and the call; a connection failure is
:class:`DaemonUnreachable`. Both are :class:`RestPortError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import attrs
import httpx2
import trio

from ..providers import OfferGone

__all__ = [
    "DaemonBadRequest",
    "DaemonConflict",
    "DaemonGone",
    "DaemonNotFound",
    "DaemonRefused",
    "DaemonServerError",
    "DaemonTimeout",
    "DaemonUnauthorized",
    "DaemonUnreachable",
    "RestPortError",
    "RestProviderPort",
    "SentDocument",
    "provider_client",
]

Json = dict[str, Any]

MARKET: Final = "/market-api/v1"
ACTIVITY: Final = "/activity-api/v1"
PAYMENT: Final = "/payment-api/v1"
#: Seconds added to a long poll's own wait for the HTTP read timeout.
_READ_SLACK: Final = 10.0
#: The HTTP timeout of calls that do not block on the daemon's side.
_PLAIN_TIMEOUT: Final = 15.0
#: The status a refused forged debit note is recorded with.
REFUSED: Final = "REFUSED"
#: How long one poll of the identity's agreement events waits (the daemon's default).
ENDS_WAIT: Final = 5.0
#: Seconds between polls of the agreement events while the daemon cannot be reached.
ENDS_RETRY: Final = 1.0
#: Agreement events after which an approved agreement is over.
_ENDING_EVENTS: Final = frozenset(
    {"AgreementTerminatedEvent", "AgreementCancelledEvent", "AgreementRejectedEvent"}
)

logger = logging.getLogger("golem_trio.localnet.yagna")


class RestPortError(Exception):
    """A provider REST call failed."""


class DaemonUnreachable(RestPortError):
    """The daemon could not be reached, or did not answer in time."""


class DaemonRefused(RestPortError):
    """The daemon answered a provider call with an error status.

    ``status`` is the HTTP status, ``message`` the daemon's ``{"message": …}`` (or its plain
    text; ``None`` when it sent none), ``method`` and ``path`` the call.
    """

    def __init__(self, status: int, message: str | None, method: str, path: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.path = path


class DaemonBadRequest(DaemonRefused):
    """400: the request is malformed or not allowed in the object's state."""


class DaemonUnauthorized(DaemonRefused):
    """401: the app key is missing or unknown."""


class DaemonNotFound(DaemonRefused):
    """404, or a 500 whose message says ``Not found`` (the daemon's activity and payment
    services answer unknown activities that way)."""


class DaemonTimeout(DaemonRefused):
    """408 or 504: the daemon (or the other side) did not answer within the call's wait."""


class DaemonConflict(DaemonRefused):
    """409: the object is not in a state the call allows yet."""


class DaemonGone(DaemonRefused):
    """410: the object's state has moved on for good (withdrawn, terminated, decided)."""


class DaemonServerError(DaemonRefused):
    """Any other 5xx."""


_BY_STATUS: Final[Mapping[int, type[DaemonRefused]]] = {
    400: DaemonBadRequest,
    401: DaemonUnauthorized,
    404: DaemonNotFound,
    408: DaemonTimeout,
    409: DaemonConflict,
    410: DaemonGone,
    504: DaemonTimeout,
}


def _refusal(status: int, message: str | None, method: str, path: str) -> DaemonRefused:
    kind = _BY_STATUS.get(status)
    if kind is None:
        if status >= 500 and message is not None and "not found" in message.lower():
            kind = DaemonNotFound
        elif status >= 500:
            kind = DaemonServerError
        else:
            kind = DaemonRefused
    return kind(status, message, method, path)


def _message(response: httpx2.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text or None
    if isinstance(body, dict):
        message = body.get("message", body.get("detail"))
        return None if message is None else str(message)
    return str(body)


def _rfc3339(value: dt.datetime) -> str:
    """RFC 3339 UTC, as the daemon writes timestamps."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.define
class SentDocument:
    """A debit note or invoice this port issued, as the port knows it.

    ``honest`` is ``False`` for a document falsified on purpose (a fault); ``status`` is
    ``REFUSED`` when the daemon would not issue it (``document_id`` is then local).
    """

    kind: str
    document_id: str
    agreement_id: str | None
    activity_id: str | None
    amount: Decimal
    honest: bool
    status: str | None = None
    refusal: str | None = None


def provider_client(api_url: str, app_key: str) -> httpx2.AsyncClient:
    """An ``httpx2`` client for :class:`RestProviderPort` (and the ledger's reads): base URL
    ``api_url`` (the daemon's REST root), the identity's app key, and no proxy from the
    environment. The caller closes it."""
    return httpx2.AsyncClient(
        base_url=api_url.rstrip("/"),
        headers={"Authorization": f"Bearer {app_key}"},
        timeout=httpx2.Timeout(_PLAIN_TIMEOUT),
        trust_env=False,
    )


class RestProviderPort:
    """:class:`ProviderPort` over a real daemon's provider REST API.

    ``client`` has the daemon's REST root as its base URL and sends the provider's app key
    (see :func:`provider_client`); the caller owns and closes it. ``node_id`` is the
    provider's identity. ``app_session_id`` tags the approvals (the provider's activity
    events are read with it); ``approve_wait`` and ``ack_wait`` are the seconds the daemon
    may wait for the requestor to acknowledge an approval and a sent document.
    """

    def __init__(
        self,
        client: httpx2.AsyncClient,
        node_id: str,
        *,
        app_session_id: str | None = None,
        approve_wait: float = 10.0,
        ack_wait: float = 15.0,
    ) -> None:
        self._client = client
        self.node_id = node_id
        self.app_session_id = app_session_id or f"golem-trio-provider-{node_id[2:10]}"
        self.approve_wait = approve_wait
        self.ack_wait = ack_wait
        #: Every debit note and invoice issued through this port, by id (what the ledger
        #: reads for ``honest``).
        self.documents: dict[str, SentDocument] = {}
        #: Whether :meth:`wait_ended` tells when an agreement ends: while :meth:`watch_ends`
        #: runs. Otherwise the agent looks at each agreement's state every tick.
        self.tells_ends = False
        #: Agreements whose end was seen or is awaited; each event is set when it ends (kept:
        #: one per agreement, as the daemon keeps the agreements).
        self._ends: dict[str, trio.Event] = {}

    def __repr__(self) -> str:
        return f"<RestProviderPort {self.node_id} at {self._client.base_url}>"

    # --- plumbing --------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | float | int] | None = None,
        wait: float = 0.0,
    ) -> Any:
        """One call; the parsed JSON body (``None`` when empty) or a typed error. ``wait`` is
        how long the daemon itself may block (added to the read timeout)."""
        try:
            response = await self._client.request(
                method,
                path,
                json=body,
                params=params,
                timeout=httpx2.Timeout(_PLAIN_TIMEOUT, read=_PLAIN_TIMEOUT + wait + _READ_SLACK),
            )
        except httpx2.TransportError as exc:
            raise DaemonUnreachable(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 400:
            raise _refusal(response.status_code, _message(response), method, path)
        if not response.content.strip():
            return None
        return response.json()

    # --- market ----------------------------------------------------------------------------------

    async def subscribe_offer(self, properties: Json, constraints: str) -> str:
        offer_id = await self._call(
            "POST", f"{MARKET}/offers", body={"properties": properties, "constraints": constraints}
        )
        return str(offer_id)

    async def unsubscribe_offer(self, offer_id: str) -> None:
        await self._call("DELETE", f"{MARKET}/offers/{offer_id}")

    async def _offer_listed(self, offer_id: str) -> bool:
        offers = await self._call("GET", f"{MARKET}/offers")
        return any(
            isinstance(offer, dict) and offer.get("offerId") == offer_id for offer in offers or []
        )

    async def collect_demands(self, offer_id: str, wait: float) -> list[Json]:
        try:
            events = await self._call(
                "GET",
                f"{MARKET}/offers/{offer_id}/events",
                params={"timeout": wait, "maxEvents": 100},
                wait=wait,
            )
        except (DaemonNotFound, DaemonGone) as exc:
            raise OfferGone(offer_id) from exc
        if not events and not await self._offer_listed(offer_id):
            raise OfferGone(offer_id)
        return [event for event in events or [] if isinstance(event, dict)]

    async def counter_proposal(
        self, offer_id: str, proposal_id: str, properties: Json, constraints: str
    ) -> str:
        draft_id = await self._call(
            "POST",
            f"{MARKET}/offers/{offer_id}/proposals/{proposal_id}",
            body={"properties": properties, "constraints": constraints},
        )
        return str(draft_id)

    async def reject_proposal(self, offer_id: str, proposal_id: str, reason: Json) -> None:
        await self._call(
            "POST", f"{MARKET}/offers/{offer_id}/proposals/{proposal_id}/reject", body=reason
        )

    async def approve_agreement(self, agreement_id: str) -> None:
        await self._call(
            "POST",
            f"{MARKET}/agreements/{agreement_id}/approve",
            params={"appSessionId": self.app_session_id, "timeout": self.approve_wait},
            wait=self.approve_wait,
        )

    async def reject_agreement(self, agreement_id: str, reason: Json) -> None:
        await self._call("POST", f"{MARKET}/agreements/{agreement_id}/reject", body=reason)

    async def agreement_state(self, agreement_id: str) -> str:
        agreement = await self._call("GET", f"{MARKET}/agreements/{agreement_id}")
        return str(agreement["state"])

    def _end_of(self, agreement_id: str) -> trio.Event:
        end = self._ends.get(agreement_id)
        if end is None:
            end = self._ends[agreement_id] = trio.Event()
        return end

    async def wait_ended(self, agreement_id: str) -> None:
        """Return once :meth:`watch_ends` has seen the agreement end (whenever that was)."""
        await self._end_of(agreement_id).wait()

    async def watch_ends(
        self,
        *,
        wait: float = ENDS_WAIT,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Follow this identity's agreement events until cancelled, so that
        :meth:`wait_ended` wakes as soon as an agreement ends (the provider then invoices it
        at once instead of at its next look). Started once its cursor is set; a daemon that
        cannot be reached or refuses a poll is tried again every :data:`ENDS_RETRY` seconds
        (the agent's own looks at its agreements still find an end meanwhile).

        Cancellation: a checkpoint; :attr:`tells_ends` is false again once it returns."""
        # Agreement events persist: those of agreements ended before the watch began are
        # read too, harmlessly (nobody waits on them, and the first wait finds them set).
        after = _rfc3339(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2))
        self.tells_ends = True
        task_status.started()
        try:
            while True:
                try:
                    events = await self._call(
                        "GET",
                        f"{MARKET}/agreementEvents",
                        params={
                            "afterTimestamp": after,
                            "appSessionId": self.app_session_id,
                            "timeout": wait,
                            "maxEvents": 100,
                        },
                        wait=wait,
                    )
                except RestPortError as exc:
                    logger.warning("agreement events of %s: %s", self.node_id, exc)
                    await trio.sleep(ENDS_RETRY)
                    continue
                for event in events or []:
                    if not isinstance(event, dict) or not isinstance(event.get("eventDate"), str):
                        continue
                    # The daemon's own timestamp goes back verbatim: no precision is lost.
                    after = event["eventDate"]
                    agreement_id = event.get("agreementId")
                    if event.get("eventType") in _ENDING_EVENTS and isinstance(agreement_id, str):
                        self._end_of(agreement_id).set()
        finally:
            self.tells_ends = False

    async def terminate_agreement(self, agreement_id: str, reason: Json) -> None:
        try:
            await self._call("POST", f"{MARKET}/agreements/{agreement_id}/terminate", body=reason)
        except DaemonGone:
            # Ended in the meantime (by the requestor): nothing is left to end.
            await trio.lowlevel.checkpoint()

    # --- activity --------------------------------------------------------------------------------

    async def activities(self, agreement_id: str) -> list[tuple[str, str]]:
        """``(activity id, state)`` of every activity of the agreement."""
        try:
            ids = await self._call(
                "GET", f"{ACTIVITY}/activity", params={"agreementId": agreement_id}
            )
        except DaemonNotFound:
            await trio.lowlevel.checkpoint()
            return []
        result = []
        for activity_id in ids or []:
            state = await self._call("GET", f"{ACTIVITY}/activity/{activity_id}/state")
            result.append((str(activity_id), str(state["state"][0])))
        return result

    async def usage(self, activity_id: str) -> list[float]:
        usage = await self._call("GET", f"{ACTIVITY}/activity/{activity_id}/usage")
        return [float(x) for x in usage.get("currentUsage") or []]

    # --- payment ---------------------------------------------------------------------------------

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
        fault), ``unknown_agreement`` tries one for an agreement the requestor never made
        (the daemon refuses; see the module's table)."""
        body: Json = {
            "activityId": uuid.uuid4().hex if unknown_agreement else activity_id,
            "totalAmountDue": str(amount),
            "usageCounterVector": usage,
        }
        if payment_due is not None:
            body["paymentDueDate"] = _rfc3339(payment_due)
        if unknown_agreement:
            return await self._forge_debit_note(body, amount)
        note = await self._call("POST", f"{PAYMENT}/debitNotes", body=body)
        note_id = str(note["debitNoteId"])
        self.documents[note_id] = SentDocument(
            "debit-note", note_id, note.get("agreementId"), activity_id, amount, honest
        )
        await self._call(
            "POST",
            f"{PAYMENT}/debitNotes/{note_id}/send",
            params={"timeout": self.ack_wait},
            wait=self.ack_wait,
        )
        return note_id

    async def _forge_debit_note(self, body: Json, amount: Decimal) -> str:
        try:
            note = await self._call("POST", f"{PAYMENT}/debitNotes", body=body)
        except DaemonRefused as exc:
            await trio.lowlevel.checkpoint()
            local_id = f"refused-{uuid.uuid4()}"
            self.documents[local_id] = SentDocument(
                "debit-note",
                local_id,
                None,
                str(body["activityId"]),
                amount,
                honest=False,
                status=REFUSED,
                refusal=f"{exc.status}: {exc.message}",
            )
            return local_id
        # A daemon that does issue it: send it, as the emulator does.
        note_id = str(note["debitNoteId"])
        self.documents[note_id] = SentDocument(
            "debit-note", note_id, note.get("agreementId"), str(body["activityId"]), amount, False
        )
        await self._call(
            "POST",
            f"{PAYMENT}/debitNotes/{note_id}/send",
            params={"timeout": self.ack_wait},
            wait=self.ack_wait,
        )
        return note_id

    async def debit_note_status(self, debit_note_id: str) -> str:
        known = self.documents.get(debit_note_id)
        if known is not None and known.status == REFUSED:
            await trio.lowlevel.checkpoint()
            return REFUSED
        note = await self._call("GET", f"{PAYMENT}/debitNotes/{debit_note_id}")
        return str(note["status"])

    async def send_invoice(
        self,
        agreement_id: str,
        activity_ids: list[str],
        amount: Decimal,
        due: dt.datetime,
        *,
        honest: bool = True,
    ) -> str:
        invoice = await self._call(
            "POST",
            f"{PAYMENT}/invoices",
            body={
                "agreementId": agreement_id,
                "activityIds": activity_ids,
                "amount": str(amount),
                "paymentDueDate": _rfc3339(due),
            },
        )
        invoice_id = str(invoice["invoiceId"])
        self.documents[invoice_id] = SentDocument(
            "invoice", invoice_id, agreement_id, None, amount, honest
        )
        await self._call(
            "POST",
            f"{PAYMENT}/invoices/{invoice_id}/send",
            params={"timeout": self.ack_wait},
            wait=self.ack_wait,
        )
        return invoice_id
