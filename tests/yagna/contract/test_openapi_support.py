"""Self-tests of the contract harness: it rejects what the daemon would not take, accepts what it
does, and generates values its own schemas accept."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .openapi_support import (
    DAEMON_OPERATIONS,
    PATCHES,
    SPEC_FILES,
    Operation,
    Specs,
    daemon_reply,
    daemon_status,
    example_request,
    from_schema,
    iter_component_schemas,
    patched_docs,
    requestor_operations,
    spec_dir,
    spec_example,
    validate_request,
    validate_response,
    validate_value,
)

ROOT = "http://127.0.0.1:7465"
AUTH = {"Authorization": "Bearer app-key"}
ALL_SCHEMAS = [(spec, name) for spec in SPEC_FILES for name in iter_component_schemas(spec)]


def request(
    method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx2.Request:
    """A request with the app key (plus ``headers``) to the daemon's default address."""
    return httpx2.Request(method, ROOT + path, headers={**AUTH, **(headers or {})}, **kwargs)


def reply(
    status: int, body: object = None, content_type: str = "application/json"
) -> httpx2.Response:
    return httpx2.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )


def exe_script(*commands: object) -> dict[str, str]:
    return {"text": json.dumps(list(commands))}


# --- locating and patching the specs ---------------------------------------------------------


def test_specs_are_vendored_inside_the_checkout() -> None:
    checkout = Path(__file__).resolve().parents[3]
    assert (checkout / "pyproject.toml").is_file()
    assert spec_dir() == checkout / "tests" / "yagna" / "contract" / "specs"
    assert spec_dir().is_relative_to(checkout)


def test_vendored_specs_match_their_recorded_checksums() -> None:
    """The specs are kept byte for byte as taken upstream: ``specs/README.md`` lists each file's
    SHA-256, and a changed or added file must say so there."""
    readme = (spec_dir() / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"`([0-9a-f]{64})`\s+`([\w.-]+\.yaml)`", readme)
    recorded = {name: digest for digest, name in listed}
    on_disk = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in spec_dir().glob("*.yaml")
    }
    assert recorded == on_disk


def test_missing_spec_dir_is_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vendored in the project at tests/yagna"):
        spec_dir(tmp_path / "nowhere")


def test_every_patch_and_daemon_operation_names_its_reason() -> None:
    for patch in PATCHES:
        assert re.search(r"§\d+", patch.section), patch
        assert patch.reason, patch
    for (method, path), entry in DAEMON_OPERATIONS.items():
        assert method in {"GET", "POST", "PUT", "DELETE"}
        assert path.startswith(SPEC_FILES[entry.spec]), (method, path)
        assert re.search(r"§\d+", entry.reason), (method, path)


def test_patches_stay_in_memory(specs: Specs) -> None:
    text = (spec_dir() / "activity-api.yaml").read_text(encoding="utf-8")
    assert "update-interval" in text  # the file keeps the spec's own (kebab-case) keys
    progress = specs.docs["activity-api.yaml"]["components"]["schemas"]["ProgressArgs"]
    assert "updateInterval" in progress["properties"]
    # and a fresh load applies the patches again, the same way
    assert patched_docs()["activity-api.yaml"]["components"]["schemas"]["ProgressArgs"] == progress


