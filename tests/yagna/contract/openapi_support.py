"""Contract-test support: the yagna daemon's OpenAPI specs, as the real daemon serves them.

What this module gives the contract tests:

* the official specs, vendored in ``specs/`` beside this file, loaded with their ``$ref``\\ s to
  ``common.yaml`` resolved (:func:`load_specs`), patched in memory where the real daemon differs
  from them (:data:`PATCHES`, each naming its section of ``docs/daemon-notes.md``); the files are
  never changed;
* :func:`validate_request` and :func:`validate_response`: check an ``httpx2`` request (or a reply
  to it) against the operation it targets and raise :class:`AssertionError` with a readable message;
* :func:`requestor_operations`: every requestor-side operation of the specs;
* :func:`from_schema` (a Hypothesis strategy) and :func:`spec_example` (one fixed value): JSON
  values valid for a component schema, shaped like what the daemon really sends (decimal
  strings for money, ``0x`` node ids, RFC 3339 timestamps with up to nanoseconds, ...);
* :func:`validate_value`: check a JSON value against a component schema.

Operations the daemon serves differently from, or in addition to, the specs are listed in
:data:`DAEMON_OPERATIONS` (keyed by method and path template, with the reason) and added to the
patched specs, so they are validated like any other operation.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from hypothesis import strategies as st
from jsonschema_path import SchemaPath
from jsonschema_path.loaders import JsonschemaSafeLoader
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = [
    "DAEMON_OPERATIONS",
    "PATCHES",
    "SPEC_FILES",
    "DaemonOperation",
    "Operation",
    "Patch",
    "Specs",
    "daemon_reply",
    "daemon_status",
    "example_request",
    "from_schema",
    "load_specs",
    "requestor_operations",
    "response_schema",
    "spec_dir",
    "spec_example",
    "validate_request",
    "validate_response",
    "validate_value",
]

JSON = Any
Doc = dict[str, Any]
Docs = dict[str, Doc]

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


# --------------------------------------------------------------------------------------------
# Where the specs are
# --------------------------------------------------------------------------------------------


def spec_dir(folder: Path | None = None) -> Path:
    """The folder of the vendored specs (``specs/`` beside this file, see its ``README.md``),
    or ``folder``; FileNotFoundError naming the missing files if any is absent."""
    if folder is None:
        folder = SPECS_FOLDER
    missing = [name for name in [*SPEC_FILES, "common.yaml"] if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the yagna OpenAPI specs are missing from {folder} ({', '.join(missing)}): they are "
            f"vendored in the project at {SPECS_FOLDER.relative_to(_CHECKOUT)}"
        )
    return folder


#: The vendored OpenAPI specs, inside the checkout (never a folder beside it).
SPECS_FOLDER = Path(__file__).resolve().with_name("specs")
_CHECKOUT = Path(__file__).resolve().parents[3]

#: Spec file -> the path prefix its operations are served under by the daemon.
SPEC_FILES: dict[str, str] = {
    "market-api.yaml": "/market-api/v1",
    "activity-api.yaml": "/activity-api/v1",
    "payment-api.yaml": "/payment-api/v1",
    "net-api.yaml": "/net-api/v1",
    "net-api-v2.yaml": "/net-api/v2",
    "identity-api.yaml": "",  # GET /me, at the root
    "version-api.yaml": "",  # GET /version/get, at the root
}

#: (path prefix, spec file), longest prefix first; ``/me`` and ``/version/get`` are exact paths.
_ROUTES: tuple[tuple[str, str], ...] = (
    ("/market-api/v1", "market-api.yaml"),
    ("/activity-api/v1", "activity-api.yaml"),
    ("/payment-api/v1", "payment-api.yaml"),
    ("/net-api/v1", "net-api.yaml"),
    ("/net-api/v2", "net-api-v2.yaml"),
    ("/version/get", "version-api.yaml"),
    ("/me", "identity-api.yaml"),
)


def _load_yaml(path: Path) -> Doc:
    # The same loader openapi-core uses (timestamps stay strings), then a JSON round trip so the
    # unquoted status codes (``201:``) become string keys as in JSON.
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=JsonschemaSafeLoader)
    return json.loads(json.dumps(data))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Patches: where the daemon (0.17.6) differs from the specs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """One in-memory change to a spec, and why."""

    spec: str
    target: str
    section: str  # of docs/daemon-notes.md (or the ya-client Rust model the daemon serialises)
    reason: str
    apply: Callable[[Docs], None]


def _schemas(docs: Docs, spec: str) -> dict[str, Any]:
    return docs[spec]["components"]["schemas"]  # type: ignore[no-any-return]


def _operation(docs: Docs, spec: str, method: str, path: str) -> dict[str, Any]:
    return docs[spec]["paths"][path][method]  # type: ignore[no-any-return]


def _ref(name: str, spec: str | None = None) -> dict[str, str]:
    return {"$ref": f"{spec or ''}#/components/schemas/{name}"}


#: A 200 reply whose JSON body is ``null`` (docs/daemon-notes.md §10.3).
_NULL_BODY = {
    "description": "The daemon answers the JSON body null (docs/daemon-notes.md §10.3).",
    "content": {"application/json": {"schema": {"nullable": True, "enum": [None]}}},
}


def _daemon_status(
    docs: Docs, spec: str, method: str, path: str, spec_code: str, code: str, *, empty: bool = False
) -> None:
    """The daemon answers ``code`` where the spec says ``spec_code``; both stay valid."""
    op = _operation(docs, spec, method, path)
    op["responses"][code] = (
        {"description": "The daemon answers this code with an empty body."}
        if empty
        else copy.deepcopy(op["responses"][spec_code])
    )
    op["x-daemon-status"] = int(code)


def _patch_success_codes(docs: Docs) -> None:
    m = "market-api.yaml"
    _daemon_status(docs, m, "post", "/agreements", "201", "200")
    _daemon_status(
        docs, m, "post", "/demands/{subscriptionId}/proposals/{proposalId}", "201", "200"
    )
    _daemon_status(docs, m, "post", "/agreements/{agreementId}/cancel", "204", "200", empty=True)
    _daemon_status(docs, m, "post", "/agreements/{agreementId}/terminate", "204", "200", empty=True)
    _daemon_status(docs, "activity-api.yaml", "post", "/activity", "201", "200")


def _patch_null_bodies(docs: Docs) -> None:
    targets = {
        "activity-api.yaml": [("delete", "/activity/{activityId}")],
        "payment-api.yaml": [
            ("post", "/debitNotes/{debitNoteId}/accept"),
            ("post", "/invoices/{invoiceId}/accept"),
            ("post", "/invoices/{invoiceId}/reject"),
            ("delete", "/allocations/{allocationId}"),
        ],
        "net-api.yaml": [
            ("post", "/net/{networkId}/addresses"),
            ("post", "/net/{networkId}/nodes"),
            ("delete", "/net/{networkId}/nodes/{nodeId}"),
            ("delete", "/net/{networkId}"),
        ],
        "net-api-v2.yaml": [
            ("post", "/vpn/net/{networkId}/addresses"),
            ("post", "/vpn/net/{networkId}/nodes"),
            ("delete", "/vpn/net/{networkId}/nodes/{nodeId}"),
            ("delete", "/vpn/net/{networkId}"),
        ],
    }
    for spec, ops in targets.items():
        for method, path in ops:
            _operation(docs, spec, method, path)["responses"]["200"] = copy.deepcopy(_NULL_BODY)


def _patch_error_message(docs: Docs) -> None:
    docs["common.yaml"]["components"]["schemas"]["ErrorMessage"]["properties"]["message"][
        "nullable"
    ] = True


def _patch_unauthorized(docs: Docs) -> None:
    docs["common.yaml"]["responses"]["Unauthorized"]["content"]["text/plain"] = {
        "schema": {"type": "string"}
    }


def _patch_auth_token_param(docs: Docs) -> None:
    for doc in docs.values():
        if "security" not in doc:
            continue
        doc["components"].setdefault("securitySchemes", {})["app_key_param"] = {
            "$ref": "common.yaml#/components/securitySchemes/app_key_param"
        }
        doc["security"] = [{"app_key": []}, {"app_key_param": []}]


def _patch_unauthorized_everywhere(docs: Docs) -> None:
    for doc in docs.values():
        if "security" not in doc:
            continue
        for item in doc["paths"].values():
            for method in HTTP_METHODS:
                if method in item:
                    item[method]["responses"].setdefault(
                        "401", {"$ref": "common.yaml#/responses/Unauthorized"}
                    )


def _patch_list_agreements_params(docs: Docs) -> None:
    op = _operation(docs, "market-api.yaml", "get", "/agreements")
    params = []
    for param in op["parameters"]:
        if param.get("$ref", "").endswith(("/afterTimestamp", "/beforeTimestamp")):
            # OpenAPI 3.0 ignores keys beside a $ref: the spec's `name: afterDate` has no effect.
            param = {
                "name": param["name"],
                "in": "query",
                "required": False,
                "schema": {"type": "string", "format": "date-time"},
            }
        params.append(param)
    op["parameters"] = params


def _patch_agreement_list_entry(docs: Docs) -> None:
    _schemas(docs, "market-api.yaml")["AgreementListEntry"] = {
        "type": "object",
        "required": ["id", "timestamp", "approvedDate", "role"],
        "properties": {
            "id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "approvedDate": {"type": "string", "format": "date-time", "nullable": True},
            "role": {"type": "string", "enum": ["Provider", "Requestor"]},
        },
    }


def _patch_termination_reason(docs: Docs) -> None:
    common = "common.yaml#/components/schemas"
    _schemas(docs, "market-api.yaml")["AgreementTerminationReason"] = {
        "type": "object",
        "required": ["eventDate", "agreementId", "terminator", "signature"],
        "properties": {
            "eventDate": {"$ref": f"{common}/Timestamp"},
            "agreementId": {"type": "string"},
            "terminator": {"type": "string", "enum": ["Requestor", "Provider"]},
            "signature": {"type": "string"},
            "reason": {"$ref": f"{common}/Reason"},
        },
    }
    reply = docs["market-api.yaml"]["components"]["responses"]["AgreementTerminationReason"]
    reply["content"]["application/json"]["schema"] = _ref("AgreementTerminationReason")


def _patch_requestor_events(docs: Docs) -> None:
    names = ["ProposalEvent", "ProposalRejectedEvent", "PropertyQueryEvent"]
    _schemas(docs, "market-api.yaml")["RequestorEvent"] = _variants("eventType", names)
    op = _operation(docs, "market-api.yaml", "get", "/demands/{subscriptionId}/events")
    op["responses"]["200"] = {
        "description": "Requestor negotiation events.",
        "content": {
            "application/json": {"schema": {"type": "array", "items": _ref("RequestorEvent")}}
        },
    }


def _patch_reason_body(docs: Docs) -> None:
    # A copy of common.yaml's Reason that may also be null (the client sends `null` when it has
    # no reason); nullable cannot sit beside a $ref in OpenAPI 3.0.
    reason = copy.deepcopy(docs["common.yaml"]["components"]["schemas"]["Reason"])
    reason["nullable"] = True
    body = docs["market-api.yaml"]["components"]["requestBodies"]["Reason"]
    body["content"]["application/json"]["schema"] = reason
    # The handlers take Json<Option<Reason>>: an empty body is a 400, `null` is no reason.
    body["required"] = True


def _patch_activity_state(docs: Docs) -> None:
    state = _schemas(docs, "activity-api.yaml")["ActivityState"]["properties"]["state"]
    state["minItems"] = 2
    state["maxItems"] = 2
    # `nullable` does not add null to an `enum` (OpenAPI 3.0.3): the pending state is null
    # whenever no transition is under way, so the unpatched spec rejects every idle activity.
    state["items"]["enum"].append(None)


def _patch_exe_script_result(docs: Docs) -> None:
    props = _schemas(docs, "activity-api.yaml")["ExeScriptCommandResult"]["properties"]
    for name in ("stdout", "stderr"):
        # (nullable beside oneOf is not honoured by the validator: null goes in a branch)
        props[name] = {
            "oneOf": [
                {"type": "string", "nullable": True},
                {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
            ],
        }
    props["message"]["nullable"] = True


def _patch_runtime_event(docs: Docs) -> None:
    schemas = _schemas(docs, "activity-api.yaml")
    output = {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
        ]
    }

    def kind(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [name],
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {name: body},
        }

    schemas["RuntimeEvent"] = {
        "type": "object",
        "required": ["batch_id", "index", "timestamp", "kind"],
        "properties": {
            "batch_id": {"type": "string"},
            "index": {"type": "integer", "minimum": 0},
            # naive UTC, e.g. 2024-05-01T10:00:00.123456789
            "timestamp": {
                "type": "string",
                "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?$",
            },
            "kind": _ref("RuntimeEventKind"),
        },
    }
    # One-key objects, as serde writes the Rust enum; the spec's camelCase shapes and its
    # {"str": ...}/{"bin": ...} outputs are not what the daemon sends.
    for obsolete in ("CommandOutputStr", "CommandOutputBin"):
        del schemas[obsolete]
    schemas["CommandOutput"] = output
    schemas["RuntimeEventKindFinishedBody"] = {
        "type": "object",
        "required": ["return_code"],
        "properties": {
            "return_code": {"type": "integer", "format": "int32"},
            "message": {"type": "string", "nullable": True},
        },
    }
    schemas["RuntimeEventKindProgressBody"] = {
        "type": "object",
        "required": ["step", "progress"],
        "properties": {
            "step": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 0},
            },
            "message": {"type": "string", "nullable": True},
            "progress": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 0, "nullable": True},
            },
            "unit": {"type": "string", "nullable": True},
        },
    }
    kinds = {
        "RuntimeEventKindStarted": kind(
            "started",
            {
                "type": "object",
                "required": ["command"],
                "properties": {"command": {"type": "object"}},
            },
        ),
        "RuntimeEventKindFinished": kind("finished", _ref("RuntimeEventKindFinishedBody")),
        "RuntimeEventKindStdOut": kind("stdout", _ref("CommandOutput")),
        "RuntimeEventKindStdErr": kind("stderr", _ref("CommandOutput")),
        "RuntimeEventKindProgress": kind("progress", _ref("RuntimeEventKindProgressBody")),
    }
    schemas.update(kinds)
    schemas["RuntimeEventKind"] = {"oneOf": [_ref(name) for name in kinds]}
    op = _operation(docs, "activity-api.yaml", "get", "/activity/{activityId}/exec/{batchId}")
    op["responses"]["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}


def _patch_exe_script_commands(docs: Docs) -> None:
    schemas = _schemas(docs, "activity-api.yaml")
    schemas["ProgressArgs"]["properties"] = {
        "updateInterval": {"type": "string", "nullable": True},
        "updateStep": {"type": "integer", "minimum": 1, "nullable": True},
    }
    schemas["DeployNetwork"]["required"] = ["id", "ip"]
    schemas["DeployNetwork"]["properties"].update(
        {
            "gateway": {"type": "string"},
            "nodeIp": {"type": "string"},
            "nodes": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    )
    body = schemas["DeployCommandBody"]["properties"]
    body["volumes"] = {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "object"}},
        ]
    }
    body["env"] = {"type": "object", "additionalProperties": {"type": "string"}}
    body["hostname"] = {"type": "string"}
    schemas["CaptureFormat"]["enum"] = ["str", "bin", "string", "binary"]
    for name in ("CaptureAtEndBody",):
        schemas[name]["properties"].update(
            {
                "head": {"type": "integer", "minimum": 0},
                "tail": {"type": "integer", "minimum": 0},
                "headTail": {"type": "integer", "minimum": 0},
            }
        )
    schemas["CaptureStreamBody"]["properties"]["limit"] = {"type": "integer", "minimum": 0}
    schemas["TransferCommandBody"]["properties"]["fileset"] = {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"oneOf": [{"type": "string"}, _ref("FileSet")]}},
        ]
    }
    schemas["FileSet"]["type"] = "object"


def _patch_get_allocations_params(docs: Docs) -> None:
    # The spec declares these two on POST /allocations (where nothing reads them).
    op = _operation(docs, "payment-api.yaml", "get", "/allocations")
    op["parameters"] = [
        {"$ref": "common.yaml#/parameters/afterTimestamp"},
        {"$ref": "common.yaml#/parameters/maxItems"},
    ]


_REQUESTOR_EVENT_KINDS = "RECEIVED|ACCEPTED|REJECTED|CANCELLED|SETTLED|PAYMENT_EVENT|PAYMENT_OK"


def _patch_requestor_events_header(docs: Docs) -> None:
    header = {
        "name": "X-Requestor-Events",
        "in": "header",
        "required": False,
        "schema": {
            "type": "string",
            "pattern": f"^({_REQUESTOR_EVENT_KINDS})(,({_REQUESTOR_EVENT_KINDS}))*$",
        },
    }
    for path in ("/debitNoteEvents", "/invoiceEvents"):
        op = _operation(docs, "payment-api.yaml", "get", path)
        op["parameters"] = [*op.get("parameters", []), copy.deepcopy(header)]


def _patch_payment_platform(docs: Docs) -> None:
    _schemas(docs, "payment-api.yaml")["PaymentPlatform"]["type"] = "object"


def _patch_usage_counter_vector(docs: Docs) -> None:
    props = _schemas(docs, "payment-api.yaml")["DebitNote"]["properties"]
    props["usageCounterVector"] = {"type": "array", "items": {"type": "number"}}


def _patch_allocation_problem_json(docs: Docs) -> None:
    op = _operation(docs, "payment-api.yaml", "post", "/allocations")
    for code in ("400", "500"):
        op["responses"][code] = {
            "description": "Allocation error.",
            "content": {
                "application/json": {"schema": _ref("ErrorMessage", "common.yaml")},
                "application/problem+json": {"schema": {"type": "object"}},
            },
        }


def _patch_reject_debit_note(docs: Docs) -> None:
    op = _operation(docs, "payment-api.yaml", "post", "/debitNotes/{debitNoteId}/reject")
    op["responses"]["501"] = {
        "description": "Not implemented by the daemon.",
        "content": {
            "application/json": {"schema": _ref("ErrorMessage", "common.yaml")},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


def _patch_net_status(docs: Docs) -> None:
    props = _schemas(docs, "net-api-v2.yaml")["Status"]["properties"]
    props["listenIp"]["nullable"] = True
    props["publicIp"]["nullable"] = True


def _patch_version_pending(docs: Docs) -> None:
    # nullable cannot sit beside a $ref in OpenAPI 3.0: inline a nullable copy.
    schemas = _schemas(docs, "version-api.yaml")
    pending = copy.deepcopy(schemas["YagnaVersionInfo"])
    pending["nullable"] = True
    schemas["YagnaVersionResponse"]["properties"]["pending"] = pending


def _patch_documented_error_statuses(docs: Docs) -> None:
    # Error statuses docs/daemon-notes.md documents that the spec does not declare; bodies
    # ErrorMessage.
    targets = [
        ("activity-api.yaml", "get", "/activity/{activityId}/exec/{batchId}", "408", "Timeout"),
        ("payment-api.yaml", "get", "/demandDecorations", "404", "NotFound"),
        ("payment-api.yaml", "get", "/allocations/{allocationId}", "410", "Gone"),
    ]
    for spec, method, path, code, name in targets:
        responses = _operation(docs, spec, method, path)["responses"]
        responses.setdefault(code, {"$ref": f"common.yaml#/responses/{name}"})


PATCHES: tuple[Patch, ...] = (
    Patch(
        "common.yaml",
        "ErrorMessage.message",
        "§1, §5.2",
        "error bodies may carry `message: null` (bare 404s in payment)",
        _patch_error_message,
    ),
    Patch(
        "common.yaml",
        "responses/Unauthorized",
        "§1, §9.9",
        "401 bodies are plain text, not JSON",
        _patch_unauthorized,
    ),
    Patch(
        "*",
        "security",
        "§1",
        "the app key may also be given as ?authToken= on any URL",
        _patch_auth_token_param,
    ),
    Patch(
        "*",
        "401 replies",
        "§1, §9.9",
        "every endpoint but /version/get answers 401 to a missing or unknown app key; the "
        "activity API declares no 401",
        _patch_unauthorized_everywhere,
    ),
    Patch(
        "market-api.yaml / activity-api.yaml",
        "success codes",
        "§9.1",
        "createAgreement, counterProposalDemand and createActivity answer 200 (spec 201); "
        "cancelAgreement and terminateAgreement answer 200 (spec 204)",
        _patch_success_codes,
    ),
    Patch(
        "*",
        "200 replies without a declared body",
        "§10.3",
        "activity DELETE, net address/node POST, node/network DELETE, debit-note and invoice "
        "accept (and invoice reject, §5.2), allocation DELETE answer the JSON body null",
        _patch_null_bodies,
    ),
    Patch(
        "market-api.yaml",
        "GET /agreements query",
        "§2.1",
        "the daemon reads afterDate/beforeDate; the spec's `name:` beside a $ref is void in "
        "OpenAPI 3.0, so it declares afterTimestamp/beforeTimestamp",
        _patch_list_agreements_params,
    ),
    Patch(
        "market-api.yaml",
        "AgreementListEntry",
        "§2.1 (ya-client AgreementListEntry)",
        "entries are {id, timestamp, approvedDate|null, role}; the spec requires "
        "creationTs/approveTs and declares a discriminator on a missing property",
        _patch_agreement_list_entry,
    ),
    Patch(
        "market-api.yaml",
        "AgreementTerminationReason",
        "§2.2",
        "terminate/reason answers the AgreementTerminatedEvent fields without eventType",
        _patch_termination_reason,
    ),
    Patch(
        "market-api.yaml",
        "collectOffers 200",
        "§2.2 (ya-client RequestorEvent)",
        "a requestor receives only ProposalEvent, ProposalRejectedEvent, PropertyQueryEvent; "
        "AgreementEvent exists only on the provider side",
        _patch_requestor_events,
    ),
    Patch(
        "market-api.yaml",
        "requestBodies/Reason",
        "§2.3 step 10 (yagna core/market/src/rest_api: body: Json<Option<Reason>>)",
        "reject, cancel and terminate need a JSON body: a Reason or null (an empty body is a "
        "400); the spec makes the body optional and not nullable",
        _patch_reason_body,
    ),
    Patch(
        "activity-api.yaml",
        "ActivityState.state",
        "§4.3",
        "the state is always a pair [current, pending-or-null]",
        _patch_activity_state,
    ),
    Patch(
        "activity-api.yaml",
        "ExeScriptCommandResult",
        "§10.2, §4.3",
        "stdout/stderr/message are null when empty; captured output is a string or, with "
        "format bin, an array of bytes",
        _patch_exe_script_result,
    ),
    Patch(
        "activity-api.yaml",
        "RuntimeEvent + exec SSE",
        "§4.5, §9.5",
        "the exec event stream is text/event-stream with snake_case RuntimeEvent data",
        _patch_runtime_event,
    ),
    Patch(
        "activity-api.yaml",
        "ExeScript command bodies",
        "§4.2, §9.6",
        "progress keys are camelCase; net mask optional, nodeIp/nodes/gateway; volumes list or "
        "map; capture formats str/bin (aliases string/binary), head/tail/headTail inline; "
        "fileset string or list",
        _patch_exe_script_commands,
    ),
    Patch(
        "payment-api.yaml",
        "getAllocations query",
        "§5.1 (yagna core/payment/src/api/allocations/mod.rs: get_allocations reads FilterParams)",
        "GET /allocations reads afterTimestamp and maxItems; the spec lists them on POST",
        _patch_get_allocations_params,
    ),
    Patch(
        "payment-api.yaml",
        "X-Requestor-Events header",
        "§5.2",
        "debit-note and invoice event polls take a comma-separated list of event kinds in "
        "X-Requestor-Events (RECEIVED, ACCEPTED, REJECTED, CANCELLED, SETTLED, PAYMENT_EVENT, "
        "PAYMENT_OK); the spec omits the header",
        _patch_requestor_events_header,
    ),
    Patch(
        "payment-api.yaml",
        "PaymentPlatform",
        "§10.4",
        "an untyped oneOf branch matches a plain string too, so every real Allocation failed "
        "oneOf: treat the PaymentPlatform branch as an object",
        _patch_payment_platform,
    ),
    Patch(
        "payment-api.yaml",
        "DebitNote.usageCounterVector",
        "§10.2, §5.2",
        "an array of numbers, not an object",
        _patch_usage_counter_vector,
    ),
    Patch(
        "payment-api.yaml",
        "createAllocation 400/500",
        "§5.1, §1",
        "allocation errors are application/problem+json",
        _patch_allocation_problem_json,
    ),
    Patch(
        "payment-api.yaml",
        "rejectDebitNote 501",
        "§9.7, §5.2",
        "debit-note rejection is not implemented by the daemon",
        _patch_reject_debit_note,
    ),
    Patch(
        "activity-api.yaml / payment-api.yaml",
        "documented error statuses",
        "§4.4, §9.4, §5.1",
        "getExecBatchResults answers 408 when the awaited commandIndex is not done in time; "
        "getDemandDecorations answers 404 for an unknown allocation id; getAllocation answers "
        "410 for a released allocation; the spec declares none of them",
        _patch_documented_error_statuses,
    ),
    Patch(
        "net-api-v2.yaml",
        "Status.listenIp/publicIp",
        "§6 (ya-client net::Status)",
        "Option fields serialised as null when unknown",
        _patch_net_status,
    ),
    Patch(
        "version-api.yaml",
        "YagnaVersionResponse.pending",
        "§10.1",
        "`pending` is null when no update is pending",
        _patch_version_pending,
    ),
)


# --------------------------------------------------------------------------------------------
# Operations the daemon serves but the specs do not (or not there)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonOperation:
    """An operation as the daemon serves it, where the specs lack it or declare it elsewhere."""

    spec: str
    operation_id: str
    reason: str
    definition: dict[str, Any]
    replaces: tuple[str, str] | None = None  # (method, path) of the spec's version, removed


#: (METHOD, full path template) -> how the daemon serves it. Each becomes an operation of the
#: patched spec, so requests and replies are validated like the specs' own.
DAEMON_OPERATIONS: dict[tuple[str, str], DaemonOperation] = {
    ("GET", "/market-api/v1/agreements/{agreementId}/terminate/reason"): DaemonOperation(
        "market-api.yaml",
        "getTerminateAgreementReason",
        "docs/daemon-notes.md §9.2, §2.1: the daemon serves it as GET; the spec says POST",
        {},  # the spec's operation, moved to GET
        replaces=("post", "/agreements/{agreementId}/terminate/reason"),
    ),
    ("DELETE", "/market-api/v1/scan/{subscriptionId}"): DaemonOperation(
        "market-api.yaml",
        "endScan",
        "docs/daemon-notes.md §2.1: the daemon ends a scan with DELETE /scan/{id} -> 204; the "
        "spec says DELETE /scan/{id}/events -> 201",
        {
            "parameters": [{"$ref": "#/components/parameters/subscriptionId"}],
            "responses": {
                "204": {"description": "Scan ended."},
                "401": {"$ref": "common.yaml#/responses/Unauthorized"},
                "404": {"$ref": "common.yaml#/responses/NotFound"},
                "default": {"$ref": "common.yaml#/responses/UnexpectedError"},
            },
        },
        replaces=("delete", "/scan/{subscriptionId}/events"),
    ),
    ("GET", "/activity-api/v1/activity"): DaemonOperation(
        "activity-api.yaml",
        "listActivities",
        "docs/daemon-notes.md §4.1: GET /activity?agreementId= lists the agreement's activity "
        "ids; not in the spec",
        {
            "parameters": [
                {
                    "name": "agreementId",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "Activity ids.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "string"}}
                        }
                    },
                },
                "400": {"$ref": "common.yaml#/responses/BadRequest"},
                "401": {"$ref": "common.yaml#/responses/Unauthorized"},
                "403": {"$ref": "common.yaml#/responses/Forbidden"},
                "404": {"$ref": "common.yaml#/responses/NotFound"},
                "500": {"$ref": "common.yaml#/responses/ServerError"},
            },
        },
    ),
    ("GET", "/payment-api/v1/allocations/{allocationId}/expenditures"): DaemonOperation(
        "payment-api.yaml",
        "getAllocationExpenditures",
        "docs/daemon-notes.md §5.1: lists what an allocation paid per agreement/activity; not in "
        "the spec",
        {
            "parameters": [{"$ref": "#/components/parameters/allocationId"}],
            "responses": {
                "200": {
                    "description": "Expenditures.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": _ref("AllocationExpenditure")}
                        }
                    },
                },
                "401": {"$ref": "common.yaml#/responses/Unauthorized"},
                "404": {"$ref": "common.yaml#/responses/NotFound"},
                "500": {"$ref": "common.yaml#/responses/ServerError"},
            },
        },
    ),
}

#: Schemas the daemon-only operations use (ya-client model, docs/daemon-notes.md §5.1).
_EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {
    "payment-api.yaml": {
        "AllocationExpenditure": {
            "type": "object",
            "required": ["allocationId", "agreementId", "acceptedAmount", "scheduledAmount"],
            "properties": {
                "allocationId": {"type": "string"},
                "agreementId": {"type": "string"},
                "activityId": {"type": "string"},
                "acceptedAmount": {"type": "string"},
                "scheduledAmount": {"type": "string"},
            },
        }
    }
}

# Notes on deviations that need no entry here:
# * createActivity with a bare JSON string body (docs/daemon-notes.md §9.10): the spec already
#   declares `oneOf: [string, CreateActivityRequest]` for the body and the mirrored reply.
# * /net-api/v2/vpn/net/... and /net-api/v1/net/... (§9.12): both layouts have their own spec.


def _apply_daemon_operations(docs: Docs) -> None:
    for (method, full_path), entry in DAEMON_OPERATIONS.items():
        doc = docs[entry.spec]
        path = full_path.removeprefix(SPEC_FILES[entry.spec])
        definition = copy.deepcopy(entry.definition)
        if entry.replaces is not None:
            old_method, old_path = entry.replaces
            old_item = doc["paths"][old_path]
            old = old_item.pop(old_method)
            if not definition:
                definition = old
            else:
                definition = {**{k: v for k, v in old.items() if k in ("tags",)}, **definition}
            # path-level parameters go with the operation
            if "parameters" in old_item:
                definition.setdefault("parameters", old_item["parameters"])
            if not any(m in old_item for m in HTTP_METHODS):
                del doc["paths"][old_path]
        else:
            definition.setdefault("tags", ["requestor"])
        definition["operationId"] = entry.operation_id
        definition["x-daemon-deviation"] = entry.reason
        definition["x-daemon-only"] = entry.replaces is None
        doc["paths"].setdefault(path, {})[method.lower()] = definition
    for spec, schemas in _EXTRA_SCHEMAS.items():
        _schemas(docs, spec).update(copy.deepcopy(schemas))


# --------------------------------------------------------------------------------------------
# Discriminators: make them enforceable
# --------------------------------------------------------------------------------------------
#
# Not a daemon deviation. The specs put `discriminator` on a base schema (Event, DebitNoteEvent,
# ...) and derive the concrete events with allOf; openapi-schema-validator honours a
# discriminator only beside oneOf/anyOf, so `{"eventType": "Bogus"}` or a ProposalEvent without
# `proposal` would pass. Every reference to such a base (outside the subtypes' own allOf) is
# pointed at `<Base>Variants`: oneOf the concrete subtypes with an explicit mapping, and an enum
# of their names.


def _variants(prop: str, names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [prop],
        "properties": {prop: {"type": "string", "enum": names}},
        "oneOf": [_ref(name) for name in names],
        "discriminator": {
            "propertyName": prop,
            "mapping": {name: f"#/components/schemas/{name}" for name in names},
        },
    }


def _subtypes(schemas: dict[str, Any], base: str) -> list[str]:
    target = f"#/components/schemas/{base}"
    return [
        name
        for name, schema in schemas.items()
        if any(part.get("$ref") == target for part in schema.get("allOf", []))
    ]


def _concrete_subtypes(schemas: dict[str, Any], base: str) -> list[str]:
    found: list[str] = []
    for name in _subtypes(schemas, base):
        if "discriminator" in _merged_local(schemas, name):
            found.extend(_concrete_subtypes(schemas, name))
        else:
            found.append(name)
    return found


def _merged_local(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema's own keys plus those of its inline allOf parts (not the referenced ones)."""
    schema = schemas[name]
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        if "$ref" not in part:
            merged.update(part)
    return merged


