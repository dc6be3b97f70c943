"""Every requestor-side method of the yagna client, called once with realistic arguments, and a
fake daemon that checks each request against the specs and answers as the daemon does.

Used by ``test_requests`` (one test per call), ``test_coverage`` (which operations the calls
reach) and ``test_replies`` (generated replies).
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import attrs
import httpx2
import trio

from golem_trio.yagna import (
    Account,
    ActivityState,
    ActivityUsage,
    Address,
    Agreement,
    AgreementApprovedEvent,
    AgreementCancelledEvent,
    AgreementListEntry,
    AgreementRejectedEvent,
    AgreementTerminatedEvent,
    AgreementTerminationReason,
    AllocationUpdate,
    ApiConfig,
    ApprovalResult,
    Capture,
    CaptureFormat,
    CaptureMode,
    Connection,
    CreateActivityResult,
    DebitNote,
    DebitNoteEvent,
    Demand,
    DemandOfferBase,
    Deploy,
    DriverStatusProperty,
    ExeScriptCommandResult,
    ExeScriptCommandState,
    Expenditure,
    Identity,
    Invoice,
    InvoiceEvent,
    MarketDecoration,
    NetStatus,
    Network,
    NewAllocation,
    NewNetwork,
    NewScan,
    Node,
    Offer,
    Payment,
    PaymentPlatform,
    PropertyQueryEvent,
    Proposal,
    ProposalEvent,
    ProposalRejectedEvent,
    Reason,
    Rejection,
    RejectionReason,
    Run,
    RuntimeEvent,
    Sign,
    Start,
    Terminate,
    Transfer,
    VersionResponse,
    YagnaClient,
)
from golem_trio.yagna import Allocation as AllocationModel

from .openapi_support import (
    Operation,
    daemon_reply,
    load_specs,
    response_schema,
    spec_example,
    validate_request,
    validate_response,
)

API_URL = "http://127.0.0.1:7465"
APP_KEY = "contract-test-app-key"

SUB = "ab" * 16 + "-" + "cd" * 32  # subscription id
PROPOSAL = "R-" + "ef" * 32
AGREEMENT = "12" * 32
ACTIVITY = "3c" * 16
BATCH = "4d" * 16
ALLOCATION = "5a1e6b4c-8a3f-4d2e-9c1b-0e7f6a5d4c3b"
DEBIT_NOTE = "6b2f7c5d-9b4a-4e3f-8d2c-1f8a7b6e5d4c"
INVOICE = "7c3a8d6e-ac5b-4f4a-9e3d-2a9b8c7f6e5d"
PAYMENT = "8d4b9e7f-bd6c-4a5b-8f4e-3bac9d8a7f6e"
NETWORK = "9e5c0f8a-ce7d-4b6c-9a5f-4cbd0e9b8a7f"
PROVIDER = "0x" + "7a" * 20
SINCE = dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
VALID_TO = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

DEMAND = DemandOfferBase(
    properties={
        "golem.srv.comp.expiration": 1714560000000,
        "golem.node.debug.subnet": "public",
        "golem.com.payment.platform.erc20-holesky-tglm.address": "0x" + "5e" * 20,
        "golem.com.payment.debit-notes.accept-timeout?": 240,
    },
    constraints="(&(golem.node.debug.subnet=public)(golem.runtime.name=vm))",
)
REASON = Reason("Successfully finished all work", {"golem.requestor.code": "Success"})
EXE_SCRIPT = [
    Deploy(
        net=[
            {
                "id": NETWORK,
                "ip": "192.168.0.0",
                "mask": "255.255.255.0",
                "nodeIp": "192.168.0.2",
                "nodes": {"192.168.0.1": "0x" + "5e" * 20},
            }
        ],
        volumes={"/golem/work": {"storage": {"size": "10GiB"}}},
        progress={"updateInterval": "300ms", "updateStep": None},
    ),
    Start(),
    Run(
        "/bin/sh",
        ["-c", "echo hi"],
        Capture(
            stdout=CaptureMode(stream=True, format=CaptureFormat.STR),
            stderr=CaptureMode(tail=4096, format=CaptureFormat.STR),
        ),
    ),
    Transfer(
        "http://127.0.0.1:8000/in.txt",
        "container:/golem/input/in.txt",
        format="zip",
        depth=2,
        fileset=[{"desc": "images", "includes": ["*.jpg"], "excludes": ["db*.*"]}],
        progress={"updateStep": 1048576},
    ),
    Sign(),
    Terminate(),
]
REJECTION = Rejection(RejectionReason.BAD_SERVICE, Decimal("1.5"), "the service did not work")

MarketEvents = list[ProposalEvent | ProposalRejectedEvent | PropertyQueryEvent]
AgreementEvents = list[
    AgreementApprovedEvent
    | AgreementRejectedEvent
    | AgreementCancelledEvent
    | AgreementTerminatedEvent
]


#: Calls that fail because of a client bug; strict, so a fix turns them into a failure to
#: remove from here.
KNOWN_CLIENT_BUGS: dict[str, str] = {}


Reply = Callable[[Operation, httpx2.Request], httpx2.Response]
Invoke = Callable[[YagnaClient], Awaitable[Any]]


@dataclass(frozen=True)
class ClientCall:
    """One call of a client method, the operation it must reach and what it must return."""

    api: str  # attribute of YagnaClient: market, activity, payment, net, net_v2, identity
    method: str
    operation: tuple[str, str]  # (spec file, operationId) the request must target
    returns: Any  # the type the decoded reply must have (list[X], X | Y, None...)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    reply: Reply | None = None  # instead of the daemon's usual reply
    reply_schema: dict[str, Any] | None = None  # of the reply body, if narrower than the spec's
    invoke: Invoke | None = None  # for methods that are context managers
    variant: str = ""  # tells two calls of one method apart

    @property
    def id(self) -> str:
        return f"{self.api}.{self.method}" + (f"[{self.variant}]" if self.variant else "")

    async def run(self, client: YagnaClient) -> Any:
        if self.invoke is not None:
            return await self.invoke(client)
        method = getattr(getattr(client, self.api), self.method)
        return await method(*self.args, **self.kwargs)


# --- special replies and invocations -------------------------------------------------------------


def _string_reply(op: Operation, request: httpx2.Request) -> httpx2.Response:
    # createActivity mirrors the request shape: a bare-string request gets a bare-string id.
    assert isinstance(json.loads(request.content), str), "expected the bare-string request form"
    return daemon_reply(op, ACTIVITY)


def runtime_events() -> list[dict[str, Any]]:
    """One exec-stream event of each kind, as the daemon writes them (snake_case)."""
    kinds = ["Started", "StdOut", "StdErr", "Progress", "Finished"]
    return [
        {
            "batch_id": BATCH,
            "index": 2,
            "timestamp": f"2024-05-01T10:00:0{i}.123456789",
            "kind": spec_example("activity-api.yaml", f"RuntimeEventKind{kind}"),
        }
        for i, kind in enumerate(kinds)
    ]


def sse_body(events: list[Any]) -> bytes:
    """An exec event stream as the daemon frames it (``:ping`` comments included)."""
    frames = [
        f"event: runtime\ndata: {json.dumps(event, separators=(',', ':'))}\nid: {i}\n\n"
        for i, event in enumerate(events)
    ]
    return (":ping\n\n" + "".join(frames) + ":ping\n\n").encode()


def _sse_reply(op: Operation, request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(
        200, headers={"Content-Type": "text/event-stream"}, content=sse_body(runtime_events())
    )


def _events_without(event_type: str) -> Reply:
    """The usual list of one event of each kind, less ``event_type``."""

    def reply(op: Operation, request: httpx2.Request) -> httpx2.Response:
        schema = response_schema(op)
        assert schema is not None
        events = spec_example(op.spec, schema)
        return daemon_reply(op, [e for e in events if e["eventType"] != event_type])

    return reply


async def _read_exec_stream(client: YagnaClient) -> list[RuntimeEvent]:
    async with client.activity.open_exec_stream(ACTIVITY, BATCH) as stream:
        return [event async for event in stream]


class _ClosedSocket:
    """A network stream for the fake websocket upgrade: the peer closes at once."""

    # (httpcore's AsyncNetworkStream interface, timeout parameters included)
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        await trio.lowlevel.checkpoint()
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def get_extra_info(self, info: str) -> Any:
        return None


def _upgrade_reply(op: Operation, request: httpx2.Request) -> httpx2.Response:
    assert request.headers.get("upgrade", "").lower() == "websocket"
    return httpx2.Response(
        101,
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        extensions={"network_stream": _ClosedSocket()},
    )


def _connect_tcp(api: str) -> Invoke:
    async def invoke(client: YagnaClient) -> None:
        async with getattr(client, api).connect_tcp(NETWORK, "192.168.0.2", 8080):
            pass

    return invoke


# --- the calls -----------------------------------------------------------------------------------

M, A, P, V1, V2 = (
    "market-api.yaml",
    "activity-api.yaml",
    "payment-api.yaml",
    "net-api.yaml",
    "net-api-v2.yaml",
)


def _net_calls(api: str, spec: str) -> list[ClientCall]:
    return [
        ClientCall(api, "get_status", ("net-api-v2.yaml", "getStatus"), NetStatus),
        ClientCall(
            api,
            "create_network",
            (spec, "createNetwork"),
            Network,
            (NewNetwork("192.168.0.0/24", "255.255.255.0", "192.168.0.1"),),
        ),
        ClientCall(api, "get_networks", (spec, "getNetworks"), list[Network]),
        ClientCall(api, "get_network", (spec, "getNetwork"), Network, (NETWORK,)),
        ClientCall(api, "remove_network", (spec, "removeNetwork"), None, (NETWORK,)),
        ClientCall(api, "get_addresses", (spec, "getAddresses"), list[Address], (NETWORK,)),
        ClientCall(api, "add_address", (spec, "addAddress"), None, (NETWORK, "192.168.0.1")),
        ClientCall(api, "get_nodes", (spec, "getNodes"), list[Node], (NETWORK,)),
        ClientCall(api, "add_node", (spec, "addNode"), None, (NETWORK, PROVIDER, "192.168.0.2")),
        ClientCall(api, "remove_node", (spec, "removeNode"), None, (NETWORK, PROVIDER)),
        ClientCall(api, "get_connections", (spec, "getConnections"), list[Connection], (NETWORK,)),
        ClientCall(
            api,
            "connect_tcp",
            (spec, "connect_tcp"),
            None,
            reply=_upgrade_reply,
            invoke=_connect_tcp(api),
        ),
    ]


CALLS: list[ClientCall] = [
    # identity and version
    ClientCall("identity", "get_identity", ("identity-api.yaml", "getIdentity"), Identity),
    ClientCall("identity", "get_version", ("version-api.yaml", "getVersion"), VersionResponse),
    # market: demands and negotiation
    ClientCall("market", "subscribe_demand", (M, "subscribeDemand"), str, (DEMAND,)),
    ClientCall("market", "get_demands", (M, "getDemands"), list[Demand]),
    ClientCall("market", "unsubscribe_demand", (M, "unsubscribeDemand"), None, (SUB,)),
    ClientCall(
        "market",
        "collect_offers",
        (M, "collectOffers"),
        MarketEvents,
        (SUB,),
        {"wait": 5.0, "max_events": 10},
    ),
    ClientCall("market", "get_proposal_offer", (M, "getProposalOffer"), Proposal, (SUB, PROPOSAL)),
    ClientCall(
        "market",
        "counter_proposal_demand",
        (M, "counterProposalDemand"),
        str,
        (SUB, PROPOSAL, DEMAND),
    ),
    ClientCall(
        "market",
        "reject_proposal_offer",
        (M, "rejectProposalOffer"),
        None,
        (SUB, PROPOSAL, Reason("too expensive", {"golem.requestor.code": "Price"})),
    ),
    ClientCall(
        "market",
        "reject_proposal_offer",
        (M, "rejectProposalOffer"),
        None,
        (SUB, PROPOSAL),
        variant="no reason",
    ),
    ClientCall(
        "market",
        "query_reply_demands",
        (M, "queryReplyDemands"),
        None,
        (SUB, "q1", {"golem.inf.mem.gib": 4}),
    ),
    # market: scanning offers
    ClientCall(
        "market",
        "begin_scan",
        (M, "beginScan"),
        str,
        (NewScan(constraints="(golem.runtime.name=vm)", timeout=30),),
    ),
    ClientCall("market", "begin_scan", (M, "beginScan"), str, variant="defaults"),
    ClientCall(
        "market",
        "collect_scan_results",
        (M, "collectScanResults"),
        list[Offer],
        ("scan-1",),
        {"wait": 2.0, "max_events": 50},
    ),
    ClientCall("market", "end_scan", (M, "endScan"), None, ("scan-1",)),
    # market: agreements
    ClientCall("market", "create_agreement", (M, "createAgreement"), str, (PROPOSAL, VALID_TO)),
    ClientCall(
        "market",
        "list_agreements",
        (M, "listAgreements"),
        list[AgreementListEntry],
        kwargs={
            "state": "Approved",
            "after_date": SINCE,
            "before_date": VALID_TO,
            "app_session_id": "session-1",
        },
    ),
    ClientCall("market", "get_agreement", (M, "getAgreement"), Agreement, (AGREEMENT,)),
    ClientCall(
        "market",
        "confirm_agreement",
        (M, "confirmAgreement"),
        None,
        (AGREEMENT,),
        {"app_session_id": "session-1"},
    ),
    ClientCall(
        "market",
        "wait_for_approval",
        (M, "waitForApproval"),
        ApprovalResult,
        (AGREEMENT,),
        {"wait": 15.0},
    ),
    ClientCall(
        "market",
        "cancel_agreement",
        (M, "cancelAgreement"),
        None,
        (AGREEMENT, Reason("no longer needed")),
    ),
    ClientCall(
        "market", "terminate_agreement", (M, "terminateAgreement"), None, (AGREEMENT, REASON)
    ),
    ClientCall(
        "market",
        "terminate_agreement",
        (M, "terminateAgreement"),
        None,
        (AGREEMENT,),
        variant="no reason",
    ),
    ClientCall(
        "market",
        "get_terminate_agreement_reason",
        (M, "getTerminateAgreementReason"),
        AgreementTerminationReason,
        (AGREEMENT,),
    ),
    ClientCall(
        "market",
        "collect_agreement_events",
        (M, "collectAgreementEvents"),
        AgreementEvents,
        kwargs={
            "wait": 5.0,
            "after_timestamp": SINCE,
            "max_events": 20,
            "app_session_id": "session-1",
        },
    ),
    # activity
    ClientCall(
        "activity",
        "create_activity",
        (A, "createActivity"),
        str,
        (AGREEMENT,),
        {"wait": 30.0},
        reply=_string_reply,
        reply_schema={"type": "string"},
    ),
    ClientCall(
        "activity",
        "create_activity_with_credentials",
        (A, "createActivity"),
        CreateActivityResult,
        (AGREEMENT,),
        {"requestor_pub_key": "02ab", "wait": 30.0},
        reply_schema={"$ref": "#/components/schemas/CreateActivityResult"},
    ),
    ClientCall("activity", "exec", (A, "exec"), str, (ACTIVITY, EXE_SCRIPT)),
    ClientCall(
        "activity",
        "get_exec_batch_results",
        (A, "getExecBatchResults"),
        list[ExeScriptCommandResult],
        (ACTIVITY, BATCH),
        {"wait": 5.0},
    ),
    ClientCall(
        "activity",
        "get_exec_batch_results",
        (A, "getExecBatchResults"),
        list[ExeScriptCommandResult],
        (ACTIVITY, BATCH),
        {"wait": 5.0, "command_index": 2},
        variant="command index",
    ),
    ClientCall(
        "activity",
        "open_exec_stream",
        (A, "getExecBatchResults"),
        list[RuntimeEvent],
        reply=_sse_reply,
        invoke=_read_exec_stream,
    ),
    ClientCall("activity", "get_state", (A, "GetActivityState"), ActivityState, (ACTIVITY,)),
    ClientCall("activity", "get_usage", (A, "GetActivityUsage"), ActivityUsage, (ACTIVITY,)),
    ClientCall(
        "activity",
        "get_running_command",
        (A, "GetRunningCommand"),
        list[ExeScriptCommandState],
        (ACTIVITY,),
    ),
    ClientCall("activity", "get_activity_agreement", (A, "getActivityAgreement"), str, (ACTIVITY,)),
    ClientCall("activity", "list_activities", (A, "listActivities"), list[str], (AGREEMENT,)),
    ClientCall(
        "activity", "destroy_activity", (A, "DestroyActivity"), None, (ACTIVITY,), {"wait": 10.0}
    ),
    # payment: allocations
    ClientCall(
        "payment",
        "create_allocation",
        (P, "createAllocation"),
        AllocationModel,
        (
            NewAllocation(
                Decimal("10"), "erc20-holesky-tglm", timeout=VALID_TO, extend_timeout=3600
            ),
        ),
    ),
    ClientCall(
        "payment",
        "create_allocation",
        (P, "createAllocation"),
        AllocationModel,
        (
            NewAllocation(
                Decimal("0.5"),
                PaymentPlatform("erc20", "holesky", "tglm"),
                address="0x" + "5e" * 20,
            ),
        ),
        variant="platform object",
    ),
    ClientCall(
        "payment",
        "get_allocations",
        (P, "getAllocations"),
        list[AllocationModel],
        kwargs={"after_timestamp": SINCE, "max_items": 10},
    ),
    ClientCall("payment", "get_allocation", (P, "getAllocation"), AllocationModel, (ALLOCATION,)),
    ClientCall(
        "payment",
        "amend_allocation",
        (P, "amendAllocation"),
        AllocationModel,
        (ALLOCATION, AllocationUpdate(Decimal("20"), VALID_TO)),
    ),
    ClientCall("payment", "release_allocation", (P, "releaseAllocation"), None, (ALLOCATION,)),
    ClientCall(
        "payment",
        "get_expenditures",
        (P, "getAllocationExpenditures"),
        list[Expenditure],
        (ALLOCATION,),
    ),
    ClientCall(
        "payment",
        "get_demand_decorations",
        (P, "getDemandDecorations"),
        MarketDecoration,
        ([ALLOCATION, "alloc-2"],),
    ),
    ClientCall("payment", "get_requestor_accounts", (P, "getRequestorAccounts"), list[Account]),
    # payment: debit notes
    ClientCall(
        "payment",
        "get_debit_notes",
        (P, "getDebitNotes"),
        list[DebitNote],
        kwargs={"after_timestamp": SINCE, "max_items": 10},
    ),
    ClientCall("payment", "get_debit_note", (P, "getDebitNote"), DebitNote, (DEBIT_NOTE,)),
    ClientCall(
        "payment",
        "get_payments_for_debit_note",
        (P, "getPaymentsForDebitNote"),
        list[Payment],
        (DEBIT_NOTE,),
    ),
    ClientCall(
        "payment",
        "get_debit_note_events",
        (P, "getDebitNoteEvents"),
        list[DebitNoteEvent],
        kwargs={
            "wait": 5.0,
            "after_timestamp": SINCE,
            "max_events": 10,
            "app_session_id": "session-1",
            "kinds": ("RECEIVED", "CANCELLED", "PAYMENT_OK"),
        },
    ),
    ClientCall(
        "payment",
        "get_debit_note_events",
        (P, "getDebitNoteEvents"),
        list[DebitNoteEvent],
        reply=_events_without("DebitNotePaymentStatusEvent"),
        variant="no payment-status event",
    ),
    ClientCall(
        "payment",
        "accept_debit_note",
        (P, "acceptDebitNote"),
        None,
        (DEBIT_NOTE, Decimal("0.012345678901234567"), ALLOCATION),
        {"wait": 15.0},
    ),
    ClientCall(
        "payment", "reject_debit_note", (P, "rejectDebitNote"), None, (DEBIT_NOTE, REJECTION)
    ),
    # payment: invoices
    ClientCall(
        "payment",
        "get_invoices",
        (P, "getInvoices"),
        list[Invoice],
        kwargs={"after_timestamp": SINCE, "max_items": 10},
    ),
    ClientCall("payment", "get_invoice", (P, "getInvoice"), Invoice, (INVOICE,)),
    ClientCall(
        "payment",
        "get_payments_for_invoice",
        (P, "getPaymentsForInvoice"),
        list[Payment],
        (INVOICE,),
    ),
    ClientCall(
        "payment",
        "get_invoice_events",
        (P, "getInvoiceEvents"),
        list[InvoiceEvent],
        kwargs={
            "wait": 5.0,
            "after_timestamp": SINCE,
            "max_events": 10,
            "app_session_id": "session-1",
            "kinds": ("RECEIVED",),
        },
    ),
    ClientCall(
        "payment",
        "get_invoice_events",
        (P, "getInvoiceEvents"),
        list[InvoiceEvent],
        reply=_events_without("InvoicePaymentStatusEvent"),
        variant="no payment-status event",
    ),
    ClientCall(
        "payment",
        "accept_invoice",
        (P, "acceptInvoice"),
        None,
        (INVOICE, Decimal("13.14"), ALLOCATION),
        {"wait": 15.0},
    ),
    ClientCall(
        "payment",
        "reject_invoice",
        (P, "rejectInvoice"),
        None,
        (INVOICE, REJECTION),
        {"wait": 15.0},
    ),
    # payment: payments
    ClientCall(
        "payment",
        "get_payments",
        (P, "getPayments"),
        list[Payment],
        kwargs={
            "wait": 5.0,
            "after_timestamp": SINCE,
            "max_events": 10,
            "network": "holesky",
            "driver": "erc20",
        },
    ),
    ClientCall("payment", "get_payment", (P, "getPayment"), Payment, (PAYMENT,)),
    ClientCall(
        "payment",
        "payments_status",
        (P, "paymentsStatus"),
        list[DriverStatusProperty],
        kwargs={"network": "holesky", "driver": "erc20"},
    ),
    # net, in both layouts
    *_net_calls("net", V1),
    *_net_calls("net_v2", V2),
]

#: Public methods of the API objects that send no request of their own.
NO_REQUEST: dict[tuple[str, str], str] = {
    ("net", "tcp_url"): "builds the websocket URL that connect_tcp opens",
    ("net_v2", "tcp_url"): "builds the websocket URL that connect_tcp opens",
}

API_ATTRIBUTES = ("identity", "market", "activity", "payment", "net", "net_v2")


def public_methods(client: YagnaClient) -> Iterator[tuple[str, str]]:
    """(api, method) for every public method of the client's API objects."""
    for api in API_ATTRIBUTES:
        obj = getattr(client, api)
        for name in dir(type(obj)):
            if not name.startswith("_") and callable(getattr(obj, name)):
                yield api, name