def test_daemon_operations_are_part_of_the_patched_specs(specs: Specs) -> None:
    for method, path in DAEMON_OPERATIONS:
        op = specs.find(method, path)
        assert op.deviation
    with pytest.raises(AssertionError, match="wrong method"):
        specs.find("POST", "/market-api/v1/agreements/{agreementId}/terminate/reason")


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "operation_id"),
    [
        (
            request("POST", "/market-api/v1/demands", json={"properties": {}, "constraints": "()"}),
            "subscribeDemand",
        ),
        (
            request(
                "GET", "/market-api/v1/demands/s/events", params={"timeout": 5, "maxEvents": 10}
            ),
            "collectOffers",
        ),
        (
            request(
                "GET",
                "/market-api/v1/agreements",
                params={"afterDate": "2024-05-01T10:00:00+00:00", "state": "Approved"},
            ),
            "listAgreements",
        ),
        (
            request(
                "POST",
                "/market-api/v1/agreements/a/terminate",
                json={"message": "done", "golem.requestor.code": "Success"},
            ),
            "terminateAgreement",
        ),
        (
            request(
                "POST",
                "/market-api/v1/agreements/a/terminate",
                content=b"null",
                headers={"Content-Type": "application/json"},
            ),
            "terminateAgreement",
        ),
        (
            request("GET", "/market-api/v1/agreements/a/terminate/reason"),
            "getTerminateAgreementReason",
        ),
        (request("DELETE", "/market-api/v1/scan/s"), "endScan"),
        (request("POST", "/activity-api/v1/activity", json="ab" * 32), "createActivity"),
        (
            request("POST", "/activity-api/v1/activity", json={"agreementId": "ab" * 32}),
            "createActivity",
        ),
        (
            request("GET", "/activity-api/v1/activity", params={"agreementId": "a"}),
            "listActivities",
        ),
        (
            request(
                "POST",
                "/activity-api/v1/activity/a/exec",
                json=exe_script(
                    {"deploy": {"progress": {"updateInterval": "300ms", "updateStep": None}}},
                    {"start": {"args": []}},
                    {
                        "run": {
                            "entry_point": "/bin/sh",
                            "args": ["-c", "ls"],
                            "capture": {"stdout": {"atEnd": {"tail": 4096, "format": "str"}}},
                        }
                    },
                ),
            ),
            "exec",
        ),
        (
            request(
                "GET", "/activity-api/v1/activity/a/exec/b", headers={"Accept": "text/event-stream"}
            ),
            "getExecBatchResults",
        ),
        (
            request(
                "POST",
                "/payment-api/v1/allocations",
                json={"totalAmount": "5", "paymentPlatform": "erc20-holesky-tglm"},
            ),
            "createAllocation",
        ),
        (
            request(
                "POST",
                "/payment-api/v1/allocations",
                json={"totalAmount": "5", "paymentPlatform": {"driver": "erc20"}},
            ),
            "createAllocation",
        ),
        (request("GET", "/payment-api/v1/allocations", params={"maxItems": 5}), "getAllocations"),
        (
            request(
                "GET",
                "/payment-api/v1/debitNoteEvents",
                headers={"X-Requestor-Events": "RECEIVED,CANCELLED"},
            ),
            "getDebitNoteEvents",
        ),
        (
            request("GET", "/payment-api/v1/demandDecorations", params={"allocationIds": "a,b"}),
            "getDemandDecorations",
        ),
        (request("GET", "/payment-api/v1/payments/status"), "paymentsStatus"),
        (request("GET", "/me?authToken=app-key", headers={"Authorization": ""}), "getIdentity"),
        (httpx2.Request("GET", ROOT + "/version/get"), "getVersion"),
        (request("GET", "/net-api/v2/net/status"), "getStatus"),
        (request("POST", "/net-api/v1/net", json={"ip": "192.168.0.0/24"}), "createNetwork"),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.method} {v.url.path}",
)
def test_valid_requests_are_accepted(req: httpx2.Request, operation_id: str) -> None:
    assert validate_request(req).operation_id == operation_id


