"""Models of the daemon's JSON objects, as frozen attrs classes with snake_case fields.

The JSON mapping lives in :mod:`._convert`; the tagged unions (market, agreement and exec
stream events, exe-script commands) register their hooks at the bottom of this module.

Enumerations are *tolerant*: a value this version does not know (a newer daemon's) decodes to a
pseudo-member whose ``value`` is the daemon's text and whose ``known`` is ``False``, instead of
failing the whole reply. Events of an unknown ``eventType`` decode to ``Unknown…Event`` objects
that keep the raw JSON.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Self, TypeAlias

import attrs

from ._convert import converter, json_field

__all__ = [
    "Acceptance",
    "Account",
    "ActivityPayment",
    "ActivityState",
    "ActivityStateName",
    "ActivityUsage",
    "Address",
    "Agreement",
    "AgreementApprovedEvent",
    "AgreementCancelledEvent",
    "AgreementEvent",
    "AgreementListEntry",
    "AgreementPayment",
    "AgreementProposal",
    "AgreementRejectedEvent",
    "AgreementState",
    "AgreementTerminatedEvent",
    "AgreementTerminationReason",
    "Allocation",
    "AllocationUpdate",
    "Capture",
    "CaptureFormat",
    "CaptureMode",
    "CommandResult",
    "Connection",
    "CreateActivityResult",
    "DebitNote",
    "DebitNoteEvent",
    "Demand",
    "DemandOfferBase",
    "Deploy",
    "DocumentStatus",
    "DriverStatusProperty",
    "ExeScriptCommand",
    "ExeScriptCommandResult",
    "ExeScriptCommandState",
    "Expenditure",
    "Finished",
    "Identity",
    "Invoice",
    "InvoiceEvent",
    "MarketDecoration",
    "MarketEvent",
    "MarketProperty",
    "NetStatus",
    "Network",
    "NewAllocation",
    "NewNetwork",
    "NewScan",
    "Node",
    "Offer",
    "Payment",
    "PaymentPlatform",
    "Progress",
    "PropertyQuery",
    "PropertyQueryEvent",
    "Proposal",
    "ProposalEvent",
    "ProposalRejectedEvent",
    "ProposalState",
    "Reason",
    "Rejection",
    "RejectionReason",
    "Run",
    "RuntimeEvent",
    "RuntimeEventKind",
    "Sign",
    "Start",
    "Started",
    "StdErr",
    "StdOut",
    "Terminate",
    "TolerantEnum",
    "Transfer",
    "UnknownAgreementEvent",
    "UnknownMarketEvent",
    "UnknownRuntimeEventKind",
    "VersionInfo",
    "VersionResponse",
]


class TolerantEnum(enum.StrEnum):
    """A string enum that accepts values it does not know as pseudo-members."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = f"UNKNOWN[{value}]"
        member._value_ = value
        return member

    @property
    def known(self) -> bool:
        """Whether this value is one this version of the library knows."""
        return self._name_ in type(self).__members__


def _structure_enum(value: object, cl: type[TolerantEnum]) -> TolerantEnum:
    # Registered on the base class, which comes before ``str`` in every subclass's MRO, so the
    # strict ``str`` hook does not turn enum fields into plain strings.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return cl(value)


converter.register_structure_hook(TolerantEnum, _structure_enum)


# --- common --------------------------------------------------------------------------------------


@attrs.frozen
class Reason:
    """Why something was rejected, cancelled or terminated.

    ``message`` is human text; ``extra`` holds the other keys, such as
    ``golem.requestor.code``, ``golem.provider.code`` or ``golem.proposal.rejection.is-final``.
    """

    message: str
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    def code(self, key: str) -> Any:
        """One of the extra keys, or ``None``."""
        return self.extra.get(key)


def _structure_reason(value: object, _: type) -> Reason:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object for Reason, got {type(value).__name__}")
    message = value.get("message")
    if not isinstance(message, str):
        raise TypeError("Reason.message must be a string")
    return Reason(message, {str(k): v for k, v in value.items() if k != "message"})


converter.register_structure_hook(Reason, _structure_reason)
converter.register_unstructure_hook(Reason, lambda r: {**r.extra, "message": r.message})