def _make_discriminators_explicit(docs: Docs) -> None:
    for doc in docs.values():
        schemas = doc.get("components", {}).get("schemas", {})
        bases = {
            name: _merged_local(schemas, name)["discriminator"]["propertyName"]
            for name in list(schemas)
            if "discriminator" in _merged_local(schemas, name)
            and "oneOf" not in schemas[name]
            and _subtypes(schemas, name)
        }
        for base, prop in bases.items():
            schemas[f"{base}Variants"] = _variants(prop, _concrete_subtypes(schemas, base))
        redirect = {f"#/components/schemas/{b}": f"#/components/schemas/{b}Variants" for b in bases}
        _redirect_refs(doc.get("paths", {}), redirect)
        _redirect_refs(doc.get("components", {}), redirect)


def _redirect_refs(node: Any, redirect: dict[str, str], in_all_of: bool = False) -> None:
    """Point every ``$ref`` in ``redirect`` at its new target, except in allOf lists (where the
    subtypes name their base)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in redirect and not in_all_of:
            node["$ref"] = redirect[ref]
        for key, value in node.items():
            _redirect_refs(value, redirect, in_all_of=key == "allOf")
    elif isinstance(node, list):
        for item in node:
            _redirect_refs(item, redirect, in_all_of=in_all_of)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"
)


def is_rfc3339(value: object) -> bool:
    """A strict RFC 3339 date-time check (with a time zone), for the ``date-time`` format."""
    if not isinstance(value, str):
        return True
    match = _RFC3339.match(value)
    if match is None:
        return False
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    return second <= 60


_FORMATS = {"date-time": is_rfc3339}


@dataclass(frozen=True)
class Operation:
    """One operation of the (patched) specs."""

    spec: str
    operation_id: str
    method: str  # upper case
    path: str  # full path template, prefix included
    tags: tuple[str, ...] = ()
    daemon_only: bool = False  # served by the daemon, absent from the specs
    deviation: str = ""  # why it is in DAEMON_OPERATIONS, if it is

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.operation_id}, {self.spec})"


@dataclass
class Specs:
    """The patched specs, their openapi-core objects and a route index."""

    folder: Path
    docs: Docs
    apis: dict[str, OpenAPI]
    operations: list[Operation]
    _routes: list[tuple[re.Pattern[str], str, str]] = field(default_factory=list)
    _registry: Registry[Any] | None = None

    def uri(self, spec: str) -> str:
        return (self.folder / spec).as_uri()

    def path_item(self, op: Operation) -> dict[str, Any]:
        """The spec's path item holding ``op``."""
        item: dict[str, Any] = self.docs[op.spec]["paths"][
            op.path.removeprefix(SPEC_FILES[op.spec])
        ]
        return item

    def operation_definition(self, op: Operation) -> dict[str, Any]:
        """The spec's operation object of ``op``."""
        definition: dict[str, Any] = self.path_item(op)[op.method.lower()]
        return definition

    def find(self, method: str, path: str) -> Operation:
        """The operation serving ``method path``; AssertionError if there is none."""
        spec = _spec_for_path(path)
        allowed: list[str] = []
        for pattern, template, spec_file in self._routes:
            if spec_file != spec or not pattern.match(path):
                continue
            for op in self.operations:
                if op.spec == spec and op.path == template:
                    if op.method == method.upper():
                        return op
                    allowed.append(f"{op.method} ({op.operation_id})")
            if allowed:
                break
        if allowed:
            raise AssertionError(
                f"{method} {path}: wrong method; {spec} serves this path with " + ", ".join(allowed)
            )
        raise AssertionError(f"{method} {path}: no operation of {spec} serves this path")

    @property
    def registry(self) -> Registry[Any]:
        if self._registry is None:
            registry: Registry[Any] = Registry()
            for name, doc in self.docs.items():
                registry = registry.with_resource(
                    self.uri(name), Resource.from_contents(doc, default_specification=DRAFT4)
                )
            self._registry = registry
        return self._registry