@pytest.mark.parametrize(
    ("req", "complaint"),
    [
        pytest.param(
            request("PUT", "/market-api/v1/demands", json={}), "wrong method", id="wrong method"
        ),
        pytest.param(
            request("POST", "/market-api/v1/agreements/a/terminate/reason"),
            "wrong method",
            id="terminate reason is GET on the daemon",
        ),
        pytest.param(
            request("POST", "/market-api/v1/demands", json={"properties": {}}),
            "'constraints' is a required property",
            id="missing required field",
        ),
        pytest.param(
            request("POST", "/market-api/v1/demands", json={"properties": {}, "constraints": 5}),
            "5 is not of type 'string'",
            id="wrong type",
        ),
        pytest.param(
            request(
                "POST",
                "/market-api/v1/demands",
                content=b'{"properties": {}',
                headers={"Content-Type": "application/json"},
            ),
            "request does not match",
            id="body not JSON",
        ),
        pytest.param(
            request("GET", "/market-api/v1/demands/s/events", params={"maxEvents": 0}),
            "maxEvents",
            id="parameter out of range",
        ),
        pytest.param(
            request("GET", "/market-api/v1/demands/s/events", params={"max_events": 5}),
            "unknown query parameter",
            id="unknown query parameter",
        ),
        pytest.param(
            request(
                "GET", "/market-api/v1/agreements", params={"afterDate": "2024-05-01T10:00:00"}
            ),
            "is not a 'date-time'",
            id="timestamp without zone",
        ),
        pytest.param(
            request("GET", "/market-api/v1/agreements?afterDate=2024-05-01T10:00:00+00:00"),
            "is not a 'date-time'",
            id="plus sign not percent-encoded",
        ),
        pytest.param(
            request("GET", "/market-api/v1/agreements", params={"state": "Done"}),
            "is not one of",
            id="value outside the enum",
        ),
        pytest.param(httpx2.Request("GET", ROOT + "/me"), "Security", id="no app key"),
        pytest.param(
            request("POST", "/market-api/v1/agreements/a/terminate"),
            "Missing required request body",
            id="terminate without a body",
        ),
        pytest.param(
            request("POST", "/market-api/v1/agreements/a/confirm", json={}),
            "takes no request body",
            id="unexpected body",
        ),
        pytest.param(
            request("POST", "/activity-api/v1/activity", json=5),
            "not valid under any",
            id="createActivity with a number",
        ),
        pytest.param(
            request(
                "POST",
                "/activity-api/v1/activity/a/exec",
                json=exe_script({"run": {"entryPoint": "/bin/sh"}}),
            ),
            "'entry_point' is a required property",
            id="camelCase entry_point",
        ),
        pytest.param(
            request(
                "POST",
                "/activity-api/v1/activity/a/exec",
                json=exe_script({"deploy": {}, "start": {}}),
            ),
            "exactly one key",
            id="two commands in one object",
        ),
        pytest.param(
            request(
                "POST",
                "/activity-api/v1/activity/a/exec",
                json=exe_script({"deploy": {"progress": {"updateStep": "1"}}}),
            ),
            "is not of type 'integer'",
            id="progress step as a string",
        ),
        pytest.param(
            request("POST", "/activity-api/v1/activity/a/exec", json={"text": "run"}),
            "not JSON",
            id="exe script text not JSON",
        ),
        pytest.param(
            request(
                "GET",
                "/activity-api/v1/activity/a/exec/b",
                headers={"Accept": "text/event-stream, application/json"},
            ),
            "exactly 'text/event-stream'",
            id="SSE accept header not literal",
        ),
        pytest.param(
            request(
                "POST",
                "/payment-api/v1/allocations",
                json={"totalAmount": "5", "allocationId": "x"},
            ),
            "read-only",
            id="read-only field in a request",
        ),
        pytest.param(
            request(
                "GET",
                "/payment-api/v1/debitNoteEvents",
                headers={"X-Requestor-Events": "RECEIVED,PAID"},
            ),
            "X-Requestor-Events",
            id="unknown requestor event kind",
        ),
        pytest.param(
            request("GET", "/payment-api/v1/demandDecorations"),
            "allocationIds",
            id="missing required query parameter",
        ),
        pytest.param(request("GET", "/market-api/v2/demands"), "no yagna API", id="unknown prefix"),
        pytest.param(
            request("GET", "/market-api/v1/offers/o/events/x"), "no operation", id="unknown path"
        ),
    ],
)
def test_invalid_requests_are_rejected(req: httpx2.Request, complaint: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        validate_request(req)


# --- replies ---------------------------------------------------------------------------------

_AGREEMENT_EVENTS = "/market-api/v1/agreementEvents"


@pytest.mark.parametrize(
    ("req", "resp"),
    [
        (
            httpx2.Request("GET", ROOT + "/version/get"),
            reply(
                200,
                {
                    "current": {
                        "version": "0.17.6",
                        "name": "v0.17.6",
                        "seen": False,
                        "releaseTs": "2024-12-07T14:23:48",
                    },
                    "pending": None,
                },
            ),
        ),
        (
            request("GET", "/payment-api/v1/allocations/a"),
            reply(200, spec_example("payment-api.yaml", "Allocation")),
        ),
        (
            request("GET", "/payment-api/v1/debitNotes/d"),
            reply(
                200,
                {
                    **spec_example("payment-api.yaml", "DebitNote"),
                    "usageCounterVector": [1.5, 30],
                },
            ),
        ),
        (request("GET", "/payment-api/v1/debitNotes/d"), reply(404, {"message": None})),
        (request("DELETE", "/payment-api/v1/allocations/a"), reply(200, None)),
        (request("DELETE", "/market-api/v1/demands/s"), httpx2.Response(204)),
        (request("POST", "/market-api/v1/agreements/a/terminate"), httpx2.Response(200)),
        (request("POST", "/market-api/v1/agreements"), reply(200, "ab" * 32)),
        (request("GET", "/me"), httpx2.Response(401, text="Invalid application key")),
        (
            request("GET", "/activity-api/v1/activity/a/state"),
            reply(200, {"state": ["Ready", None]}),
        ),
        (
            request("GET", "/activity-api/v1/activity/a/exec/b"),
            reply(
                200,
                [
                    {
                        "index": 0,
                        "eventDate": "2024-05-01T10:41:42.564784259Z",
                        "result": "Ok",
                        "stdout": None,
                        "stderr": [104, 105],
                        "message": None,
                        "isBatchFinished": True,
                    }
                ],
            ),
        ),
        (
            request(
                "GET", "/activity-api/v1/activity/a/exec/b", headers={"Accept": "text/event-stream"}
            ),
            httpx2.Response(
                200,
                headers={"Content-Type": "text/event-stream"},
                text=(
                    'event: runtime\ndata: {"batch_id":"b","index":0,"timestamp":'
                    '"2024-05-01T10:00:00.123456789","kind":{"stdout":"hi\\n"}}\nid: 0\n\n'
                    'event: runtime\ndata: {"batch_id":"b","index":0,"timestamp":'
                    '"2024-05-01T10:00:00.2","kind":{"finished":{"return_code":0,"message":null}}}\n'
                    "id: 1\n\n:ping\n\n"
                ),
            ),
        ),
        (
            request("GET", _AGREEMENT_EVENTS),
            reply(
                200,
                [
                    {
                        "eventType": "AgreementTerminatedEvent",
                        "eventDate": "2024-05-01T10:00:00Z",
                        "agreementId": "a",
                        "terminator": "Provider",
                        "signature": "",
                        "reason": {"message": "Expired", "golem.provider.code": "Expired"},
                    }
                ],
            ),
        ),
        (
            request("POST", "/payment-api/v1/allocations"),
            httpx2.Response(
                400,
                json={"type": "about:blank", "detail": "Insufficient funds"},
                headers={"Content-Type": "application/problem+json"},
            ),
        ),
    ],
    ids=lambda v: (
        f"{v.method} {v.url.path}" if isinstance(v, httpx2.Request) else str(v.status_code)
    ),
)
def test_valid_replies_are_accepted(req: httpx2.Request, resp: httpx2.Response) -> None:
    validate_response(req, resp)


@pytest.mark.parametrize(
    ("req", "resp", "complaint"),
    [
        pytest.param(
            request("GET", "/payment-api/v1/allocations/a"),
            reply(200, {"allocationId": "a"}),
            "is a required property",
            id="missing fields",
        ),
        pytest.param(
            request("GET", "/payment-api/v1/allocations/a"),
            reply(418, {}),
            "Unknown response http status",
            id="undeclared status",
        ),
        pytest.param(
            request("DELETE", "/market-api/v1/demands/s"),
            reply(204, {"x": 1}),
            "declares no body",
            id="body on a 204",
        ),
        pytest.param(
            request("GET", _AGREEMENT_EVENTS),
            reply(
                200,
                [
                    {
                        "eventType": "AgreementTerminatedEvent",
                        "eventDate": "2024-05-01T10:00:00Z",
                        "agreementId": "a",
                    }
                ],
            ),
            "'terminator' is a required property",
            id="event without its subtype's fields",
        ),
        pytest.param(
            request("GET", _AGREEMENT_EVENTS),
            reply(
                200,
                [
                    {
                        "eventType": "ProposalEvent",
                        "eventDate": "2024-05-01T10:00:00Z",
                        "agreementId": "a",
                    }
                ],
            ),
            "is not one of",
            id="event of another family",
        ),
        pytest.param(
            request("GET", "/market-api/v1/demands/s/events"),
            reply(
                200,
                [
                    {
                        "eventType": "AgreementEvent",
                        "eventDate": "2024-05-01T10:00:00Z",
                        "agreement": spec_example("market-api.yaml", "Agreement"),
                    }
                ],
            ),
            "is not one of",
            id="provider-side event for a requestor",
        ),
        pytest.param(
            request("GET", "/activity-api/v1/activity/a/state"),
            reply(200, {"state": ["Ready"]}),
            "too short",
            id="state not a pair",
        ),
        pytest.param(
            request(
                "GET", "/activity-api/v1/activity/a/exec/b", headers={"Accept": "text/event-stream"}
            ),
            httpx2.Response(
                200,
                headers={"Content-Type": "text/event-stream"},
                text=(
                    'event: runtime\ndata: {"batchId":"b","index":0,"timestamp":'
                    '"2024-05-01T10:00:00Z","kind":{"finished":{"returnCode":0}}}\n\n'
                ),
            ),
            "'batch_id' is a required property",
            id="camelCase runtime event",
        ),
        pytest.param(
            request("GET", "/payment-api/v1/debitNotes/d"),
            reply(
                200,
                {**spec_example("payment-api.yaml", "DebitNote"), "timestamp": "2024-05-01 10:00"},
            ),
            "is not a 'date-time'",
            id="bad timestamp",
        ),
    ],
)
def test_invalid_replies_are_rejected(
    req: httpx2.Request, resp: httpx2.Response, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        validate_response(req, resp)


# --- the operation list ------------------------------------------------------------------------


def test_requestor_operations_leave_out_the_provider_side() -> None:
    ids = {(op.spec, op.operation_id) for op in requestor_operations()}
    for expected in [
        ("market-api.yaml", "subscribeDemand"),
        ("market-api.yaml", "collectOffers"),
        ("market-api.yaml", "terminateAgreement"),
        ("activity-api.yaml", "exec"),
        ("activity-api.yaml", "GetActivityState"),
        ("payment-api.yaml", "acceptDebitNote"),
        ("net-api.yaml", "connect_tcp"),
        ("net-api-v2.yaml", "getStatus"),
        ("identity-api.yaml", "getIdentity"),
        ("version-api.yaml", "getVersion"),
    ]:
        assert expected in ids
    for provider_only in [
        ("market-api.yaml", "subscribeOffer"),
        ("market-api.yaml", "approveAgreement"),
        ("activity-api.yaml", "CollectActivityEvents"),
        ("activity-api.yaml", "SetActivityState"),
        ("payment-api.yaml", "issueDebitNote"),
        ("payment-api.yaml", "sendInvoice"),
    ]:
        assert provider_only not in ids


def test_daemon_success_codes() -> None:
    codes = {
        op.operation_id: daemon_status(op)
        for op in requestor_operations()
        if op.spec in ("market-api.yaml", "activity-api.yaml", "payment-api.yaml")
    }
    assert codes["createAgreement"] == 200  # spec 201
    assert codes["counterProposalDemand"] == 200  # spec 201
    assert codes["terminateAgreement"] == 200  # spec 204
    assert codes["createActivity"] == 200  # spec 201
    assert codes["subscribeDemand"] == 201
    assert codes["unsubscribeDemand"] == 204
    assert codes["createAllocation"] == 201


_UNSATISFIABLE = {
    # The spec's Invoice requires `status`, a readOnly schema: no request body can be valid
    # (a provider operation the spec also tags requestor).
    ("payment-api.yaml", "issueInvoice"),
}


@pytest.mark.parametrize("op", requestor_operations(), ids=str)
def test_example_request_and_reply_of_every_requestor_operation(op: Operation) -> None:
    if (op.spec, op.operation_id) in _UNSATISFIABLE:
        pytest.skip("no request body can satisfy the spec")
    req = example_request(op)
    assert validate_request(req) == op
    assert validate_response(req, daemon_reply(op)) == op


# --- generated values --------------------------------------------------------------------------

_FEW = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize(("spec", "name"), ALL_SCHEMAS, ids=lambda v: v)
def test_examples_match_their_schema(spec: str, name: str) -> None:
    validate_value(spec, name, spec_example(spec, name))


@pytest.mark.parametrize(("spec", "name"), ALL_SCHEMAS, ids=lambda v: v)
def test_generated_values_match_their_schema(spec: str, name: str) -> None:
    @_FEW
    @given(value=from_schema(spec, name))
    def check(value: object) -> None:
        validate_value(spec, name, value)

    check()


@_FEW
@given(value=from_schema("common.yaml", "Timestamp"))
def test_generated_timestamps_are_rfc3339_utc(value: str) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z", value)
    assert dt.datetime.fromisoformat(value).tzinfo == dt.UTC


@_FEW
@given(value=from_schema("market-api.yaml", "RequestorEvent"))
def test_generated_events_carry_their_own_event_type(value: dict[str, object]) -> None:
    required = {
        "ProposalEvent": "proposal",
        "ProposalRejectedEvent": "proposalId",
        "PropertyQueryEvent": "propertyQuery",
    }
    assert required[str(value["eventType"])] in value


@_FEW
@given(value=from_schema("payment-api.yaml", "Allocation", write=True))
def test_generated_request_bodies_leave_out_read_only_fields(value: dict[str, object]) -> None:
    assert not {"allocationId", "spentAmount", "remainingAmount", "timestamp"} & set(value)
    validate_value("payment-api.yaml", "Allocation", value, write=True)


def test_plain_jsonschema_agrees_on_a_simple_schema() -> None:
    # The harness validates with openapi-schema-validator (jsonschema with OpenAPI 3.0
    # keywords); on a schema with no OpenAPI extensions both must agree.
    schema = {"type": "object", "required": ["ip"], "properties": {"ip": {"type": "string"}}}
    for value, valid in [({"ip": "192.168.0.1"}, True), ({"ip": 1}, False), ({}, False)]:
        assert jsonschema.Draft4Validator(schema).is_valid(value) is valid
        try:
            validate_value("net-api.yaml", "Address", value)
        except AssertionError:
            assert not valid
        else:
            assert valid


@given(st.data())
@_FEW
def test_values_from_the_wrong_schema_are_rejected(data: st.DataObject) -> None:
    # The generator does not produce values every schema accepts: an Agreement is no Allocation.
    value = data.draw(from_schema("market-api.yaml", "Agreement", extra_keys=False))
    with pytest.raises(AssertionError):
        validate_value("payment-api.yaml", "Allocation", value)