@attrs.frozen
class Identity:
    """``GET /me``: the node id the app key acts for."""

    identity: str
    name: str
    role: str


@attrs.frozen
class VersionInfo:
    version: str
    name: str
    seen: bool
    release_ts: str
    insertion_ts: str | None = None
    update_ts: str | None = None


@attrs.frozen
class VersionResponse:
    """``GET /version/get``; ``pending`` is ``None`` when no newer release is known."""

    current: VersionInfo
    pending: VersionInfo | None = None


# --- market --------------------------------------------------------------------------------------


@attrs.frozen
class DemandOfferBase:
    """What a requestor publishes (or counters with): flat dotted properties and constraints."""

    properties: dict[str, Any]
    constraints: str


@attrs.frozen
class Demand:
    properties: dict[str, Any]
    constraints: str
    demand_id: str
    requestor_id: str
    timestamp: dt.datetime


@attrs.frozen
class Offer:
    properties: dict[str, Any]
    constraints: str
    offer_id: str
    provider_id: str
    timestamp: dt.datetime


class ProposalState(TolerantEnum):
    INITIAL = "Initial"
    DRAFT = "Draft"
    REJECTED = "Rejected"
    ACCEPTED = "Accepted"
    EXPIRED = "Expired"


@attrs.frozen
class Proposal:
    properties: dict[str, Any]
    constraints: str
    proposal_id: str
    issuer_id: str
    state: ProposalState
    timestamp: dt.datetime
    prev_proposal_id: str | None = None


@attrs.frozen
class AgreementProposal:
    proposal_id: str
    valid_to: dt.datetime


class AgreementState(TolerantEnum):
    PROPOSAL = "Proposal"
    PENDING = "Pending"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    APPROVED = "Approved"
    EXPIRED = "Expired"
    TERMINATED = "Terminated"


@attrs.frozen
class Agreement:
    agreement_id: str
    demand: Demand
    offer: Offer
    valid_to: dt.datetime
    state: AgreementState
    timestamp: dt.datetime
    approved_date: dt.datetime | None = None
    app_session_id: str | None = None
    proposed_signature: str | None = None
    approved_signature: str | None = None
    committed_signature: str | None = None


@attrs.frozen
class AgreementListEntry:
    """An item of ``GET /agreements``."""

    id: str
    role: str
    timestamp: dt.datetime | None = None
    approved_date: dt.datetime | None = None


@attrs.frozen
class PropertyQuery:
    queried_properties: list[str]
    issuer_properties: dict[str, Any] | None = None
    query_id: str | None = None


@attrs.frozen
class NewScan:
    """Body of ``POST /scan`` (offer browsing without negotiation)."""

    type: str = "offer"
    constraints: str | None = None
    timeout: float | None = None


# Requestor negotiation events (``GET /demands/{id}/events``).


@attrs.frozen
class ProposalEvent:
    EVENT_TYPE: ClassVar[str] = "ProposalEvent"
    event_date: dt.datetime
    proposal: Proposal


@attrs.frozen
class ProposalRejectedEvent:
    """The provider rejected our proposal ``proposal_id``."""

    EVENT_TYPE: ClassVar[str] = "ProposalRejectedEvent"
    event_date: dt.datetime
    proposal_id: str
    reason: Reason | None = None


@attrs.frozen
class PropertyQueryEvent:
    EVENT_TYPE: ClassVar[str] = "PropertyQueryEvent"
    event_date: dt.datetime
    property_query: PropertyQuery


@attrs.frozen
class UnknownMarketEvent:
    """A negotiation event of a type this version does not know; ``raw`` is its JSON."""

    event_type: str
    raw: dict[str, Any]


MarketEvent: TypeAlias = (
    ProposalEvent | ProposalRejectedEvent | PropertyQueryEvent | UnknownMarketEvent
)


# Agreement events (``GET /agreementEvents``), persistent, selected by ``afterTimestamp``.


@attrs.frozen
class AgreementApprovedEvent:
    EVENT_TYPE: ClassVar[str] = "AgreementApprovedEvent"
    event_date: dt.datetime
    agreement_id: str