# --- the fake daemon -----------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the client sent, the operation it targets and the reply it got."""

    request: httpx2.Request
    operation: Operation | None
    response: httpx2.Response | None
    error: str | None = None


@dataclass
class FakeDaemon:
    """An httpx2 transport handler: validates each request against the specs, then answers
    with ``reply`` (default: the daemon's status and a spec example body), itself validated.

    A request the specs reject gets a 400 and is recorded, so the test can report it.
    """

    reply: Reply | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.host == "127.0.0.1", request.url  # loopback only, and only in memory
        try:
            op = validate_request(request)
        except AssertionError as exc:
            self.exchanges.append(Exchange(request, None, None, f"request: {exc}"))
            return httpx2.Response(400, json={"message": "invalid request (contract test)"})
        response = (self.reply or (lambda op, _: daemon_reply(op)))(op, request)
        try:
            validate_response(request, response)
        except AssertionError as exc:
            self.exchanges.append(Exchange(request, op, response, f"sample reply: {exc}"))
            raise
        self.exchanges.append(Exchange(request, op, response))
        return response

    def client(self) -> YagnaClient:
        return YagnaClient(
            ApiConfig(app_key=APP_KEY, api_url=API_URL), transport=httpx2.MockTransport(self)
        )

    def errors(self) -> list[str]:
        return [e.error for e in self.exchanges if e.error]

    def operations(self) -> list[Operation]:
        return [e.operation for e in self.exchanges if e.operation is not None]


