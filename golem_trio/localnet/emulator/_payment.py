"""The emulated payment API: allocations, debit notes, invoices, payments and their events.

Behaviour follows the real daemon 0.17.6 (docs/daemon-notes.md §5, §9, §10):

* Allocations reserve part of a requestor's funds (:attr:`PaymentState.balances`, per address,
  :data:`DEFAULT_BALANCE` when not set); creating one above what is free is a 400
  ``application/problem+json``. Accepting a document charges the allocation the part not yet
  accepted (debit note: ``totalAmountDue`` minus what was accepted for its activity; invoice:
  ``amount`` minus what was accepted for its agreement), and refuses with ``Not enough funds``
  when the allocation cannot cover it. Every accepted debit note is charged, payable or not, as
  the daemon does.
* Money moves only for *payable* debit notes (with ``paymentDueDate``) and invoices: the part of
  the accepted total not yet paid becomes a :class:`Payment`, settled at once (there is no
  chain), and the document becomes ``SETTLED``.
* Debit-note and invoice events are persistent (``afterTimestamp``); each side sees the kinds it
  asks for (headers ``X-Requestor-Events``, ``X-Provider-Events``).

The provider side (issue and send documents, watch their events) is served by methods that
emulated providers call directly: :meth:`PaymentState.issue_debit_note`,
:meth:`PaymentState.send_debit_note`, :meth:`PaymentState.issue_invoice`,
:meth:`PaymentState.send_invoice`, :meth:`PaymentState.collect_debit_note_events`...
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs
import trio

from ._core import Daemon, DaemonError
from ._events import EventLog
from ._market import Agreement, MarketState, format_time

__all__ = [
    "DEFAULT_BALANCE",
    "DEFAULT_PLATFORM",
    "PROVIDER_EVENTS_DEFAULT",
    "REQUESTOR_EVENTS_DEFAULT",
    "Allocation",
    "DebitNote",
    "DocumentStatus",
    "Invoice",
    "Payment",
    "PaymentState",
]

Json = dict[str, Any]
E = TypeVar("E")

#: The platform of allocations created without one (the daemon's testnet default).
DEFAULT_PLATFORM = "erc20-holesky-tglm"
#: Funds of every requestor identity whose balance was not set.
DEFAULT_BALANCE = Decimal(1000)
#: Event kinds each side sees when it does not say (``X-Requestor-Events``, ``X-Provider-Events``).
REQUESTOR_EVENTS_DEFAULT = ("RECEIVED", "CANCELLED")
PROVIDER_EVENTS_DEFAULT = ("ACCEPTED", "REJECTED", "SETTLED", "CANCELLED")

_MAINNETS = ("mainnet", "polygon")
_TESTNETS = ("holesky", "hoodi", "sepolia", "amoy", "goerli", "mumbai")
_REJECTION_REASONS = ("UNSOLICITED_SERVICE", "BAD_SERVICE", "INCORRECT_AMOUNT")


class DocumentStatus(enum.StrEnum):
    ISSUED = "ISSUED"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"


def _amount_text(value: Decimal) -> str:
    """A decimal string, as the daemon writes money (no exponent)."""
    return format(value, "f")


def _decimal(value: object, field: str) -> Decimal:
    """Money from a request: a decimal string or a JSON number; 400 otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DaemonError(400, f"Json deserialize error: invalid type for field `{field}`")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise DaemonError(400, f"Json deserialize error: invalid decimal `{field}`") from None
    if not amount.is_finite():
        raise DaemonError(400, f"Json deserialize error: invalid decimal `{field}`")
    return amount