@attrs.frozen
class AgreementRejectedEvent:
    EVENT_TYPE: ClassVar[str] = "AgreementRejectedEvent"
    event_date: dt.datetime
    agreement_id: str
    reason: Reason | None = None


@attrs.frozen
class AgreementCancelledEvent:
    EVENT_TYPE: ClassVar[str] = "AgreementCancelledEvent"
    event_date: dt.datetime
    agreement_id: str
    reason: Reason | None = None


@attrs.frozen
class AgreementTerminatedEvent:
    """``terminator`` is ``"Requestor"`` or ``"Provider"``; the daemon's ``signature`` is
    always empty."""

    EVENT_TYPE: ClassVar[str] = "AgreementTerminatedEvent"
    event_date: dt.datetime
    agreement_id: str
    terminator: str
    signature: str | None = None
    reason: Reason | None = None


@attrs.frozen
class UnknownAgreementEvent:
    event_type: str
    raw: dict[str, Any]

    @property
    def agreement_id(self) -> str | None:
        value = self.raw.get("agreementId")
        return value if isinstance(value, str) else None


AgreementEvent: TypeAlias = (
    AgreementApprovedEvent
    | AgreementRejectedEvent
    | AgreementCancelledEvent
    | AgreementTerminatedEvent
    | UnknownAgreementEvent
)


@attrs.frozen
class AgreementTerminationReason:
    """``GET /agreements/{id}/terminate/reason``: who ended the agreement and why."""

    agreement_id: str
    event_date: dt.datetime
    terminator: str
    signature: str | None = None
    reason: Reason | None = None


# --- activity ------------------------------------------------------------------------------------


@attrs.frozen
class CreateActivityResult:
    """Reply to the object form of ``POST /activity``."""

    activity_id: str
    credentials: dict[str, Any] | None = None


class ActivityStateName(TolerantEnum):
    NEW = "New"
    INITIALIZED = "Initialized"
    DEPLOYED = "Deployed"
    READY = "Ready"
    UNRESPONSIVE = "Unresponsive"
    TERMINATED = "Terminated"


@attrs.frozen
class ActivityState:
    """``state`` is the daemon's pair ``[current, pending-or-None]``; a pending state equal to
    the current one means a command is running."""

    state: list[ActivityStateName | None]
    reason: str | None = None
    error_message: str | None = None

    @property
    def current(self) -> ActivityStateName | None:
        return self.state[0] if self.state else None

    @property
    def pending(self) -> ActivityStateName | None:
        return self.state[1] if len(self.state) > 1 else None

    @property
    def alive(self) -> bool:
        """Not terminated (and not unknown)."""
        return self.current not in (None, ActivityStateName.TERMINATED)


@attrs.frozen
class ActivityUsage:
    """``current_usage`` is in the order of the offer's ``golem.com.usage.vector``;
    ``timestamp`` is in unix seconds."""

    timestamp: int
    current_usage: list[float] | None = None


class CommandResult(TolerantEnum):
    OK = "Ok"
    ERROR = "Error"


Output: TypeAlias = str | bytes | None


def _structure_output(value: object, _: object) -> Output:
    # The daemon sends str for ``format: str`` captures and an array of byte values for
    # ``format: bin``; ``null`` when nothing was captured.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value
    ):
        return bytes(value)
    raise TypeError("expected a string, an array of bytes or null")


def _unstructure_output(value: Output) -> Any:
    return list(value) if isinstance(value, bytes) else value


converter.register_structure_hook(Output, _structure_output)
converter.register_unstructure_hook(bytes, list)


@attrs.frozen
class ExeScriptCommandResult:
    """One command's outcome in a batch's (cumulative) results."""

    index: int
    event_date: dt.datetime
    result: CommandResult
    stdout: Output = attrs.field(default=None)
    stderr: Output = attrs.field(default=None)
    message: str | None = None
    is_batch_finished: bool = False


@attrs.frozen
class ExeScriptCommandState:
    """``GET /activity/{id}/command``: what is running now."""

    batch_id: str
    command: str
    progress: str | None = None
    params: list[str] | None = None


# Exe-script commands (request side). Wire names follow the daemon's Rust model.


class CaptureFormat(TolerantEnum):
    STR = "str"
    BIN = "bin"