async def run_call(call: ClientCall, daemon: FakeDaemon) -> Any:
    """Run ``call`` against ``daemon``; raise AssertionError with every contract violation."""
    async with daemon.client() as client:
        try:
            result = await call.run(client)
        except Exception as exc:
            if daemon.errors():
                raise AssertionError("\n".join(daemon.errors())) from exc
            raise
    if daemon.errors():
        raise AssertionError("\n".join(daemon.errors()))
    return result


# --- checking results ----------------------------------------------------------------------------


def conforms(value: Any, expected: Any) -> bool:
    """Whether ``value`` has the type ``expected`` (classes, None, X | Y, list[X])."""
    if expected is None or expected is type(None):
        return value is None
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in typing.get_args(expected))
    if origin is list:
        (item,) = typing.get_args(expected)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    return isinstance(value, expected)


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def dropped_fields(value: Any, data: Any, path: str = "") -> list[str]:
    """Fields present (non-null) in the JSON ``data`` whose model attribute stayed None."""
    found: list[str] = []
    if isinstance(value, list) and isinstance(data, list):
        for i, (v, d) in enumerate(zip(value, data, strict=False)):
            found.extend(dropped_fields(v, d, f"{path}[{i}]"))
    elif attrs.has(type(value)) and isinstance(data, dict):
        for attribute in attrs.fields(type(value)):
            for key in (_camel(attribute.name), attribute.name, attribute.name.rstrip("_")):
                if key in data:
                    break
            else:
                continue
            inner = getattr(value, attribute.name)
            if data[key] is not None and inner is None:
                found.append(f"{path}.{key}")
            else:
                found.extend(dropped_fields(inner, data[key], f"{path}.{key}"))
    return found


def spec_operation(call: ClientCall) -> Operation:
    spec, operation_id = call.operation
    matches = [
        op for op in load_specs().operations if op.spec == spec and op.operation_id == operation_id
    ]
    assert len(matches) == 1, (call.operation, matches)
    return matches[0]