def _time(value: object, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise DaemonError(400, f"Json deserialize error: invalid type for field `{field}`")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DaemonError(400, f"Json deserialize error: invalid date `{field}`") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise DaemonError(400, "Json deserialize error: expected a JSON object")
    return body


def _required(body: Mapping[str, Any], field: str) -> Any:
    if body.get(field) is None:
        raise DaemonError(400, f"Json deserialize error: missing field `{field}`")
    return body[field]


@attrs.define(eq=False)
class Allocation:
    allocation_id: str
    owner_id: str
    address: str
    platform: str
    total: Decimal
    timestamp: dt.datetime
    timeout: dt.datetime | None = None
    make_deposit: bool = False
    extend_timeout: int | None = None
    deposit: Json | None = None
    updated: dt.datetime | None = None
    spent: Decimal = Decimal(0)
    released: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.total - self.spent

    def json(self) -> Json:
        body: Json = {
            "allocationId": self.allocation_id,
            "address": self.address,
            "paymentPlatform": self.platform,
            "totalAmount": _amount_text(self.total),
            "spentAmount": _amount_text(self.spent),
            "remainingAmount": _amount_text(self.remaining),
            "timestamp": format_time(self.timestamp),
            "makeDeposit": self.make_deposit,
            "createdTs": format_time(self.timestamp),
            "updatedTs": format_time(self.updated or self.timestamp),
        }
        if self.timeout is not None:
            body["timeout"] = format_time(self.timeout)
        if self.extend_timeout is not None:
            body["extendTimeout"] = self.extend_timeout
        if self.deposit is not None:
            body["deposit"] = self.deposit
        return body


@attrs.define(eq=False, kw_only=True)
class _Document:
    """What debit notes and invoices share."""

    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    platform: str
    timestamp: dt.datetime
    agreement: Agreement
    status: DocumentStatus = DocumentStatus.ISSUED
    #: False for a document its provider falsified on purpose (a LocalNet fault).
    honest: bool = True
    #: The allocation named by each accept request that reached the document, in order, and
    #: how many reject requests reached it (whatever the answer): who touched it, for the
    #: ledger (an application accepts from its own allocation).
    accept_requests: list[str] = attrs.Factory(list)
    reject_requests: int = 0

    @property
    def agreement_id(self) -> str:
        return self.agreement.agreement_id

    def _common(self) -> Json:
        return {
            "issuerId": self.issuer_id,
            "recipientId": self.recipient_id,
            "payeeAddr": self.payee_addr,
            "payerAddr": self.payer_addr,
            "paymentPlatform": self.platform,
            "timestamp": format_time(self.timestamp),
            "agreementId": self.agreement_id,
        }

    def visible_to(self, node_id: str) -> bool:
        """The issuer sees its documents at once; the recipient once they were sent."""
        if node_id == self.issuer_id:
            return True
        return node_id == self.recipient_id and self.status is not DocumentStatus.ISSUED


@attrs.define(eq=False, kw_only=True)
class DebitNote(_Document):
    debit_note_id: str
    activity_id: str
    total_amount_due: Decimal
    usage_counter_vector: list[float] | None = None
    payment_due_date: dt.datetime | None = None
    previous_debit_note_id: str | None = None

    def json(self) -> Json:
        body: Json = {"debitNoteId": self.debit_note_id, **self._common()}
        body["activityId"] = self.activity_id
        body["totalAmountDue"] = _amount_text(self.total_amount_due)
        body["status"] = self.status.value
        if self.previous_debit_note_id is not None:
            body["previousDebitNoteId"] = self.previous_debit_note_id
        if self.usage_counter_vector is not None:
            body["usageCounterVector"] = self.usage_counter_vector
        if self.payment_due_date is not None:
            body["paymentDueDate"] = format_time(self.payment_due_date)
        return body


@attrs.define(eq=False, kw_only=True)
class Invoice(_Document):
    invoice_id: str
    activity_ids: list[str]
    amount: Decimal
    payment_due_date: dt.datetime

    def json(self) -> Json:
        return {
            "invoiceId": self.invoice_id,
            **self._common(),
            "activityIds": list(self.activity_ids),
            "amount": _amount_text(self.amount),
            "paymentDueDate": format_time(self.payment_due_date),
            "status": self.status.value,
        }


@attrs.define(eq=False)
class Payment:
    payment_id: str
    payer_id: str
    payee_id: str
    payer_addr: str
    payee_addr: str
    platform: str
    amount: Decimal
    timestamp: dt.datetime
    agreement_payments: list[Json]
    activity_payments: list[Json]

    def json(self) -> Json:
        return {
            "paymentId": self.payment_id,
            "payerId": self.payer_id,
            "payeeId": self.payee_id,
            "payerAddr": self.payer_addr,
            "payeeAddr": self.payee_addr,
            "paymentPlatform": self.platform,
            "amount": _amount_text(self.amount),
            "timestamp": format_time(self.timestamp),
            "agreementPayments": self.agreement_payments,
            "activityPayments": self.activity_payments,
            # The daemon sends base64 driver details; there is no chain here.
            "details": "",
        }


@attrs.frozen
class _DocumentEvent:
    """One persistent event of a document; ``sides`` says who sees it."""

    stamp: dt.datetime
    kind: str  # RECEIVED, ACCEPTED, ...
    document: _Document
    sides: tuple[str, ...]  # "requestor", "provider"
    json: Json


@attrs.define(eq=False)
class _Expenditure:
    accepted: Decimal = Decimal(0)
    scheduled: Decimal = Decimal(0)


def _daemon_activity_agreement(daemon: Daemon) -> Callable[[str], str | None]:
    """The default activity lookup: the daemon's activity API (``daemon.activity``, when
    there is one), by its ``agreement_of(activity_id)`` (``None`` or ``KeyError`` for an
    unknown activity); with no activity API every activity is unknown."""

    def lookup(activity_id: str) -> str | None:
        agreement_of = getattr(getattr(daemon, "activity", None), "agreement_of", None)
        if not callable(agreement_of):
            return None
        try:
            found = agreement_of(activity_id)
        except KeyError:
            return None
        return found if isinstance(found, str) else None

    return lookup


def parse_platform(value: object) -> str:
    """A payment platform (name or ``{driver, network, token}``) as its name; the daemon's
    400 problem otherwise."""
    if value is None:
        return DEFAULT_PLATFORM
    if isinstance(value, str):
        parts = value.split("-")
        if len(parts) != 3:
            raise _bad_platform(value, f"Invalid payment platform name: {value}")
        driver, network, token = parts
    elif isinstance(value, Mapping):
        driver = value.get("driver") or "erc20"
        network = value.get("network") or "holesky"
        token = value.get("token") or ("glm" if network in _MAINNETS else "tglm")
        if not all(isinstance(x, str) for x in (driver, network, token)):
            raise _bad_platform(value, "Invalid payment platform")
    else:
        raise _bad_platform(value, "Invalid payment platform")
    if driver != "erc20":
        raise _bad_platform(value, f"Invalid driver name {driver}")
    if network not in _MAINNETS + _TESTNETS:
        raise _bad_platform(value, f"Invalid network name: {network}")
    if token in ("GLM", "tGLM"):
        raise _bad_platform(
            value,
            "Uppercase token names are not supported. "
            f"Use lowercase glm or tglm instead of {token}",
        )
    expected = "glm" if network in _MAINNETS else "tglm"
    if token != expected:
        raise _bad_platform(
            value,
            f"Token {token} does not match expected token {expected} for driver {driver} "
            f"and network {network}. Note that for test networks expected token name is tglm "
            "and for production networks it is glm",
        )
    return f"{driver}-{network}-{token}"


def _bad_platform(requested: object, error: str) -> DaemonError:
    return DaemonError(
        400,
        "Payment platform doesn't parse",
        body={
            "type": "/payment-api/v1/allocations/bad-payment-platform",
            "detail": "Payment platform doesn't parse",
            "parseError": error,
            "requestedPaymentPlatform": requested,
        },
        content_type="application/problem+json",
    )


async def _poll(
    log: EventLog[E],
    after: dt.datetime | None,
    wait: float,
    limit: int | None,
    match: Callable[[E], bool],
) -> list[E]:
    """What is there already (even with ``wait`` 0, as the daemon answers ``timeout=0``),
    else wait up to ``wait`` s for the first match. Always a checkpoint."""
    found = log.after(after, limit=limit, match=match)
    if found:
        await trio.lowlevel.checkpoint()
        return found
    return await log.wait_after(after, wait, limit=limit, match=match)


def _kinds(header: str | None, default: Sequence[str]) -> frozenset[str]:
    if header is None:
        return frozenset(default)
    return frozenset(part.strip() for part in header.split(",") if part.strip())


class PaymentState:
    """The payment API of one emulated daemon.

    ``activity_agreement`` maps an activity id to its agreement id (``None``: unknown
    activity); it is how a debit note finds its agreement. By default it asks the daemon's
    activity API, if the daemon has one (see :func:`_daemon_activity_agreement`).
    """

    def __init__(
        self,
        daemon: Daemon,
        market: MarketState,
        *,
        activity_agreement: Callable[[str], str | None] | None = None,
    ) -> None:
        self.daemon = daemon
        self.market = market
        self.activity_agreement = activity_agreement or _daemon_activity_agreement(daemon)
        #: Wallet balance per address (a node id, unless an allocation names another address;
        #: :data:`DEFAULT_BALANCE` when absent). Allocations reserve from it; payments move it.
        self.balances: dict[str, Decimal] = {}
        self.allocations: dict[str, Allocation] = {}
        self.debit_notes: dict[str, DebitNote] = {}
        self.invoices: dict[str, Invoice] = {}
        self.payments: dict[str, Payment] = {}
        self.debit_note_events: EventLog[_DocumentEvent] = EventLog(daemon.clock)
        self.invoice_events: EventLog[_DocumentEvent] = EventLog(daemon.clock)
        self.payment_log: EventLog[Payment] = EventLog(daemon.clock)
        # Totals as the daemon keeps them per activity and per agreement.
        self._activity_accepted: dict[str, Decimal] = {}
        self._agreement_accepted: dict[str, Decimal] = {}
        self._activity_paid: dict[str, Decimal] = {}
        self._agreement_paid: dict[str, Decimal] = {}
        self._expenditures: dict[tuple[str, str, str | None], _Expenditure] = {}

    # --- funds -----------------------------------------------------------------------------------

    def balance(self, node_id: str) -> Decimal:
        return self.balances.get(node_id, DEFAULT_BALANCE)

    def _reserved(self, address: str) -> Decimal:
        return sum(
            (a.remaining for a in self._active_allocations() if a.address == address),
            Decimal(0),
        )

    def _check_funds(self, address: str, platform: str, amount: Decimal, body: object) -> None:
        available = self.balance(address)
        reserved = self._reserved(address)
        if amount <= available - reserved:
            return
        detail = (
            "Insufficient funds to create the allocation. Top up your account or release all "
            "existing allocations to unlock the funds via `yagna payment release-allocations`"
        )
        raise DaemonError(
            400,
            detail,
            body={
                "type": "/payment-api/v1/allocations/validation-error",
                "instance": (
                    "/payment-api/v1/allocations/validation-error/insufficient-account-funds"
                ),
                "detail": detail,
                "requestedFunds": _amount_text(amount),
                "availableFunds": _amount_text(available),
                "reservedFunds": _amount_text(reserved),
                "requestBody": body,
                "paymentPlatform": platform,
                "address": address,
            },
            content_type="application/problem+json",
        )

    # --- allocations -----------------------------------------------------------------------------

    def _active_allocations(self) -> list[Allocation]:
        now = self.daemon.clock.now()
        for allocation in self.allocations.values():
            if not allocation.released and allocation.timeout and now >= allocation.timeout:
                allocation.released = True
        return [a for a in self.allocations.values() if not a.released]

    def _allocation(self, owner_id: str, allocation_id: str) -> Allocation:
        """The caller's allocation: 404 ``{"message": null}`` if unknown, 410 if released."""
        self._active_allocations()
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.owner_id != owner_id:
            raise DaemonError(404, None)
        if allocation.released:
            raise DaemonError(410, f"Allocation {allocation_id} has been already released")
        return allocation

    def create_allocation(self, owner_id: str, body: object) -> Json:
        """``POST /allocations``: the new allocation (answered 201)."""
        fields = _object(body)
        total = _decimal(_required(fields, "totalAmount"), "totalAmount")
        platform = parse_platform(fields.get("paymentPlatform"))
        address = fields.get("address") or owner_id
        if not isinstance(address, str):
            raise DaemonError(400, "Json deserialize error: invalid type for field `address`")
        timeout = None if fields.get("timeout") is None else _time(fields["timeout"], "timeout")
        extend = fields.get("extendTimeout")
        if extend is not None and (isinstance(extend, bool) or not isinstance(extend, int)):
            raise DaemonError(400, "Json deserialize error: invalid type for `extendTimeout`")
        deposit = fields.get("deposit")
        if deposit is not None and not isinstance(deposit, Mapping):
            raise DaemonError(400, "Json deserialize error: invalid type for `deposit`")
        self._check_funds(address, platform, total, dict(fields))
        allocation = Allocation(
            allocation_id=self.daemon.ids.uuid(),
            owner_id=owner_id,
            address=address,
            platform=platform,
            total=total,
            timestamp=self.daemon.clock.stamp(),
            timeout=timeout,
            make_deposit=bool(fields.get("makeDeposit", False)),
            extend_timeout=extend,
            deposit=None if deposit is None else dict(deposit),
        )
        self.allocations[allocation.allocation_id] = allocation
        return allocation.json()

    def list_allocations(
        self, owner_id: str, after: dt.datetime | None, max_items: int | None
    ) -> list[Json]:
        found = [
            a
            for a in self._active_allocations()
            if a.owner_id == owner_id and (after is None or a.timestamp > after)
        ]
        return [a.json() for a in found[:max_items]]

    def get_allocation(self, owner_id: str, allocation_id: str) -> Json:
        return self._allocation(owner_id, allocation_id).json()

    def amend_allocation(self, owner_id: str, allocation_id: str, body: object) -> Json:
        """``PUT /allocations/{id}``: change the total (not below what was spent) or timeout."""
        allocation = self._allocation(owner_id, allocation_id)
        fields = _object(body)
        total = allocation.total
        if fields.get("totalAmount") is not None:
            total = _decimal(fields["totalAmount"], "totalAmount")
            if total < allocation.spent:
                raise DaemonError(
                    400,
                    f"Cannot reduce allocation total amount below spent amount. "
                    f"Spent: {allocation.spent}, requested total: {total}",
                )
        timeout = allocation.timeout
        if fields.get("timeout") is not None:
            timeout = _time(fields["timeout"], "timeout")
        if total > allocation.total:
            self._check_funds(
                allocation.address, allocation.platform, total - allocation.total, dict(fields)
            )
        allocation.total = total
        allocation.timeout = timeout
        if isinstance(fields.get("deposit"), Mapping) and allocation.deposit is not None:
            allocation.deposit = {**allocation.deposit, **fields["deposit"]}
        allocation.updated = self.daemon.clock.stamp()
        return allocation.json()

    def release_allocation(self, owner_id: str, allocation_id: str) -> None:
        """``DELETE /allocations/{id}``: what is left goes back to the wallet."""
        allocation = self._allocation(owner_id, allocation_id)
        allocation.released = True
        allocation.updated = self.daemon.clock.stamp()

    def expenditures(self, owner_id: str, allocation_id: str) -> list[Json]:
        self._allocation(owner_id, allocation_id)
        rows = []
        for (alloc_id, agreement_id, activity_id), spent in self._expenditures.items():
            if alloc_id != allocation_id:
                continue
            row: Json = {"allocationId": alloc_id, "agreementId": agreement_id}
            if activity_id is not None:
                row["activityId"] = activity_id
            row["acceptedAmount"] = _amount_text(spent.accepted)
            row["scheduledAmount"] = _amount_text(spent.scheduled)
            rows.append(row)
        return rows

    def demand_decorations(self, owner_id: str, allocation_ids: Sequence[str]) -> Json:
        """The properties and constraints a demand paid from these allocations carries; 404
        if any id is unknown."""
        self._active_allocations()
        allocations = []
        for allocation_id in allocation_ids:
            allocation = self.allocations.get(allocation_id)
            if allocation is None or allocation.owner_id != owner_id or allocation.released:
                raise DaemonError(404, None)
            allocations.append(allocation)
        properties = [
            {"key": f"golem.com.payment.platform.{a.platform}.address", "value": a.address}
            for a in allocations
        ]
        clauses = [f"({p['key']}=*)" for p in properties]
        platform_clause = clauses[0] if len(clauses) == 1 else f"(|{''.join(clauses)})"
        version = 2 if any(a.deposit is not None for a in allocations) else 1
        properties.append({"key": "golem.com.payment.protocol.version", "value": "3"})
        return {
            "properties": properties,
            "constraints": [platform_clause, f"(golem.com.payment.protocol.version>{version})"],
        }

    def accounts(self, node_id: str, *, send: bool) -> list[Json]:
        """``GET /requestorAccounts`` (``send``) or ``/providerAccounts``: the node's one
        account, on the default platform."""
        driver, network, token = DEFAULT_PLATFORM.split("-")
        return [
            {
                "platform": DEFAULT_PLATFORM,
                "address": node_id,
                "driver": driver,
                "network": network,
                "token": token,
                "send": send,
                "receive": not send,
            }
        ]

    # --- documents: provider side ----------------------------------------------------------------

    def _provider_agreement(self, provider_id: str, agreement_id: str) -> Agreement:
        agreement = self.market.agreements.get(agreement_id)
        if agreement is None or agreement.provider_id != provider_id:
            raise DaemonError(400, f"Agreement not found: {agreement_id}")
        return agreement

    def _parties(self, agreement: Agreement) -> tuple[str, str, str]:
        """Platform, payer and payee addresses, as the agreement's properties name them."""
        demand = agreement.demand_proposal.properties
        offer = agreement.offer_proposal.properties
        platform = demand.get("golem.com.payment.chosen-platform")
        if not isinstance(platform, str):
            platform = DEFAULT_PLATFORM
        key = f"golem.com.payment.platform.{platform}.address"
        payer = demand.get(key)
        payee = offer.get(key)
        return (
            platform,
            payer if isinstance(payer, str) else agreement.requestor_id,
            payee if isinstance(payee, str) else agreement.provider_id,
        )

    def issue_debit_note(self, provider_id: str, body: object) -> Json:
        """``POST /debitNotes`` (provider): a new ISSUED debit note (answered 201).

        ``body``: ``{activityId, totalAmountDue, usageCounterVector?, paymentDueDate?}``."""
        fields = _object(body)
        activity_id = _required(fields, "activityId")
        if not isinstance(activity_id, str):
            raise DaemonError(400, "Json deserialize error: invalid type for `activityId`")
        total = _decimal(_required(fields, "totalAmountDue"), "totalAmountDue")
        usage = fields.get("usageCounterVector")
        if usage is not None and (
            not isinstance(usage, list)
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in usage)
        ):
            raise DaemonError(400, "Json deserialize error: invalid `usageCounterVector`")
        due = None
        if fields.get("paymentDueDate") is not None:
            due = _time(fields["paymentDueDate"], "paymentDueDate")
        agreement_id = self.activity_agreement(activity_id)
        if agreement_id is None:
            raise DaemonError(400, f"Activity not found: {activity_id}")
        agreement = self._provider_agreement(provider_id, agreement_id)
        platform, payer, payee = self._parties(agreement)
        previous = [n for n in self.debit_notes.values() if n.activity_id == activity_id]
        note = DebitNote(
            issuer_id=provider_id,
            recipient_id=agreement.requestor_id,
            payee_addr=payee,
            payer_addr=payer,
            platform=platform,
            timestamp=self.daemon.clock.stamp(),
            agreement=agreement,
            debit_note_id=self.daemon.ids.uuid(),
            activity_id=activity_id,
            total_amount_due=total,
            usage_counter_vector=None if usage is None else [float(x) for x in usage],
            payment_due_date=due,
            previous_debit_note_id=previous[-1].debit_note_id if previous else None,
        )
        self.debit_notes[note.debit_note_id] = note
        return note.json()

    def forge_debit_note(self, provider_id: str, activity_id: str, body: object) -> str:
        """A dishonest provider's debit note for an agreement (and activity) the requestor never
        made, modelled on the real agreement of ``activity_id``: issued, sent and marked
        dishonest; its id."""
        note_id = self.issue_debit_note(provider_id, body)["debitNoteId"]
        note = self.debit_notes[note_id]
        note.agreement = attrs.evolve(note.agreement, agreement_id=self.daemon.ids.uuid())
        note.activity_id = self.daemon.ids.uuid()
        note.previous_debit_note_id = None
        note.honest = False
        self.send_debit_note(provider_id, note_id)
        return str(note_id)

    def send_debit_note(self, provider_id: str, debit_note_id: str) -> None:
        """``POST /debitNotes/{id}/send`` (provider): the requestor receives it (a repeat does
        nothing)."""
        note = self.debit_notes.get(debit_note_id)
        if note is None or note.issuer_id != provider_id:
            raise DaemonError(404, None)
        if note.status is DocumentStatus.ISSUED:
            note.status = DocumentStatus.RECEIVED
            self._emit(self.debit_note_events, note, "RECEIVED", ("requestor",))

    def issue_invoice(self, provider_id: str, body: object) -> Json:
        """``POST /invoices`` (provider): a new ISSUED invoice (answered 201).

        ``body``: ``{agreementId, activityIds?, amount, paymentDueDate}``."""
        fields = _object(body)
        agreement_id = _required(fields, "agreementId")
        if not isinstance(agreement_id, str):
            raise DaemonError(400, "Json deserialize error: invalid type for `agreementId`")
        amount = _decimal(_required(fields, "amount"), "amount")
        due = _time(_required(fields, "paymentDueDate"), "paymentDueDate")
        activity_ids = fields.get("activityIds") or []
        if not isinstance(activity_ids, list) or not all(isinstance(a, str) for a in activity_ids):
            raise DaemonError(400, "Json deserialize error: invalid type for `activityIds`")
        agreement = self._provider_agreement(provider_id, agreement_id)
        for activity_id in activity_ids:
            owner = self.activity_agreement(activity_id)
            if owner is None:
                raise DaemonError(400, f"Activity not found: {activity_id}")
            if owner != agreement_id:
                raise DaemonError(
                    400, f"Activity {activity_id} belongs to agreement {owner} not {agreement_id}"
                )
        platform, payer, payee = self._parties(agreement)
        invoice = Invoice(
            issuer_id=provider_id,
            recipient_id=agreement.requestor_id,
            payee_addr=payee,
            payer_addr=payer,
            platform=platform,
            timestamp=self.daemon.clock.stamp(),
            agreement=agreement,
            invoice_id=self.daemon.ids.uuid(),
            activity_ids=list(activity_ids),
            amount=amount,
            payment_due_date=due,
        )
        self.invoices[invoice.invoice_id] = invoice
        return invoice.json()

    def send_invoice(self, provider_id: str, invoice_id: str) -> None:
        """``POST /invoices/{id}/send`` (provider): the requestor receives it."""
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.issuer_id != provider_id:
            raise DaemonError(404, None)
        if invoice.status is DocumentStatus.ISSUED:
            invoice.status = DocumentStatus.RECEIVED
            self._emit(self.invoice_events, invoice, "RECEIVED", ("requestor",))

    def cancel_invoice(self, provider_id: str, invoice_id: str) -> None:
        """``POST /invoices/{id}/cancel`` (provider): 409 once accepted."""
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.issuer_id != provider_id:
            raise DaemonError(404, None)
        if invoice.status is DocumentStatus.CANCELLED:
            return
        if invoice.status in (
            DocumentStatus.ACCEPTED,
            DocumentStatus.SETTLED,
            DocumentStatus.FAILED,
        ):
            raise DaemonError(409, "Invoice already accepted by requestor")
        invoice.status = DocumentStatus.CANCELLED
        self._emit(self.invoice_events, invoice, "CANCELLED", ("requestor", "provider"))

    # --- documents: both sides -------------------------------------------------------------------

    def list_debit_notes(
        self, node_id: str, after: dt.datetime | None, max_items: int | None
    ) -> list[Json]:
        found = [
            n
            for n in self.debit_notes.values()
            if n.visible_to(node_id) and (after is None or n.timestamp > after)
        ]
        return [n.json() for n in found[:max_items]]

    def debit_note(self, node_id: str, debit_note_id: str) -> DebitNote:
        note = self.debit_notes.get(debit_note_id)
        if note is None or not note.visible_to(node_id):
            raise DaemonError(404, None)
        return note

    def list_invoices(
        self, node_id: str, after: dt.datetime | None, max_items: int | None
    ) -> list[Json]:
        found = [
            i
            for i in self.invoices.values()
            if i.visible_to(node_id) and (after is None or i.timestamp > after)
        ]
        return [i.json() for i in found[:max_items]]

    def invoice(self, node_id: str, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None or not invoice.visible_to(node_id):
            raise DaemonError(404, None)
        return invoice

    # --- documents: requestor side ---------------------------------------------------------------

    def _received(self, table: Mapping[str, Any], requestor_id: str, doc_id: str) -> Any:
        doc = table.get(doc_id)
        if doc is None or doc.recipient_id != requestor_id or doc.status is DocumentStatus.ISSUED:
            raise DaemonError(404, None)
        return doc

    @staticmethod
    def _acceptance(body: object) -> tuple[Decimal, str]:
        fields = _object(body)
        amount = _decimal(_required(fields, "totalAmountAccepted"), "totalAmountAccepted")
        allocation_id = _required(fields, "allocationId")
        if not isinstance(allocation_id, str):
            raise DaemonError(400, "Json deserialize error: invalid type for `allocationId`")
        return amount, allocation_id

    def _paying_allocation(self, requestor_id: str, allocation_id: str) -> Allocation:
        self._active_allocations()
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.owner_id != requestor_id:
            raise DaemonError(400, f"Allocation {allocation_id} not found")
        if allocation.released:
            raise DaemonError(410, f"Allocation {allocation_id} has been already released")
        return allocation

    def _spend(
        self, allocation: Allocation, amount: Decimal, agreement_id: str, activity_id: str | None
    ) -> None:
        if amount > allocation.remaining:
            raise DaemonError(
                400,
                f"Not enough funds. Allocated: {_amount_text(allocation.remaining)} "
                f"Needed: {_amount_text(amount)}",
            )
        if amount > 0:
            allocation.spent += amount
            allocation.updated = self.daemon.clock.stamp()
            key = (allocation.allocation_id, agreement_id, activity_id)
            self._expenditures.setdefault(key, _Expenditure()).accepted += amount

    def accept_debit_note(self, requestor_id: str, debit_note_id: str, body: object) -> None:
        """``POST /debitNotes/{id}/accept``: charge the allocation what was not yet accepted for
        the activity; a payable note is paid and settled at once."""
        amount, allocation_id = self._acceptance(body)  # the daemon reads the body first
        note: DebitNote = self._received(self.debit_notes, requestor_id, debit_note_id)
        note.accept_requests.append(allocation_id)
        if amount != note.total_amount_due:
            raise DaemonError(400, "Invalid amount accepted")
        if note.status in (DocumentStatus.ACCEPTED, DocumentStatus.SETTLED):
            return
        if note.status is DocumentStatus.CANCELLED:
            raise DaemonError(400, "Debit note cancelled")
        invoice = self._invoice_of(note.agreement_id)
        if invoice is not None and invoice.status is not DocumentStatus.RECEIVED:
            # The daemon ignores debit notes that come after a decided invoice.
            return
        accepted = self._activity_accepted.get(note.activity_id, Decimal(0))
        to_pay = note.total_amount_due - accepted
        allocation = self._paying_allocation(requestor_id, allocation_id)
        self._spend(allocation, to_pay, note.agreement_id, note.activity_id)
        self._activity_accepted[note.activity_id] = note.total_amount_due
        self._agreement_accepted[note.agreement_id] = (
            self._agreement_accepted.get(note.agreement_id, Decimal(0)) + to_pay
        )
        note.status = DocumentStatus.ACCEPTED
        self._emit(self.debit_note_events, note, "ACCEPTED", ("requestor", "provider"))
        if note.payment_due_date is not None:
            paid = self._activity_paid.get(note.activity_id, Decimal(0))
            due = note.total_amount_due - paid
            if due > 0:
                self._activity_paid[note.activity_id] = paid + due
                self._agreement_paid[note.agreement_id] = (
                    self._agreement_paid.get(note.agreement_id, Decimal(0)) + due
                )
                row: Json = {"activityId": note.activity_id, "amount": _amount_text(due)}
                row["allocationId"] = allocation.allocation_id
                self._pay(note, due, agreement_payments=[], activity_payments=[row])
                self._schedule(allocation.allocation_id, note.agreement_id, note.activity_id)
            note.status = DocumentStatus.SETTLED
            self._emit(self.debit_note_events, note, "SETTLED", ("requestor", "provider"))

    def reject_debit_note(self, requestor_id: str, debit_note_id: str, body: object) -> None:
        """``POST /debitNotes/{id}/reject``: 501 on the daemon 0.17, whatever the note."""
        note = self.debit_notes.get(debit_note_id)
        if note is not None and note.recipient_id == requestor_id:
            note.reject_requests += 1
        raise DaemonError(501, None)

    def _invoice_of(self, agreement_id: str) -> Invoice | None:
        for invoice in self.invoices.values():
            if invoice.agreement_id == agreement_id and invoice.status is not DocumentStatus.ISSUED:
                return invoice
        return None

    def accept_invoice(self, requestor_id: str, invoice_id: str, body: object) -> None:
        """``POST /invoices/{id}/accept``: charge the allocation what was not yet accepted for
        the agreement; the unpaid rest is paid and the invoice settled at once."""
        amount, allocation_id = self._acceptance(body)
        invoice: Invoice = self._received(self.invoices, requestor_id, invoice_id)
        invoice.accept_requests.append(allocation_id)
        if amount != invoice.amount:
            raise DaemonError(400, "Invalid amount accepted")
        if invoice.status in (DocumentStatus.ACCEPTED, DocumentStatus.SETTLED):
            return
        if invoice.status is DocumentStatus.CANCELLED:
            raise DaemonError(400, "Invoice cancelled")
        agreement_id = invoice.agreement_id
        accepted = self._agreement_accepted.get(agreement_id, Decimal(0))
        if invoice.amount < accepted:
            raise DaemonError(
                400,
                "Invoice is smaller than agreement.total_amount_accepted. "
                f"invoice_id={invoice_id}, invoice_amount={_amount_text(invoice.amount)}, "
                f"total_amount_accepted={_amount_text(accepted)}",
            )
        allocation = self._paying_allocation(requestor_id, allocation_id)
        self._spend(allocation, invoice.amount - accepted, agreement_id, None)
        self._agreement_accepted[agreement_id] = invoice.amount
        invoice.status = DocumentStatus.ACCEPTED
        self._emit(self.invoice_events, invoice, "ACCEPTED", ("requestor", "provider"))
        paid = self._agreement_paid.get(agreement_id, Decimal(0))
        due = invoice.amount - paid
        if due > 0:
            self._agreement_paid[agreement_id] = invoice.amount
            row: Json = {"agreementId": agreement_id, "amount": _amount_text(due)}
            row["allocationId"] = allocation.allocation_id
            self._pay(invoice, due, agreement_payments=[row], activity_payments=[])
            self._schedule(allocation.allocation_id, agreement_id, None)
        invoice.status = DocumentStatus.SETTLED
        self._emit(self.invoice_events, invoice, "SETTLED", ("requestor", "provider"))

    def reject_invoice(self, requestor_id: str, invoice_id: str, body: object) -> None:
        """``POST /invoices/{id}/reject``: the provider is told why (400 once decided)."""
        rejection = self._rejection(body)
        invoice: Invoice = self._received(self.invoices, requestor_id, invoice_id)
        invoice.reject_requests += 1
        status = invoice.status
        if status is DocumentStatus.REJECTED:
            return
        if status is DocumentStatus.ACCEPTED:
            raise DaemonError(400, "Invoice accepted")
        if status is DocumentStatus.SETTLED:
            raise DaemonError(400, "Invoice settled")
        if status is DocumentStatus.CANCELLED:
            raise DaemonError(400, "Invoice cancelled")
        invoice.status = DocumentStatus.REJECTED
        self._emit(
            self.invoice_events,
            invoice,
            "REJECTED",
            ("requestor", "provider"),
            {"rejection": rejection},
        )

    @staticmethod
    def _rejection(body: object) -> Json:
        fields = _object(body)
        reason = _required(fields, "rejectionReason")
        if reason not in _REJECTION_REASONS:
            raise DaemonError(400, f"Json deserialize error: unknown variant `{reason}`")
        amount = _decimal(_required(fields, "totalAmountAccepted"), "totalAmountAccepted")
        rejection: Json = {
            "rejectionReason": reason,
            "totalAmountAccepted": _amount_text(amount),
        }
        message = fields.get("message")
        if message is not None:
            if not isinstance(message, str):
                raise DaemonError(400, "Json deserialize error: invalid type for `message`")
            rejection["message"] = message
        return rejection

    # --- payments --------------------------------------------------------------------------------

    def _pay(
        self,
        document: _Document,
        amount: Decimal,
        *,
        agreement_payments: list[Json],
        activity_payments: list[Json],
    ) -> None:
        payer, payee = document.recipient_id, document.issuer_id
        self.balances[document.payer_addr] = self.balance(document.payer_addr) - amount
        self.balances[document.payee_addr] = self.balance(document.payee_addr) + amount

        def make(stamp: dt.datetime) -> Payment:
            return Payment(
                payment_id=self.daemon.ids.uuid(),
                payer_id=payer,
                payee_id=payee,
                payer_addr=document.payer_addr,
                payee_addr=document.payee_addr,
                platform=document.platform,
                amount=amount,
                timestamp=stamp,
                agreement_payments=agreement_payments,
                activity_payments=activity_payments,
            )

        payment = self.payment_log.append(make)
        self.payments[payment.payment_id] = payment

    def _schedule(self, allocation_id: str, agreement_id: str, activity_id: str | None) -> None:
        """Mark what an allocation accepted for this agreement (or activity) as paid out."""
        for (alloc_id, agr_id, act_id), row in self._expenditures.items():
            same_activity = activity_id is None or act_id == activity_id
            if alloc_id == allocation_id and agr_id == agreement_id and same_activity:
                row.scheduled = row.accepted

    def payments_for_debit_note(self, node_id: str, debit_note_id: str) -> list[Json]:
        """``GET /debitNotes/{id}/payments``: the payments that covered the note's activity."""
        note = self.debit_note(node_id, debit_note_id)
        return [
            p.json()
            for p in self.payments.values()
            if any(a.get("activityId") == note.activity_id for a in p.activity_payments)
        ]

    def payments_for_invoice(self, node_id: str, invoice_id: str) -> list[Json]:
        """``GET /invoices/{id}/payments``: the payments that covered the invoice's agreement."""
        invoice = self.invoice(node_id, invoice_id)
        return [
            p.json()
            for p in self.payments.values()
            if any(a.get("agreementId") == invoice.agreement_id for a in p.agreement_payments)
        ]

    def payment(self, node_id: str, payment_id: str) -> Json:
        payment = self.payments.get(payment_id)
        if payment is None or node_id not in (payment.payer_id, payment.payee_id):
            raise DaemonError(404, None)
        return payment.json()

    async def collect_payments(
        self,
        node_id: str,
        wait: float,
        after: dt.datetime | None,
        max_events: int | None,
        network: str | None,
        driver: str | None,
    ) -> list[Json]:
        """``GET /payments``: payments sent or received, long-polled."""

        def mine(payment: Payment) -> bool:
            if node_id not in (payment.payer_id, payment.payee_id):
                return False
            p_driver, p_network, _ = payment.platform.split("-")
            return (network is None or network == p_network) and (
                driver is None or driver == p_driver
            )

        found = await _poll(self.payment_log, after, wait, max_events, mine)
        return [payment.json() for payment in found]

    # --- events ----------------------------------------------------------------------------------

    def _emit(
        self,
        log: EventLog[_DocumentEvent],
        document: _Document,
        kind: str,
        sides: tuple[str, ...],
        extra: Json | None = None,
    ) -> None:
        if isinstance(document, DebitNote):
            id_key, id_value, name = "debitNoteId", document.debit_note_id, "DebitNote"
        else:
            assert isinstance(document, Invoice)
            id_key, id_value, name = "invoiceId", document.invoice_id, "Invoice"
        event_type = f"{name}{kind.capitalize()}Event"
        log.append(
            lambda stamp: _DocumentEvent(
                stamp,
                kind,
                document,
                sides,
                {
                    id_key: id_value,
                    "eventDate": format_time(stamp),
                    "eventType": event_type,
                    **(extra or {}),
                },
            )
        )

    async def _collect(
        self,
        log: EventLog[_DocumentEvent],
        node_id: str,
        wait: float,
        after: dt.datetime | None,
        max_events: int | None,
        app_session_id: str | None,
        requestor_kinds: Iterable[str],
        provider_kinds: Iterable[str],
    ) -> list[Json]:
        as_requestor = frozenset(requestor_kinds)
        as_provider = frozenset(provider_kinds)

        def mine(event: _DocumentEvent) -> bool:
            document = event.document
            agreement = document.agreement
            if node_id == document.recipient_id and "requestor" in event.sides:
                kinds, session = as_requestor, agreement.app_session_id
            elif node_id == document.issuer_id and "provider" in event.sides:
                kinds, session = as_provider, agreement.provider_session_id
            else:
                return False
            if app_session_id is not None and app_session_id != session:
                return False
            return event.kind in kinds

        found = await _poll(log, after, wait, max_events, mine)
        return [event.json for event in found]

    async def collect_debit_note_events(
        self,
        node_id: str,
        wait: float,
        after: dt.datetime | None = None,
        max_events: int | None = None,
        app_session_id: str | None = None,
        *,
        requestor_events: str | None = None,
        provider_events: str | None = None,
    ) -> list[Json]:
        """``GET /debitNoteEvents``: the caller's events, as requestor or as provider, of the
        kinds the (comma-separated) headers name. Waits up to ``wait`` s; a checkpoint."""
        return await self._collect(
            self.debit_note_events,
            node_id,
            wait,
            after,
            max_events,
            app_session_id,
            _kinds(requestor_events, REQUESTOR_EVENTS_DEFAULT),
            _kinds(provider_events, PROVIDER_EVENTS_DEFAULT),
        )

    async def collect_invoice_events(
        self,
        node_id: str,
        wait: float,
        after: dt.datetime | None = None,
        max_events: int | None = None,
        app_session_id: str | None = None,
        *,
        requestor_events: str | None = None,
        provider_events: str | None = None,
    ) -> list[Json]:
        """``GET /invoiceEvents``: as :meth:`collect_debit_note_events`."""
        return await self._collect(
            self.invoice_events,
            node_id,
            wait,
            after,
            max_events,
            app_session_id,
            _kinds(requestor_events, REQUESTOR_EVENTS_DEFAULT),
            _kinds(provider_events, PROVIDER_EVENTS_DEFAULT),
        )

    # --- ledger ----------------------------------------------------------------------------------

    def ledger(self) -> Json:
        """Every document and allocation, JSON-able: what was billed, accepted and paid."""
        self._active_allocations()  # release the timed-out ones first
        allocations = list(self.allocations.values())
        return {
            "debitNotes": [
                {
                    "debitNoteId": n.debit_note_id,
                    "agreementId": n.agreement_id,
                    "activityId": n.activity_id,
                    "totalAmountDue": _amount_text(n.total_amount_due),
                    "payable": n.payment_due_date is not None,
                    "status": n.status.value,
                    "acceptRequests": list(n.accept_requests),
                    "rejectRequests": n.reject_requests,
                }
                for n in self.debit_notes.values()
            ],
            "invoices": [
                {
                    "invoiceId": i.invoice_id,
                    "agreementId": i.agreement_id,
                    "amount": _amount_text(i.amount),
                    "status": i.status.value,
                    "acceptRequests": list(i.accept_requests),
                    "rejectRequests": i.reject_requests,
                }
                for i in self.invoices.values()
            ],
            "allocations": [
                {
                    "allocationId": a.allocation_id,
                    "totalAmount": _amount_text(a.total),
                    "spentAmount": _amount_text(a.spent),
                    "released": a.released,
                }
                for a in allocations
            ],
            "payments": [
                {
                    "paymentId": p.payment_id,
                    "payerId": p.payer_id,
                    "payeeId": p.payee_id,
                    "amount": _amount_text(p.amount),
                }
                for p in self.payments.values()
            ],
        }