@attrs.frozen
class CaptureMode:
    """``at_end`` keeps the output until the command finishes (optionally only its ``head``,
    ``tail`` or ``head_tail`` bytes); ``stream`` also sends it as exec-stream events."""

    stream: bool = False
    limit: int | None = None
    head: int | None = None
    tail: int | None = None
    head_tail: int | None = None
    format: CaptureFormat | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.format is not None:
            body["format"] = self.format.value
        if self.stream:
            if self.limit is not None:
                body["limit"] = self.limit
            return {"stream": body}
        for key, value in (("head", self.head), ("tail", self.tail), ("headTail", self.head_tail)):
            if value is not None:
                body[key] = value
        return {"atEnd": body}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CaptureMode:
        """Decode ``{"stream": {...}}`` or ``{"atEnd": {...}}``; a wrong type raises
        ``TypeError`` naming the key."""
        stream = "stream" in value
        body = value["stream" if stream else "atEnd"] if value else {}
        body = {} if body is None else body
        if not isinstance(body, Mapping):
            raise TypeError(f"{'stream' if stream else 'atEnd'}: expected an object")

        def number(key: str) -> int | None:
            item = body.get(key)
            if item is None:
                return None
            if isinstance(item, bool) or not isinstance(item, int):
                raise TypeError(f"{key}: expected an integer, got {type(item).__name__}")
            return item

        fmt = body.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise TypeError(f"format: expected a string, got {type(fmt).__name__}")
        capture_format = None if fmt is None else CaptureFormat(fmt)
        if stream:
            return cls(True, limit=number("limit"), format=capture_format)
        return cls(
            False,
            head=number("head"),
            tail=number("tail"),
            head_tail=number("headTail"),
            format=capture_format,
        )


@attrs.frozen
class Capture:
    stdout: CaptureMode | None = None
    stderr: CaptureMode | None = None


converter.register_unstructure_hook(CaptureMode, CaptureMode.to_json)


def _structure_capture_mode(value: object, _: type) -> CaptureMode:
    if not isinstance(value, Mapping):
        raise TypeError("expected an object for CaptureMode")
    return CaptureMode.from_json(value)


converter.register_structure_hook(CaptureMode, _structure_capture_mode)


@attrs.frozen
class Deploy:
    NAME: ClassVar[str] = "deploy"
    net: list[dict[str, Any]] | None = None
    hosts: dict[str, str] | None = None
    hostname: str | None = None
    volumes: Any = None
    env: dict[str, str] | None = None
    progress: dict[str, Any] | None = None


@attrs.frozen
class Start:
    NAME: ClassVar[str] = "start"
    args: list[str] = attrs.field(factory=list)


@attrs.frozen
class Run:
    NAME: ClassVar[str] = "run"
    entry_point: str = json_field("entry_point")
    args: list[str] = attrs.field(factory=list)
    capture: Capture | None = None


@attrs.frozen
class Transfer:
    """Copy ``from_`` to ``to``; ``container:/path`` names a path inside the activity,
    ``http(s)://`` a URL the exe-unit GETs from or PUTs to."""

    NAME: ClassVar[str] = "transfer"
    from_: str = json_field("from")
    to: str = json_field("to")
    format: str | None = None
    depth: int | None = None
    fileset: list[Any] | None = None
    progress: dict[str, Any] | None = None


@attrs.frozen
class Sign:
    NAME: ClassVar[str] = "sign"


@attrs.frozen
class Terminate:
    NAME: ClassVar[str] = "terminate"


ExeScriptCommand: TypeAlias = Deploy | Start | Run | Transfer | Sign | Terminate


# Exec event stream (SSE). Its JSON is snake_case, unlike the rest of the API.


@attrs.frozen
class Started:
    command: dict[str, Any]


@attrs.frozen
class Finished:
    return_code: int = json_field("return_code")
    message: str | None = None


@attrs.frozen
class StdOut:
    output: Output


@attrs.frozen
class StdErr:
    output: Output


@attrs.frozen
class Progress:
    step: list[int] | None = None
    message: str | None = None
    progress: list[int | None] | None = None
    unit: str | None = None