def _spec_for_path(path: str) -> str:
    for prefix, spec in _ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            if spec in ("identity-api.yaml", "version-api.yaml") and path != prefix:
                break
            return spec
    raise AssertionError(
        f"{path}: no yagna API serves this path (known prefixes: "
        + ", ".join(prefix for prefix, _ in _ROUTES)
        + ")"
    )


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def patched_docs(folder: Path | None = None) -> Docs:
    """The spec documents with :data:`PATCHES` and :data:`DAEMON_OPERATIONS` applied."""
    folder = folder or spec_dir()
    docs = {name: _load_yaml(folder / name) for name in [*SPEC_FILES, "common.yaml"]}
    for patch in PATCHES:
        patch.apply(docs)
    _apply_daemon_operations(docs)
    _make_discriminators_explicit(docs)
    return docs


@functools.cache
def load_specs() -> Specs:
    """Load and patch every spec once per test session."""
    folder = spec_dir()
    docs = patched_docs(folder)

    def serve(uri: str) -> Any:
        # Refs between the files resolve to the *patched* in-memory documents, never to the
        # files (and never to the network).
        name = uri.split("#", 1)[0].rsplit("/", 1)[-1]
        if name not in docs:
            raise LookupError(f"unexpected $ref target {uri}")
        return docs[name]

    config = Config(
        extra_format_validators=_FORMATS,
        extra_media_type_deserializers={"application/problem+json": json.loads},
    )
    apis: dict[str, OpenAPI] = {}
    operations: list[Operation] = []
    routes: list[tuple[re.Pattern[str], str, str]] = []
    for spec, prefix in SPEC_FILES.items():
        schema_path = SchemaPath.from_dict(
            docs[spec], base_uri=(folder / spec).as_uri(), handlers={"file": serve}
        )
        apis[spec] = OpenAPI(schema_path, config=config)
        for path, item in docs[spec]["paths"].items():
            template = prefix + path
            routes.append((_template_regex(template), template, spec))
            for method in HTTP_METHODS:
                if method in item:
                    op = item[method]
                    operations.append(
                        Operation(
                            spec=spec,
                            operation_id=op["operationId"],
                            method=method.upper(),
                            path=template,
                            tags=tuple(op.get("tags", ())),
                            daemon_only=bool(op.get("x-daemon-only")),
                            deviation=op.get("x-daemon-deviation", ""),
                        )
                    )
    # Literal segments win over templates (/payments/status before /payments/{paymentId}).
    routes.sort(key=lambda r: (r[1].count("{"), -len(r[1])))
    return Specs(folder, docs, apis, operations, routes)