@attrs.frozen
class UnknownRuntimeEventKind:
    raw: dict[str, Any]


RuntimeEventKind: TypeAlias = (
    Started | Finished | StdOut | StdErr | Progress | UnknownRuntimeEventKind
)


@attrs.frozen
class RuntimeEvent:
    """One ``event: runtime`` frame of the exec event stream."""

    batch_id: str = json_field("batch_id")
    index: int = json_field("index")
    timestamp: dt.datetime = json_field("timestamp")
    kind: RuntimeEventKind = json_field("kind")


# --- payment -------------------------------------------------------------------------------------


@attrs.frozen
class PaymentPlatform:
    driver: str | None = None
    network: str | None = None
    token: str | None = None


@attrs.frozen
class NewAllocation:
    """Body of ``POST /allocations``. ``payment_platform`` is ``erc20-holesky-tglm`` style
    text or a :class:`PaymentPlatform`."""

    total_amount: Decimal
    payment_platform: str | PaymentPlatform | None = None
    address: str | None = None
    timeout: dt.datetime | None = None
    make_deposit: bool | None = None
    extend_timeout: int | None = None
    deposit: dict[str, Any] | None = None


@attrs.frozen
class AllocationUpdate:
    total_amount: Decimal | None = None
    timeout: dt.datetime | None = None
    deposit: dict[str, Any] | None = None


@attrs.frozen
class Allocation:
    allocation_id: str
    total_amount: Decimal
    spent_amount: Decimal
    remaining_amount: Decimal
    timestamp: dt.datetime
    address: str | None = None
    payment_platform: str | PaymentPlatform | None = None
    timeout: dt.datetime | None = None
    make_deposit: bool | None = None
    extend_timeout: int | None = None
    deposit: dict[str, Any] | None = None
    created_ts: dt.datetime | None = None
    updated_ts: dt.datetime | None = None


def _structure_platform(value: object, _: object) -> str | PaymentPlatform | None:
    if value is None or isinstance(value, str):
        return value
    return converter.structure(value, PaymentPlatform)


converter.register_structure_hook(str | PaymentPlatform | None, _structure_platform)


@attrs.frozen
class Expenditure:
    """``GET /allocations/{id}/expenditures`` (daemon only, not in the specs)."""

    allocation_id: str
    agreement_id: str
    accepted_amount: Decimal
    scheduled_amount: Decimal
    activity_id: str | None = None


@attrs.frozen
class MarketProperty:
    key: str
    value: str


@attrs.frozen
class MarketDecoration:
    """``GET /demandDecorations``: properties and constraints the demand must carry."""

    properties: list[MarketProperty]
    constraints: list[str]


@attrs.frozen
class Account:
    platform: str
    address: str
    driver: str
    network: str
    token: str
    send: bool
    receive: bool


class DocumentStatus(TolerantEnum):
    ISSUED = "ISSUED"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"


@attrs.frozen
class DebitNote:
    """A provider's running bill for one activity. ``payment_due_date`` set means *payable*
    (a mid-agreement payment); ``usage_counter_vector`` follows the usage vector."""

    debit_note_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    timestamp: dt.datetime
    agreement_id: str
    activity_id: str
    total_amount_due: Decimal
    status: DocumentStatus
    previous_debit_note_id: str | None = None
    usage_counter_vector: list[float] | None = None
    payment_due_date: dt.datetime | None = None


@attrs.frozen
class Invoice:
    invoice_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    timestamp: dt.datetime
    agreement_id: str
    amount: Decimal
    payment_due_date: dt.datetime
    status: DocumentStatus
    activity_ids: list[str] = attrs.field(factory=list)


@attrs.frozen
class Acceptance:
    """Body of an accept call: the amount must equal the document's amount exactly."""

    total_amount_accepted: Decimal
    allocation_id: str


class RejectionReason(TolerantEnum):
    UNSOLICITED_SERVICE = "UNSOLICITED_SERVICE"
    BAD_SERVICE = "BAD_SERVICE"
    INCORRECT_AMOUNT = "INCORRECT_AMOUNT"


@attrs.frozen
class Rejection:
    rejection_reason: RejectionReason
    total_amount_accepted: Decimal
    message: str | None = None