# --------------------------------------------------------------------------------------------
# Requestor-side operations
# --------------------------------------------------------------------------------------------

_REQUESTOR_TAGS = frozenset({"requestor", "requestor_control", "requestor_state"})
_UNTAGGED_REQUESTOR = frozenset({"connect_tcp", "getIdentity", "getVersion"})


def requestor_operations() -> list[Operation]:
    """Every requestor-side operation: tagged requestor*, or the untagged identity, version and
    net websocket operations; the daemon-only operations of :data:`DAEMON_OPERATIONS` included
    (``daemon_only=True``). Provider-only operations are left out."""
    return [
        op
        for op in load_specs().operations
        if _REQUESTOR_TAGS.intersection(op.tags)
        or (not op.tags and op.operation_id in _UNTAGGED_REQUESTOR)
    ]


# --------------------------------------------------------------------------------------------
# Adapters: httpx2 -> openapi-core protocols
# --------------------------------------------------------------------------------------------


class _OpenAPIRequest:
    """An httpx2.Request seen through openapi-core's ``Request`` protocol."""

    def __init__(self, request: httpx2.Request) -> None:
        self._request = request
        request.read()
        url = request.url
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(url.params.multi_items())),
            header=Headers(list(request.headers.multi_items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        url = self._request.url
        return f"{url.scheme}://{url.netloc.decode('ascii')}"

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "").lower()


class _OpenAPIResponse:
    """An httpx2.Response seen through openapi-core's ``Response`` protocol."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        response.read()

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "").lower()

    @property
    def headers(self) -> Headers:
        return Headers(list(self._response.headers.multi_items()))

    @property
    def data(self) -> bytes | None:
        return self._response.content or None


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

#: Query parameters the daemon understands on every URL (docs/daemon-notes.md §1).
_GLOBAL_QUERY = frozenset({"authToken"})


def _describe(error: BaseException) -> str:
    lines = [f"{type(error).__name__}: {error}"]
    cause: BaseException | None = error.__cause__ or error.__context__
    seen = 0
    while cause is not None and seen < 4:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            for err in schema_errors:
                where = "/".join(str(p) for p in err.absolute_path) or "(root)"
                lines.append(f"  at {where}: {err.message}")
        else:
            lines.append(f"  caused by {type(cause).__name__}: {cause}")
        cause = cause.__cause__
        seen += 1
    return "\n".join(lines)


def _short(data: bytes | None, limit: int = 600) -> str:
    if not data:
        return "(empty)"
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _parameters(specs: Specs, op: Operation) -> list[dict[str, Any]]:
    """The parameters of ``op`` (its path item's and its own), refs resolved."""
    declared = [
        *specs.path_item(op).get("parameters", []),
        *specs.operation_definition(op).get("parameters", []),
    ]
    return [_resolve_node(specs, op.spec, param)[1] for param in declared]


def validate_request(request: httpx2.Request) -> Operation:
    """Check ``request`` against the operation it targets; return that operation.

    Checks the method, path parameters, query parameters (declared ones only, no unknown
    names), headers, security (app key) and the JSON body, plus the ExeScript inside an exec
    request. Raises AssertionError naming the operation and what is wrong.
    """
    specs = load_specs()
    op = specs.find(request.method, request.url.path)
    adapted = _OpenAPIRequest(request)
    context = f"{request.method} {request.url} -> {op}"
    try:
        specs.apis[op.spec].validate_request(adapted)
    except OpenAPIError as error:
        raise AssertionError(
            f"{context}: request does not match the spec\n{_describe(error)}\n"
            f"  body: {_short(request.content)}"
        ) from None

    declared = {p["name"] for p in _parameters(specs, op) if p["in"] == "query"} | _GLOBAL_QUERY
    unknown = sorted({name for name, _ in request.url.params.multi_items()} - declared)
    if unknown:
        raise AssertionError(
            f"{context}: unknown query parameter(s) {unknown}; the operation declares "
            f"{sorted(declared - _GLOBAL_QUERY)}"
        )
    definition = specs.operation_definition(op)
    if request.content and "requestBody" not in definition:
        raise AssertionError(
            f"{context}: the operation takes no request body, got {_short(request.content)}"
        )
    if op.operation_id == "exec":
        _validate_exe_script(op, json.loads(request.content)["text"])
    accept = request.headers.get("accept", "")
    if "text/event-stream" in accept and accept != "text/event-stream":
        raise AssertionError(
            f"{context}: the daemon compares Accept literally; send exactly "
            f"'text/event-stream', got {accept!r} (docs/daemon-notes.md §4.5)"
        )
    return op


_COMMANDS = {
    "deploy": "DeployCommand",
    "start": "StartCommand",
    "run": "RunCommand",
    "transfer": "TransferCommand",
    "sign": "SignCommand",
    "terminate": "TerminateCommand",
}


def _validate_exe_script(op: Operation, text: str) -> None:
    """The ExeScript inside ``{"text": ...}``: a JSON list of one-key command objects."""
    try:
        commands = json.loads(text)
    except ValueError as error:
        raise AssertionError(f"{op}: ExeScript text is not JSON: {error}: {text!r}") from None
    if not isinstance(commands, list) or not commands:
        raise AssertionError(f"{op}: ExeScript text must be a non-empty JSON list: {text!r}")
    for index, command in enumerate(commands):
        if not isinstance(command, dict) or len(command) != 1:
            raise AssertionError(
                f"{op}: ExeScript command {index} must be an object with exactly one key "
                f"(one of {sorted(_COMMANDS)}): {command!r}"
            )
        (name,) = command
        if name not in _COMMANDS:
            raise AssertionError(
                f"{op}: ExeScript command {index}: unknown command {name!r} "
                f"(one of {sorted(_COMMANDS)})"
            )
        validate_value(
            "activity-api.yaml",
            _COMMANDS[name],
            command,
            write=True,
            what=f"ExeScript command {index}",
        )


def validate_response(request: httpx2.Request, response: httpx2.Response) -> Operation:
    """Check ``response`` (a reply to ``request``) against the spec; return the operation.

    Status code, content type and JSON body are checked; an exec event stream
    (``text/event-stream``) is checked frame by frame against the daemon's RuntimeEvent.
    """
    specs = load_specs()
    op = specs.find(request.method, request.url.path)
    adapted_response = _OpenAPIResponse(response)
    context = f"{request.method} {request.url} -> {op}: reply {response.status_code}"
    content_type = adapted_response.content_type.split(";")[0].strip()
    if content_type == "text/event-stream" and op.operation_id == "getExecBatchResults":
        _validate_event_stream(context, response.text)
        return op
    try:
        specs.apis[op.spec].validate_response(_OpenAPIRequest(request), adapted_response)
    except OpenAPIError as error:
        raise AssertionError(
            f"{context} does not match the spec\n{_describe(error)}\n"
            f"  body: {_short(response.content)}"
        ) from None
    declared = _response_definition(specs, op, response.status_code)
    if response.content and not declared.get("content"):
        raise AssertionError(
            f"{context}: the spec declares no body for this status, got {_short(response.content)}"
        )
    return op


def _validate_event_stream(context: str, text: str) -> None:
    for block in re.split(r"\r?\n\r?\n", text):
        data = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
        if not data:
            continue
        try:
            event = json.loads("\n".join(data))
        except ValueError as error:
            raise AssertionError(f"{context}: SSE data is not JSON ({error}): {block!r}") from None
        validate_value("activity-api.yaml", "RuntimeEvent", event, what=f"{context}: SSE event")


def _response_definition(specs: Specs, op: Operation, status: int) -> dict[str, Any]:
    responses = specs.operation_definition(op)["responses"]
    reply = responses.get(str(status), responses.get("default", {}))
    return _resolve_node(specs, op.spec, reply)[1]


def _resolve_node(specs: Specs, spec: str, node: Any) -> tuple[str, Any]:
    """Follow ``$ref`` (possibly into common.yaml) until a real node; (spec, node)."""
    while isinstance(node, dict) and "$ref" in node:
        spec, node = _resolve_ref(specs.docs, spec, node["$ref"])
    return spec, node


def _resolve_ref(docs: Docs, spec: str, ref: str) -> tuple[str, Any]:
    file_part, _, pointer = ref.partition("#")
    if file_part:
        spec = file_part.rsplit("/", 1)[-1]
    node: Any = docs[spec]
    for token in pointer.strip("/").split("/"):
        if token:
            node = node[token.replace("~1", "/").replace("~0", "~")]
    return spec, node


# --------------------------------------------------------------------------------------------
# Validating single JSON values
# --------------------------------------------------------------------------------------------


def validate_value(
    spec: str,
    schema: str | dict[str, Any],
    value: JSON,
    *,
    write: bool = False,
    what: str = "value",
) -> None:
    """Check ``value`` against a component schema (by name) or an inline schema of ``spec``.

    ``write`` checks it as a request body (readOnly properties must be absent), otherwise as a
    reply. Raises AssertionError listing every violation.
    """
    specs = load_specs()
    if isinstance(schema, str):
        target: dict[str, Any] = {"$ref": f"{specs.uri(spec)}#/components/schemas/{schema}"}
    else:
        # an inline schema: its relative refs point into the spec document
        target = _absolutise(schema, specs.uri(spec))
    cls = OAS30WriteValidator if write else OAS30ReadValidator
    checker = copy.deepcopy(cls.FORMAT_CHECKER)
    checker.checks("date-time")(is_rfc3339)
    validator = cls(target, registry=specs.registry, format_checker=checker)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        details = "\n".join(
            f"  at {'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in errors
        )
        name = schema if isinstance(schema, str) else "inline schema"
        raise AssertionError(
            f"{what} is not a valid {spec} {name}:\n{details}\n  value: {json.dumps(value)[:600]}"
        )


def _absolutise(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        out = {k: _absolutise(v, base) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            if ref.startswith("#"):
                out["$ref"] = base + ref
            elif not ref.startswith("file:"):
                out["$ref"] = base.rsplit("/", 1)[0] + "/" + ref
        return out
    if isinstance(node, list):
        return [_absolutise(v, base) for v in node]
    return node


# --------------------------------------------------------------------------------------------
# Replies: what the daemon answers
# --------------------------------------------------------------------------------------------


def daemon_status(op: Operation) -> int:
    """The success status the daemon answers for ``op`` (docs/daemon-notes.md §9.1 where it
    differs)."""
    definition = load_specs().operation_definition(op)
    if "x-daemon-status" in definition:
        return int(definition["x-daemon-status"])
    codes = sorted(int(c) for c in definition["responses"] if c.isdigit() and c.startswith("2"))
    if not codes:
        codes = sorted(int(c) for c in definition["responses"] if c.isdigit() and int(c) < 400)
    return codes[0]


def response_schema(op: Operation, status: int | None = None) -> dict[str, Any] | None:
    """The JSON schema of ``op``'s reply (daemon success status by default), or None if the
    reply has no JSON body. Component refs stay relative to ``op.spec``."""
    specs = load_specs()
    reply = _response_definition(specs, op, status or daemon_status(op))
    media = reply.get("content", {}).get("application/json")
    if media is None:
        return None
    return media.get("schema", {})  # type: ignore[no-any-return]


def daemon_reply(
    op: Operation,
    body: JSON = ...,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx2.Response:
    """A reply as the daemon sends it: its status code and, if the operation has a JSON body,
    ``body`` serialised as JSON (default: :func:`spec_example` of the reply schema; ``None``
    is sent as the JSON body ``null``)."""
    status = status or daemon_status(op)
    all_headers = dict(headers or {})
    schema = response_schema(op, status)
    if schema is None:
        media = _response_definition(load_specs(), op, status).get("content", {})
        if media and body is ...:
            # a non-JSON reply (callEncrypted: application/octet-stream)
            all_headers.setdefault("Content-Type", next(iter(media)))
            return httpx2.Response(status, headers=all_headers, content=b"\x00\x01")
        return httpx2.Response(status, headers=all_headers)
    if body is ...:
        body = spec_example(op.spec, schema)
    all_headers.setdefault("Content-Type", "application/json")
    return httpx2.Response(status, headers=all_headers, content=json.dumps(body).encode())


# --------------------------------------------------------------------------------------------
# Generating values
# --------------------------------------------------------------------------------------------

_HEX = "0123456789abcdef"


def _hex(n: int) -> st.SearchStrategy[str]:
    return st.text(_HEX, min_size=n, max_size=n)


_NODE_ID = st.builds(lambda h: "0x" + h, _hex(40))
_DECIMAL = st.builds(
    lambda whole, frac, digits: (
        f"{whole}.{str(frac).zfill(digits)[:digits]}" if digits else str(whole)
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**18),
    st.sampled_from([0, 1, 2, 6, 18]),
)
_IPV4 = st.builds(lambda a, b: f"192.168.{a}.{b}", st.integers(0, 255), st.integers(1, 254))
_UUID = st.uuids().map(str)
_UUID_HEX = st.uuids().map(lambda u: u.hex)


def _rfc3339(value: dt.datetime, digits: int) -> str:
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{value.microsecond:06d}{value.microsecond % 1000:03d}"[:digits]
    return text + "Z"


_DATETIME = st.builds(
    _rfc3339,
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 12, 31)),
    st.sampled_from([0, 3, 6, 9]),
)
_NAIVE_DATETIME = st.builds(
    lambda value, digits: _rfc3339(value, digits)[:-1],
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 12, 31)),
    st.sampled_from([0, 6, 9]),
)
_SAFE_TEXT = st.text(string.ascii_letters + string.digits + " -_.:/", max_size=16)
_PROPERTY_NAME = st.lists(
    st.text(string.ascii_lowercase, min_size=1, max_size=8), min_size=2, max_size=4
).map(".".join)
_JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _SAFE_TEXT
)
_JSON_VALUE = _JSON_SCALAR | st.lists(_JSON_SCALAR, max_size=3)
_PROPERTIES = st.dictionaries(_PROPERTY_NAME, _JSON_VALUE, max_size=4)

_STATES = ["New", "Initialized", "Deployed", "Ready", "Unresponsive", "Terminated"]


@dataclass(frozen=True)
class _Hint:
    """What the daemon really puts in a field the spec types only loosely."""

    example: JSON
    strategy: st.SearchStrategy[Any]


def _h(example: JSON, strategy: st.SearchStrategy[Any]) -> _Hint:
    return _Hint(example, strategy)


# Field shapes from docs/daemon-notes.md §1 (ids, money, timestamps), §4.3, §6 and the ya-client
# models.
# Keyed by (schema name, property) first, then by property name alone.
_HINTS_BY_SCHEMA: dict[tuple[str, str], _Hint] = {
    ("ActivityState", "state"): _h(
        ["Ready", None],
        st.tuples(st.sampled_from(_STATES), st.none() | st.sampled_from(_STATES)).map(list),
    ),
    ("ActivityUsage", "timestamp"): _h(1714560000, st.integers(1_500_000_000, 2_100_000_000)),
    ("Network", "ip"): _h("192.168.0.0/24", st.just("192.168.0.0/24") | st.just("10.0.0.0/16")),
    ("Network", "mask"): _h("255.255.255.0", st.just("255.255.255.0") | st.just("255.255.0.0")),
    ("Network", "id"): _h("7c8f2b1e4a6d4f0e9b3a5c1d2e8f7a6b", _UUID_HEX),
    ("Node", "id"): _h("0x" + "ab" * 20, _NODE_ID),
    ("Identity", "role"): _h("manager", st.just("manager")),
    ("YagnaVersionInfo", "releaseTs"): _h("2024-12-07T14:23:48", _NAIVE_DATETIME),
    ("YagnaVersionInfo", "insertionTs"): _h("2025-01-01T00:00:00", _NAIVE_DATETIME),
    ("YagnaVersionInfo", "updateTs"): _h("2025-01-01T00:00:00", _NAIVE_DATETIME),
    ("YagnaVersionInfo", "version"): _h("0.17.6", st.just("0.17.6") | st.just("0.16.0")),
    ("RuntimeEvent", "timestamp"): _h("2024-05-01T10:00:00.123456789", _NAIVE_DATETIME),
    ("Agreement", "agreementId"): _h("ab" * 32, _hex(64)),
    ("AgreementOperationEvent", "agreementId"): _h("ab" * 32, _hex(64)),
    ("AgreementTerminationReason", "agreementId"): _h("ab" * 32, _hex(64)),
    ("ExeScriptRequest", "text"): _h(
        '[{"deploy": {}}, {"start": {}}]',
        st.lists(
            st.sampled_from(
                [{"deploy": {}}, {"start": {"args": []}}, {"sign": {}}, {"terminate": {}}]
            ),
            min_size=1,
            max_size=3,
        ).map(json.dumps),
    ),
    ("Payment", "details"): _h(
        "AQID", st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    ),
}