@attrs.frozen
class DriverStatusProperty:
    """An item of ``GET /payments/status``: something wrong with a payment driver."""

    kind: str
    driver: str
    network: str | None = None
    needed_gas_est: str | None = None
    needed_token_est: str | None = None
    address: str | None = None
    chain_id: int | None = None


@attrs.frozen
class DebitNoteEvent:
    """``event_type`` is e.g. ``DebitNoteReceivedEvent``; ``rejection`` and ``property`` are
    set on the rejected and payment-status kinds."""

    event_type: str
    event_date: dt.datetime
    debit_note_id: str
    rejection: Rejection | None = None
    property: DriverStatusProperty | None = None


@attrs.frozen
class InvoiceEvent:
    event_type: str
    event_date: dt.datetime
    invoice_id: str
    rejection: Rejection | None = None
    property: DriverStatusProperty | None = None


@attrs.frozen
class AgreementPayment:
    agreement_id: str
    amount: Decimal
    allocation_id: str | None = None


@attrs.frozen
class ActivityPayment:
    activity_id: str
    amount: Decimal
    allocation_id: str | None = None


@attrs.frozen
class Payment:
    payment_id: str
    payer_id: str
    payee_id: str
    payer_addr: str
    payee_addr: str
    payment_platform: str
    amount: Decimal
    timestamp: dt.datetime
    agreement_payments: list[AgreementPayment]
    activity_payments: list[ActivityPayment]
    details: str


# --- net -----------------------------------------------------------------------------------------


@attrs.frozen
class NewNetwork:
    ip: str
    mask: str | None = None
    gateway: str | None = None


@attrs.frozen
class Network:
    ip: str
    id: str | None = None
    mask: str | None = None
    gateway: str | None = None


@attrs.frozen
class Address:
    ip: str


@attrs.frozen
class Node:
    id: str
    ip: str


@attrs.frozen
class Connection:
    protocol: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int


@attrs.frozen
class NetStatus:
    node_id: str
    sessions: int
    listen_ip: str | None = None
    public_ip: str | None = None


# --- tagged unions -------------------------------------------------------------------------------


def _is(union: object) -> Callable[[Any], bool]:
    return lambda cl: cl == union


def _wrapped(key: str, plain: Callable[[Any], Any], *, tag: bool) -> Callable[[Any], Any]:
    """An unstructure hook that adds ``{"eventType": key}`` (``tag``) or nests the object
    under ``key`` (commands)."""

    def unstructure(value: Any) -> Any:
        return {"eventType": key, **plain(value)} if tag else {key: plain(value)}

    return unstructure


def _register_events(union: object, classes: tuple[type[Any], ...], unknown: type[Any]) -> None:
    by_type = {cl.EVENT_TYPE: cl for cl in classes}

    def structure(value: object, _: object) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an event object, got {type(value).__name__}")
        event_type = value.get("eventType")
        if not isinstance(event_type, str):
            raise TypeError("eventType must be a string")
        cl = by_type.get(event_type)
        if cl is None:
            return unknown(event_type, dict(value))
        return converter.structure(value, cl)

    converter.register_structure_hook_func(_is(union), structure)
    for cl in classes:
        plain = converter.get_unstructure_hook(cl)
        converter.register_unstructure_hook(cl, _wrapped(cl.EVENT_TYPE, plain, tag=True))
    converter.register_unstructure_hook(unknown, lambda ev: dict(ev.raw))

    def structure_unknown(value: object, _: object) -> Any:
        if not isinstance(value, Mapping) or not isinstance(value.get("eventType"), str):
            raise TypeError("expected an event object with an eventType")
        return unknown(value["eventType"], dict(value))

    converter.register_structure_hook(unknown, structure_unknown)


_register_events(
    MarketEvent, (ProposalEvent, ProposalRejectedEvent, PropertyQueryEvent), UnknownMarketEvent
)
_register_events(
    AgreementEvent,
    (
        AgreementApprovedEvent,
        AgreementRejectedEvent,
        AgreementCancelledEvent,
        AgreementTerminatedEvent,
    ),
    UnknownAgreementEvent,
)


_COMMANDS: dict[str, type[Any]] = {
    cl.NAME: cl for cl in (Deploy, Start, Run, Transfer, Sign, Terminate)
}


def _structure_command(value: object, _: object) -> ExeScriptCommand:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise TypeError("a command is an object with exactly one key")
    ((name, _body),) = value.items()
    cl = _COMMANDS.get(name)
    if cl is None:
        raise ValueError(f"unknown command {str(name)[:40]!r}")
    result: ExeScriptCommand = converter.structure(value, cl)
    return result


def _command_structure(cl: type[Any]) -> Callable[[Any, Any], Any]:
    """A command decodes from the same ``{"run": {...}}`` shape it encodes to."""
    plain = converter.get_structure_hook(cl)

    def structure(value: Any, target: Any) -> Any:
        if not isinstance(value, Mapping) or list(value) != [cl.NAME]:
            raise TypeError(f"expected an object with the single key {cl.NAME!r}")
        body = value[cl.NAME]
        return plain(body if body is not None else {}, target)

    return structure


converter.register_structure_hook_func(_is(ExeScriptCommand), _structure_command)
for _cl in _COMMANDS.values():
    _plain = converter.get_unstructure_hook(_cl)
    converter.register_unstructure_hook(_cl, _wrapped(_cl.NAME, _plain, tag=False))
    converter.register_structure_hook(_cl, _command_structure(_cl))


_KINDS: dict[str, type[Any]] = {"started": Started, "finished": Finished, "progress": Progress}


def _structure_kind(value: object, _: object) -> RuntimeEventKind:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise TypeError("an event kind is an object with exactly one key")
    ((name, body),) = value.items()
    if name in ("stdout", "stderr"):
        output = _structure_output(body, None)
        return StdOut(output) if name == "stdout" else StdErr(output)
    cl = _KINDS.get(name)
    if cl is None:
        return UnknownRuntimeEventKind(dict(value))
    if not isinstance(body, Mapping):
        raise TypeError(f"the {name} event body must be an object")
    # The kinds' fields carry their snake_case wire names (json_field).
    result: RuntimeEventKind = _PLAIN_KIND_HOOKS[cl](body, cl)
    return result


def _unstructure_kind(kind: RuntimeEventKind) -> Any:
    match kind:
        case StdOut(output):
            return {"stdout": _unstructure_output(output)}
        case StdErr(output):
            return {"stderr": _unstructure_output(output)}
        case UnknownRuntimeEventKind(raw):
            return dict(raw)
        case _:
            name = {Started: "started", Finished: "finished", Progress: "progress"}[type(kind)]
            return {name: {f.name: getattr(kind, f.name) for f in attrs.fields(type(kind))}}


def _kind_structure(cl: type[Any]) -> Callable[[Any, Any], Any]:
    """A kind decodes from the same ``{"finished": {...}}`` shape it encodes to."""

    def structure(value: Any, _: Any) -> Any:
        kind = _structure_kind(value, None)
        if not isinstance(kind, cl):
            raise TypeError(f"expected a {cl.__name__} event kind")
        return kind

    return structure


_PLAIN_KIND_HOOKS = {cl: converter.get_structure_hook(cl) for cl in _KINDS.values()}
converter.register_structure_hook_func(_is(RuntimeEventKind), _structure_kind)
for _k in (Started, Finished, StdOut, StdErr, Progress, UnknownRuntimeEventKind):
    converter.register_unstructure_hook(_k, _unstructure_kind)
for _k in (Started, Finished, StdOut, StdErr, Progress):
    converter.register_structure_hook(_k, _kind_structure(_k))


def _structure_unknown_kind(value: object, _: object) -> UnknownRuntimeEventKind:
    if not isinstance(value, Mapping):
        raise TypeError("expected an event kind object")
    return UnknownRuntimeEventKind({str(k): v for k, v in value.items()})


converter.register_structure_hook(UnknownRuntimeEventKind, _structure_unknown_kind)


# Resolve the string annotations now, in this module's namespace: the package re-exports these
# classes under its public name, and later lookups would search the wrong globals.
for _model in list(globals().values()):
    if isinstance(_model, type) and attrs.has(_model):
        attrs.resolve_types(_model)