_HINTS: dict[str, _Hint] = {
    **{
        name: _h("12.345", _DECIMAL)
        for name in (
            "totalAmount",
            "spentAmount",
            "remainingAmount",
            "totalAmountDue",
            "amount",
            "totalAmountAccepted",
            "acceptedAmount",
            "scheduledAmount",
            "neededGasEst",
            "neededTokenEst",
        )
    },
    **{
        name: _h("0x" + "5e" * 20, _NODE_ID)
        for name in (
            "issuerId",
            "recipientId",
            "providerId",
            "requestorId",
            "payerId",
            "payeeId",
            "identity",
            "nodeId",
            "payeeAddr",
            "payerAddr",
            "address",
        )
    },
    **{
        name: _h(
            "erc20-holesky-tglm",
            st.sampled_from(["erc20-holesky-tglm", "erc20-polygon-glm", "erc20-sepolia-tglm"]),
        )
        for name in ("paymentPlatform", "platform")
    },
    "properties": _h(
        {"golem.node.debug.subnet": "public", "golem.inf.cpu.threads": 4}, _PROPERTIES
    ),
    "constraints": _h(
        "(golem.node.debug.subnet=public)",
        st.just("()") | st.just("(&(golem.node.debug.subnet=public)(golem.inf.mem.gib>=0.5))"),
    ),
    "proposalId": _h("R-" + "cd" * 32, st.builds(lambda h: "R-" + h, _hex(64))),
    "prevProposalId": _h("R-" + "ef" * 32, st.builds(lambda h: "R-" + h, _hex(64))),
    "demandId": _h(
        "ab" * 16 + "-" + "cd" * 32, st.builds(lambda a, b: f"{a}-{b}", _hex(32), _hex(64))
    ),
    "offerId": _h(
        "ef" * 16 + "-" + "01" * 32, st.builds(lambda a, b: f"{a}-{b}", _hex(32), _hex(64))
    ),
    "activityId": _h("0f" * 16, _UUID_HEX),
    "batchId": _h("1e" * 16, _UUID_HEX),
    "allocationId": _h("5a1e6b4c-8a3f-4d2e-9c1b-0e7f6a5d4c3b", _UUID),
    "debitNoteId": _h("6b2f7c5d-9b4a-4e3f-8d2c-1f8a7b6e5d4c", _UUID),
    "invoiceId": _h("7c3a8d6e-ac5b-4f4a-9e3d-2a9b8c7f6e5d", _UUID),
    "paymentId": _h("8d4b9e7f-bd6c-4a5b-8f4e-3bac9d8a7f6e", _UUID),
    "ip": _h("192.168.0.2", _IPV4),
    "gateway": _h("192.168.0.1", _IPV4),
    "localIp": _h("192.168.0.1", _IPV4),
    "remoteIp": _h("192.168.0.2", _IPV4),
    "listenIp": _h("10.0.0.5", st.none() | _IPV4),
    "publicIp": _h("10.0.0.6", st.none() | _IPV4),
    "localPort": _h(50123, st.integers(1, 65535)),
    "remotePort": _h(80, st.integers(1, 65535)),
    "protocol": _h(6, st.sampled_from([6, 17])),
    "usageCounterVector": _h(
        [12.5, 30.0],
        st.lists(st.floats(0, 1e9, allow_nan=False) | st.integers(0, 10**9), max_size=4),
    ),
    "currentUsage": _h(
        [12.5, 30.0],
        st.lists(st.floats(0, 1e9, allow_nan=False) | st.integers(0, 10**9), max_size=4),
    ),
}

#: Extra keys a future daemon might add: clients must ignore them.
_EXTRA_KEYS = st.dictionaries(
    st.sampled_from(["xFutureField", "newDaemonField", "x-daemon-extra"]),
    _JSON_VALUE,
    max_size=2,
)


@dataclass
class _Walker:
    """Walks (patched) schemas of one spec, following refs into other documents."""

    docs: Docs
    extra_keys: bool = True
    write: bool = False  # a request body: leave readOnly properties out
    depth: int = 0

    def resolve(self, spec: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """Follow a top-level $ref; (spec, schema, component name or None)."""
        name = None
        while "$ref" in schema:
            ref = schema["$ref"]
            spec, schema = _resolve_ref(self.docs, spec, ref)
            if "/components/schemas/" in ref:
                name = ref.rsplit("/", 1)[-1]
        return spec, schema, name

    def flatten(
        self, spec: str, schema: dict[str, Any], name: str | None
    ) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """Merge allOf parts into one object schema whose ``properties`` map to (spec, schema);
        also the schema owning each property and the discriminator property, if any."""
        merged: dict[str, Any] = {}
        props: dict[str, Any] = {}
        owners: dict[str, str] = {}
        required: list[str] = []
        discriminator = None

        def visit(spec: str, node: dict[str, Any], owner: str | None) -> None:
            nonlocal discriminator
            spec, node, name = self.resolve(spec, node)
            owner = name or owner
            for part in node.get("allOf", []):
                visit(spec, part, owner)
            for key, value in node.items():
                if key == "properties":
                    for prop, sub in value.items():
                        props[prop] = (spec, sub)
                        owners[prop] = owner or ""
                elif key == "required":
                    required.extend(r for r in value if r not in required)
                elif key == "discriminator":
                    discriminator = value["propertyName"]
                elif key not in ("allOf", "description"):
                    merged[key] = value

        visit(spec, schema, name)
        merged["properties"] = props
        merged["required"] = required
        return merged, owners, discriminator

    def hint(self, owner: str, prop: str, spec: str, schema: dict[str, Any]) -> _Hint | None:
        hint = _HINTS_BY_SCHEMA.get((owner, prop)) or _HINTS.get(prop)
        if hint is None:
            return None
        # a hint applies only where its JSON type fits (MarketDecoration.properties is a list)
        kind = self.resolve(spec, schema)[1].get("type")
        fits = {
            "string": str,
            "integer": int,
            "number": (int, float),
            "array": list,
            "object": dict,
            "boolean": bool,
        }.get(kind or "", object)
        return hint if isinstance(hint.example, fits) else None

    # ---- strategies ------------------------------------------------------------------------

    def strategy(self, spec: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        if self.depth > 12:
            raise RecursionError("schema nesting too deep (a cycle?)")
        self.depth += 1
        try:
            return self._strategy(spec, schema)
        finally:
            self.depth -= 1

    def _strategy(self, spec: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        spec, schema, name = self.resolve(spec, schema)
        nullable = bool(schema.get("nullable"))
        base = self._non_null(spec, schema, name)
        return st.none() | base if nullable else base

    def _non_null(
        self, spec: str, schema: dict[str, Any], name: str | None
    ) -> st.SearchStrategy[Any]:
        if "enum" in schema:
            return st.sampled_from([v for v in schema["enum"] if v is not None] or [None])
        if "oneOf" in schema or "anyOf" in schema:
            # with a discriminator, each branch sets its own value (its schema name)
            branches = schema.get("oneOf") or schema["anyOf"]
            return st.one_of([self.strategy(spec, b) for b in branches])
        if "allOf" in schema or schema.get("type") == "object" or "properties" in schema:
            return self._object(spec, schema, name)
        kind = schema.get("type")
        if kind == "string":
            return self._string(schema)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            if schema.get("format") == "integer":
                return self._integer(schema)
            return self._integer(schema) | st.floats(
                min_value=schema.get("minimum"),
                max_value=schema.get("maximum"),
                allow_nan=False,
                allow_infinity=False,
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "array":
            return st.lists(
                self.strategy(spec, schema.get("items", {})),
                min_size=schema.get("minItems", 0),
                max_size=schema.get("maxItems", max(3, schema.get("minItems", 0))),
            )
        return _JSON_VALUE  # untyped: anything

    def _object(
        self, spec: str, schema: dict[str, Any], name: str | None
    ) -> st.SearchStrategy[Any]:
        merged, owners, discriminator = self.flatten(spec, schema, name)
        props: dict[str, Any] = merged["properties"]
        if not props:
            extra = merged.get("additionalProperties", True)
            if isinstance(extra, dict):
                return st.dictionaries(_SAFE_TEXT, self.strategy(spec, extra), max_size=3)
            return _PROPERTIES
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for prop, (prop_spec, sub) in props.items():
            if self._resolve_flag(prop_spec, sub, "readOnly" if self.write else "writeOnly"):
                continue
            hint = self.hint(owners.get(prop, ""), prop, prop_spec, sub)
            strategy = hint.strategy if hint else self.strategy(prop_spec, sub)
            if prop == discriminator and name is not None:
                strategy = st.just(name)
            (required if prop in merged["required"] else optional)[prop] = strategy
        fixed = st.fixed_dictionaries(required, optional=optional)
        closed = merged.get("additionalProperties", True) is False or "maxProperties" in merged
        if self.extra_keys and not closed:
            return st.builds(lambda extra, obj: {**extra, **obj}, _EXTRA_KEYS, fixed)
        return fixed

    def _resolve_flag(self, spec: str, schema: dict[str, Any], flag: str) -> bool:
        return bool(self.resolve(spec, schema)[1].get(flag))

    def _string(self, schema: dict[str, Any]) -> st.SearchStrategy[str]:
        fmt = schema.get("format")
        if fmt == "date-time":
            return _DATETIME
        if fmt == "byte":
            return st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
        if fmt == "hex":
            return st.text(_HEX, max_size=16)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(
            string.ascii_letters + string.digits + " -_.:/",
            min_size=schema.get("minLength", 0),
            max_size=min(schema.get("maxLength", 16), 16),
        )

    def _integer(self, schema: dict[str, Any]) -> st.SearchStrategy[int]:
        bits = 31 if schema.get("format") == "int32" else 53
        low = schema.get("minimum", -(2**bits))
        high = schema.get("maximum", 2**bits - 1)
        return st.integers(int(low), int(high))

    # ---- fixed examples --------------------------------------------------------------------

    def example(self, spec: str, schema: dict[str, Any]) -> JSON:
        if self.depth > 12:
            raise RecursionError("schema nesting too deep (a cycle?)")
        self.depth += 1
        try:
            return self._example(spec, schema)
        finally:
            self.depth -= 1

    def _example(self, spec: str, schema: dict[str, Any]) -> JSON:
        spec, schema, name = self.resolve(spec, schema)
        if "enum" in schema:
            values = [v for v in schema["enum"] if v is not None]
            return values[0] if values else None
        if "oneOf" in schema or "anyOf" in schema:
            branches = schema.get("oneOf") or schema["anyOf"]
            # prefer an object branch: it shows the most structure
            for branch in branches:
                resolved = self.resolve(spec, branch)[1]
                if resolved.get("type") == "object" or "allOf" in resolved:
                    return self.example(spec, branch)
            return self.example(spec, branches[0])
        if "allOf" in schema or schema.get("type") == "object" or "properties" in schema:
            merged, owners, discriminator = self.flatten(spec, schema, name)
            props = merged["properties"]
            if not props:
                extra = merged.get("additionalProperties", True)
                if isinstance(extra, dict):
                    return {"key": self.example(spec, extra)}
                return {"golem.node.debug.subnet": "public"}
            out: dict[str, Any] = {}
            for prop, (prop_spec, sub) in props.items():
                if self._resolve_flag(prop_spec, sub, "readOnly" if self.write else "writeOnly"):
                    continue
                hint = self.hint(owners.get(prop, ""), prop, prop_spec, sub)
                out[prop] = copy.deepcopy(hint.example) if hint else self.example(prop_spec, sub)
                if prop == discriminator and name is not None:
                    out[prop] = name
            return out
        kind = schema.get("type")
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "date-time":
                return "2024-05-01T10:41:42.564784259Z"
            if fmt == "byte":
                return "AQID"
            if "pattern" in schema:
                return _example_for_pattern(schema["pattern"])
            return "example"
        if kind in ("integer", "number"):
            return (
                int(schema.get("minimum", 1))
                if kind == "integer" or schema.get("format") == "integer"
                else float(schema.get("minimum", 1.5))
            )
        if kind == "boolean":
            return True
        if kind == "array":
            items = schema.get("items", {})
            item_spec, item_schema, _ = self.resolve(spec, items)
            branches = item_schema.get("oneOf") or item_schema.get("anyOf")
            if branches and "maxItems" not in schema:
                # a list of variants (events): one example of each
                return [self.example(item_spec, branch) for branch in branches]
            count = max(1, schema.get("minItems", 1))
            return [self.example(spec, items) for _ in range(count)]
        return None if schema.get("nullable") or schema == {} else "example"


def _example_for_pattern(pattern: str) -> str:
    if pattern.startswith(r"^\d{4}-"):
        return "2024-05-01T10:00:00.123456789"
    raise ValueError(f"no fixed example for pattern {pattern!r}")


def _as_schema(spec: str, schema: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, str):
        return _ref(schema)
    return schema


def from_schema(
    spec: str, schema: str | dict[str, Any], *, extra_keys: bool = True, write: bool = False
) -> st.SearchStrategy[Any]:
    """A Hypothesis strategy of JSON values valid for ``schema`` (a component name of ``spec``
    or an inline schema whose refs are relative to ``spec``), shaped like the daemon's JSON.

    Handles $ref (into common.yaml too), allOf, oneOf/anyOf (with discriminators), required and
    optional properties, nullable, enum, date-time (RFC 3339, Z, up to nanoseconds), strings,
    numbers, integers, booleans, arrays and additionalProperties. With ``extra_keys`` objects
    may carry unknown extra keys, as a newer daemon may send; with ``write`` the values are
    request bodies (no readOnly properties).
    """
    walker = _Walker(load_specs().docs, extra_keys=extra_keys, write=write)
    return walker.strategy(spec, _as_schema(spec, schema))


def spec_example(spec: str, schema: str | dict[str, Any], *, write: bool = False) -> JSON:
    """One fixed, realistic value for ``schema`` (every property filled, first enum value,
    non-null, a list of variants holding one of each); deterministic. With ``write``, a request
    body (no readOnly properties)."""
    walker = _Walker(load_specs().docs, extra_keys=False, write=write)
    return walker.example(spec, _as_schema(spec, schema))


_PATH_PARAM_EXAMPLES: dict[str, str] = {
    "ip": "192.168.0.2",
    "port": "80",
    "nodeId": "0x" + "ab" * 20,
    "agreementId": "ab" * 32,
    "proposalId": "R-" + "cd" * 32,
}


def example_request(
    op: Operation, base_url: str = "http://127.0.0.1:7465", app_key: str = "app-key"
) -> httpx2.Request:
    """A valid request for ``op``: path parameters filled in, required query parameters and
    an example body (if the operation takes one), the app key in the Authorization header."""
    specs = load_specs()
    definition = specs.operation_definition(op)
    path = re.sub(
        r"\{([^}]+)\}",
        lambda m: _PATH_PARAM_EXAMPLES.get(m.group(1), f"{m.group(1).lower()}-1"),
        op.path,
    )
    params = {
        p["name"]: "example-1"
        for p in _parameters(specs, op)
        if p["in"] == "query" and p.get("required")
    }
    headers = {"Authorization": f"Bearer {app_key}"}
    body = _resolve_node(specs, op.spec, definition.get("requestBody", {}))[1].get("content", {})
    if "application/json" in body:
        value = spec_example(op.spec, body["application/json"]["schema"], write=True)
        return httpx2.Request(
            op.method, base_url + path, params=params, headers=headers, json=value
        )
    if body:
        headers["Content-Type"] = next(iter(body))
        return httpx2.Request(
            op.method, base_url + path, params=params, headers=headers, content=b"\x00\x01"
        )
    return httpx2.Request(op.method, base_url + path, params=params, headers=headers)


def iter_component_schemas(spec: str) -> Iterator[str]:
    """The component schema names of a (patched) spec."""
    yield from load_specs().docs[spec].get("components", {}).get("schemas", {})
