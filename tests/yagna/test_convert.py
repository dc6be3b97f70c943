"""The JSON mapping's documented rules, one behaviour at a time (docs/daemon-notes.md §2.2,
§4)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from golem_trio.yagna import (
    Acceptance,
    ActivityState,
    ActivityStateName,
    AgreementApprovedEvent,
    AgreementEvent,
    AgreementProposal,
    AgreementState,
    Allocation,
    Capture,
    CaptureFormat,
    CaptureMode,
    CommandResult,
    Connection,
    DecodeError,
    Deploy,
    DocumentStatus,
    ExeScriptCommand,
    ExeScriptCommandResult,
    Finished,
    Identity,
    MarketEvent,
    NewAllocation,
    NewScan,
    PaymentPlatform,
    Progress,
    Proposal,
    ProposalRejectedEvent,
    ProposalState,
    Reason,
    Run,
    RuntimeEvent,
    RuntimeEventKind,
    Sign,
    Start,
    Started,
    StdErr,
    StdOut,
    Terminate,
    Timestamp,
    Transfer,
    UnknownAgreementEvent,
    UnknownMarketEvent,
    UnknownRuntimeEventKind,
    YagnaError,
    exe_script_text,
    format_timestamp,
    parse_timestamp,
)
from golem_trio.yagna._convert import decode, encode

T = TypeVar("T")

WHEN = "2024-05-01T10:00:00.123456Z"
WHEN_DT = dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)


def proposal_json(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "properties": {"golem.inf.cpu.threads": 4, "golem.com.pricing.model": "linear"},
        "constraints": "(golem.srv.comp.expiration>1714560000000)",
        "proposalId": "R-1",
        "issuerId": "0xprovider",
        "state": "Draft",
        "timestamp": WHEN,
    }
    body.update(changes)
    return body


def read(data: object, cls: type[T]) -> T:
    result: T = decode("op", data, cls)
    return result


def read_any(data: object, union: object) -> Any:
    """Decode as a union alias (or a generic), which is not a ``type[T]`` for the checker."""
    return decode("op", data, union)


def decode_error(data: object, cls: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode("op", data, cls)
    return caught.value


# --- names -------------------------------------------------------------------------------------


def test_fields_are_camel_case_in_json() -> None:
    proposal = read(proposal_json(prevProposalId="R-0"), Proposal)
    assert proposal.proposal_id == "R-1"
    assert proposal.issuer_id == "0xprovider"
    assert proposal.prev_proposal_id == "R-0"
    assert encode(AgreementProposal("R-1", WHEN_DT)) == {"proposalId": "R-1", "validTo": WHEN}


def test_snake_case_keys_are_not_read_as_camel_case_fields() -> None:
    body = proposal_json()
    body["proposal_id"] = body.pop("proposalId")
    err = decode_error(body, Proposal)
    assert err.path == "$.proposalId"
    assert "required field missing" in str(err)


def test_run_entry_point_is_snake_case_on_the_wire() -> None:
    assert encode(Run("/bin/sh")) == {"run": {"entry_point": "/bin/sh", "args": []}}
    assert read_any({"run": {"entry_point": "/bin/sh"}}, ExeScriptCommand) == Run("/bin/sh")
    err = decode_error({"run": {"entryPoint": "/bin/sh"}}, ExeScriptCommand)
    assert err.path == "$.entry_point"


def test_transfer_from_is_from_on_the_wire() -> None:
    transfer = Transfer(from_="http://10.0.0.5:8000/in.txt", to="container:/golem/input/in.txt")
    assert encode(transfer) == {
        "transfer": {"from": "http://10.0.0.5:8000/in.txt", "to": "container:/golem/input/in.txt"}
    }
    assert read_any(encode(transfer), ExeScriptCommand) == transfer
    err = decode_error({"transfer": {"from_": "a", "to": "b"}}, ExeScriptCommand)
    assert err.path == "$.from"


def test_decode_errors_name_nested_json_paths() -> None:
    event: dict[str, Any] = {
        "eventType": "ProposalEvent",
        "eventDate": WHEN,
        "proposal": proposal_json(),
    }
    del event["proposal"]["proposalId"]
    err = decode_error(event, MarketEvent)
    assert err.path == "$.proposal.proposalId"
    assert isinstance(err, YagnaError)
    assert err.operation == "op"
    assert str(err).startswith("op: malformed reply: required field missing")
    assert str(err).endswith(" at $.proposal.proposalId")


def test_unknown_keys_are_ignored() -> None:
    assert read(proposal_json(somethingNew={"x": [1, None]}), Proposal) == decode(
        "op", proposal_json(), Proposal
    )


# --- primitives --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.50", Decimal("1.50")),
        ("0.000000000000000001", Decimal("1E-18")),
        (" 12 ", Decimal("12")),
        (12, Decimal("12")),
        (0.1, Decimal("0.1")),
    ],
)
def test_money_reads_decimal_strings_and_numbers(text: object, expected: Decimal) -> None:
    acceptance = read({"totalAmountAccepted": text, "allocationId": "a"}, Acceptance)
    assert acceptance.total_amount_accepted == expected
    assert isinstance(acceptance.total_amount_accepted, Decimal)


def test_money_keeps_its_digits() -> None:
    acceptance = read({"totalAmountAccepted": "1.50", "allocationId": "a"}, Acceptance)
    assert str(acceptance.total_amount_accepted) == "1.50"
    assert encode(acceptance) == {"totalAmountAccepted": "1.50", "allocationId": "a"}


@pytest.mark.parametrize("bad", [True, False, None, "abc", "NaN", "Infinity", "-inf", [], {}])
def test_money_rejects_non_amounts(bad: object) -> None:
    err = decode_error({"totalAmountAccepted": bad, "allocationId": "a"}, Acceptance)
    assert err.path == "$.totalAmountAccepted"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("-0.5"), "-0.5"),
        (
            Decimal("123456789012345678901234567890.123456789"),
            "123456789012345678901234567890.123456789",
        ),
    ],
)
def test_money_is_written_as_a_plain_decimal_string(amount: Decimal, text: str) -> None:
    assert encode(NewAllocation(amount)) == {"totalAmount": text}


def test_a_string_is_not_an_int() -> None:
    body = {"protocol": 6, "localIp": "a", "localPort": "5", "remoteIp": "b", "remotePort": 7}
    err = decode_error(body, Connection)
    assert err.path == "$.localPort"
    body["localPort"] = 5
    assert read(body, Connection).local_port == 5


def test_an_int_is_not_a_string() -> None:
    err = decode_error({"identity": 5, "name": "n", "role": "r"}, Identity)
    assert err.path == "$.identity"


def test_a_boolean_is_not_a_number() -> None:
    assert decode_error({"timeout": True}, NewScan).path == "$.timeout"
    body = {"protocol": True, "localIp": "a", "localPort": 1, "remoteIp": "b", "remotePort": 2}
    assert decode_error(body, Connection).path == "$.protocol"


def test_a_number_is_not_a_boolean() -> None:
    body = {"index": 0, "eventDate": WHEN, "result": "Ok", "isBatchFinished": 1}
    assert decode_error(body, ExeScriptCommandResult).path == "$.isBatchFinished"


def test_a_string_is_not_an_array() -> None:
    err = decode_error({"run": {"entry_point": "/bin/sh", "args": "-c"}}, ExeScriptCommand)
    assert err.path == "$.args"


def test_decode_raises_only_decode_error_for_non_objects() -> None:
    for garbage in (None, 1, "x", [], [proposal_json()], 1.5, True):
        assert isinstance(decode_error(garbage, Proposal), DecodeError)


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T10:00:00.123456789Z",
        "2024-05-01T10:00:00.000000001Z",
        "2024-05-01T10:00:00.999999999Z",
        "1999-12-31T23:59:59.100000001Z",
        "2024-05-01T10:00:00.123456Z",
        "2024-05-01T10:00:00.000000Z",
    ],
)
def test_timestamps_keep_their_digits(text: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == text


def test_nanoseconds_are_kept_apart_from_microseconds() -> None:
    value = parse_timestamp("2024-05-01T10:00:00.123456789Z")
    assert isinstance(value, Timestamp)
    assert value.microsecond == 123456
    assert value.nanoseconds == 789
    assert value.utcoffset() == dt.timedelta(0)


def test_timestamps_with_nanoseconds_survive_a_model() -> None:
    body = {"eventType": "AgreementApprovedEvent", "eventDate": "2024-05-01T10:00:00.123456789Z"}
    body["agreementId"] = "A-1"
    event = read_any(body, AgreementEvent)
    assert isinstance(event, AgreementApprovedEvent)
    assert encode(event) == body


def test_timestamp_equality_ignores_the_sub_microsecond_digits() -> None:
    # Documented tolerance: compare the text (format_timestamp) to tell them apart.
    a = parse_timestamp("2024-05-01T10:00:00.123456789Z")
    b = parse_timestamp("2024-05-01T10:00:00.123456001Z")
    assert a == b
    assert format_timestamp(a) != format_timestamp(b)


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000000Z"),
        ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.500000Z"),
        ("2024-05-01T10:00:00.1234Z", "2024-05-01T10:00:00.123400Z"),
        ("2024-05-01T12:00:00.123456789+02:00", "2024-05-01T10:00:00.123456789Z"),
        ("2024-05-01T05:30:00.123456789-0430", "2024-05-01T10:00:00.123456789Z"),
        ("2024-05-01t10:00:00z", "2024-05-01T10:00:00.000000Z"),
    ],
)
def test_timestamps_are_written_in_utc_with_z(text: str, formatted: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == formatted


def test_naive_stream_timestamps_are_utc() -> None:
    value = parse_timestamp("2024-05-01T10:00:00.123456789")
    assert value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)
    assert value == dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert format_timestamp(value) == "2024-05-01T10:00:00.123456789Z"


def test_naive_datetimes_are_written_as_utc() -> None:
    naive = dt.datetime(2024, 5, 1, 10, 0, 0, 123456)
    assert format_timestamp(naive) == WHEN
    assert encode(AgreementProposal("R-1", naive)) == {"proposalId": "R-1", "validTo": WHEN}


def test_aware_datetimes_are_converted_to_utc() -> None:
    local = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_timestamp(local) == WHEN


def test_naive_timestamp_keeps_its_nanoseconds() -> None:
    value = Timestamp(2024, 5, 1, 10, 0, 0, 123456)
    value.nanoseconds = 789
    assert format_timestamp(value) == "2024-05-01T10:00:00.123456789Z"


@pytest.mark.parametrize(
    "bad",
    [
        "2024-05-01",
        "2024-13-01T10:00:00Z",
        "2024-05-01T25:00:00Z",
        "2024-05-01T10:00:00+25:00",
        "yesterday",
        "",
        1714557600,
        None,
    ],
)
def test_bad_timestamps_raise_decode_error(bad: object) -> None:
    err = decode_error({"proposalId": "R-1", "validTo": bad}, AgreementProposal)
    assert err.path == "$.validTo"


# --- tolerant enums ----------------------------------------------------------------------------


def test_unknown_enum_values_are_kept() -> None:
    state = ProposalState("Brandnew")
    assert state.known is False
    assert state.value == "Brandnew"
    assert state == "Brandnew"
    assert ProposalState("Draft") is ProposalState.DRAFT
    assert ProposalState.DRAFT.known is True


@pytest.mark.parametrize(
    "enum", [ProposalState, AgreementState, ActivityStateName, CommandResult, DocumentStatus]
)
def test_every_tolerant_enum_accepts_new_values(enum: Any) -> None:
    value = enum("SomethingNew")
    assert not value.known
    assert value.value == "SomethingNew"
    assert all(member.known for member in enum)


def test_unknown_enum_values_decode_and_encode_unchanged() -> None:
    proposal = read(proposal_json(state="Brandnew"), Proposal)
    assert proposal.state == "Brandnew"
    assert encode(proposal)["state"] == "Brandnew"
    assert read(proposal_json(state="Draft"), Proposal).state == ProposalState.DRAFT


def test_known_enum_values_decode_to_members() -> None:
    assert read(proposal_json(state="Draft"), Proposal).state is ProposalState.DRAFT


def test_unknown_enum_values_decode_to_pseudo_members() -> None:
    state = read(proposal_json(state="Brandnew"), Proposal).state
    assert isinstance(state, ProposalState)
    assert state.known is False
    assert state.value == "Brandnew"


def test_enums_still_need_a_string() -> None:
    assert decode_error(proposal_json(state=3), Proposal).path == "$.state"
    assert decode_error(proposal_json(state=None), Proposal).path == "$.state"


# --- events ------------------------------------------------------------------------------------


def test_unknown_market_event_keeps_its_json() -> None:
    raw = {"eventType": "ProposalWithdrawnEvent", "eventDate": WHEN, "proposalId": "R-1"}
    event = read_any(raw, MarketEvent)
    assert event == UnknownMarketEvent("ProposalWithdrawnEvent", raw)
    assert encode(event) == raw


def test_unknown_agreement_event_keeps_its_json() -> None:
    raw = {"eventType": "AgreementSuspendedEvent", "eventDate": WHEN, "agreementId": "A-1"}
    event = read_any(raw, AgreementEvent)
    assert isinstance(event, UnknownAgreementEvent)
    assert event.event_type == "AgreementSuspendedEvent"
    assert event.raw == raw
    assert event.agreement_id == "A-1"
    assert encode(event) == raw


@pytest.mark.parametrize("bad", [{"eventDate": WHEN}, {"eventType": 5}, {"eventType": None}])
def test_events_need_a_string_event_type(bad: dict[str, Any]) -> None:
    assert "eventType" in str(decode_error(bad, MarketEvent))
    assert "eventType" in str(decode_error(bad, AgreementEvent))


def test_known_events_carry_their_event_type() -> None:
    event = AgreementApprovedEvent(WHEN_DT, "A-1")
    assert encode(event) == {
        "eventType": "AgreementApprovedEvent",
        "eventDate": WHEN,
        "agreementId": "A-1",
    }


def test_reason_keeps_extra_keys() -> None:
    raw = {
        "eventType": "ProposalRejectedEvent",
        "eventDate": WHEN,
        "proposalId": "R-1",
        "reason": {"message": "no", "golem.proposal.rejection.is-final": True},
    }
    event = read_any(raw, MarketEvent)
    assert isinstance(event, ProposalRejectedEvent)
    assert event.reason == Reason("no", {"golem.proposal.rejection.is-final": True})
    assert event.reason.code("golem.proposal.rejection.is-final") is True
    assert encode(event) == raw


def test_reason_round_trips_the_requestor_code() -> None:
    reason = Reason("Work finished", {"golem.requestor.code": "Success"})
    assert encode(reason) == {"message": "Work finished", "golem.requestor.code": "Success"}
    assert read(encode(reason), Reason) == reason
    assert reason.code("golem.requestor.code") == "Success"
    assert reason.code("golem.provider.code") is None


def test_reason_needs_a_message() -> None:
    assert "message" in str(decode_error({"golem.requestor.code": "Success"}, Reason))
    assert "message" in str(decode_error({"message": 5}, Reason))


def test_missing_optional_reason_is_none_and_left_out() -> None:
    raw = {"eventType": "ProposalRejectedEvent", "eventDate": WHEN, "proposalId": "R-1"}
    event = read_any(raw, MarketEvent)
    assert event == ProposalRejectedEvent(WHEN_DT, "R-1")
    assert encode(event) == raw


# --- exe-script commands -----------------------------------------------------------------------

#: Every command of docs/daemon-notes.md §4.2, each with every field documented there.
SCRIPT: list[dict[str, Any]] = [
    {
        "deploy": {
            "net": [
                {
                    "id": "net-1",
                    "ip": "192.168.0.0",
                    "mask": "255.255.255.0",
                    "nodeIp": "192.168.0.2",
                    "nodes": {"192.168.0.1": "0xreq", "192.168.0.2": "0xprov"},
                }
            ],
            "hosts": {"master": "192.168.0.1"},
            "hostname": "node2",
            "volumes": {
                "/golem/work": {"storage": {"size": "10GiB", "preallocate": "1GiB"}},
                "/tmp": {"ram": {"size": "1GiB"}},
                "/golem/input": {"host": {}},
            },
            "env": {"KEY": "VAL"},
            "progress": {"updateInterval": "300ms", "updateStep": None},
        }
    },
    {"start": {"args": []}},
    {
        "transfer": {
            "from": "http://10.0.0.5:8000/in.txt",
            "to": "container:/golem/input/in.txt",
            "format": "zip",
            "depth": 2,
            "fileset": [{"desc": "images", "includes": ["*.jpg"], "excludes": ["db*.*"]}],
            "progress": {"updateInterval": None, "updateStep": 1048576},
        }
    },
    {
        "run": {
            "entry_point": "/bin/sh",
            "args": ["-c", "echo hi"],
            "capture": {
                "stdout": {"stream": {}},
                "stderr": {"atEnd": {"tail": 4096, "format": "str"}},
            },
        }
    },
    {"sign": {}},
    {"terminate": {}},
]


def test_the_documented_script_decodes_and_encodes_unchanged() -> None:
    commands = read_any(SCRIPT, list[ExeScriptCommand])
    assert [type(c) for c in commands] == [Deploy, Start, Transfer, Run, Sign, Terminate]
    run = commands[3]
    assert run == Run(
        "/bin/sh",
        ["-c", "echo hi"],
        Capture(
            stdout=CaptureMode(stream=True),
            stderr=CaptureMode(tail=4096, format=CaptureFormat.STR),
        ),
    )
    assert encode(commands) == SCRIPT
    assert json.loads(exe_script_text(commands)) == SCRIPT


def test_commands_encode_to_the_daemons_shape() -> None:
    run = Run("/bin/echo", ["hi"], Capture(stdout=CaptureMode(format=CaptureFormat.STR)))
    assert encode(run) == {
        "run": {
            "entry_point": "/bin/echo",
            "args": ["hi"],
            "capture": {"stdout": {"atEnd": {"format": "str"}}},
        }
    }
    assert encode(Start()) == {"start": {"args": []}}
    assert encode(Deploy()) == {"deploy": {}}
    assert encode(Sign()) == {"sign": {}}
    assert encode(Terminate()) == {"terminate": {}}


@pytest.mark.parametrize(
    ("mode", "wire"),
    [
        (CaptureMode(), {"atEnd": {}}),
        (CaptureMode(head=10, format=CaptureFormat.BIN), {"atEnd": {"head": 10, "format": "bin"}}),
        (CaptureMode(head_tail=64), {"atEnd": {"headTail": 64}}),
        (CaptureMode(stream=True), {"stream": {}}),
        (CaptureMode(stream=True, limit=1024), {"stream": {"limit": 1024}}),
    ],
)
def test_capture_modes(mode: CaptureMode, wire: dict[str, Any]) -> None:
    assert encode(mode) == wire
    assert read(wire, CaptureMode) == mode


def test_capture_mode_rejects_a_wrong_type() -> None:
    with pytest.raises(DecodeError):
        read({"atEnd": {"head": "ten"}}, CaptureMode)


def test_a_command_decodes_as_its_own_class() -> None:
    assert read(encode(Run("/bin/sh")), Run) == Run("/bin/sh")


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"run": {"entry_point": "a"}, "sign": {}},
        {"rm": {"path": "/"}},
        "run",
        ["run"],
    ],
)
def test_malformed_commands_raise_decode_error(bad: object) -> None:
    decode_error(bad, ExeScriptCommand)


def test_a_null_command_body_is_an_empty_one() -> None:
    assert read_any({"sign": None}, ExeScriptCommand) == Sign()
    assert read_any({"start": None}, ExeScriptCommand) == Start()


# --- exec stream runtime events ----------------------------------------------------------------


def runtime_event(kind: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": "b1",
        "index": 2,
        "timestamp": "2024-05-01T10:00:00.123456789",
        "kind": kind,
    }


def test_runtime_event_frame_is_snake_case() -> None:
    event = read(runtime_event({"stdout": "hi\n"}), RuntimeEvent)
    assert event.batch_id == "b1"
    assert event.index == 2
    assert event.timestamp == dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert format_timestamp(event.timestamp) == "2024-05-01T10:00:00.123456789Z"
    assert event.kind == StdOut("hi\n")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            {"started": {"command": {"run": {"entry_point": "/bin/echo", "args": ["hi"]}}}},
            Started({"run": {"entry_point": "/bin/echo", "args": ["hi"]}}),
        ),
        ({"finished": {"return_code": 0, "message": None}}, Finished(0)),
        ({"finished": {"return_code": -1, "message": "killed"}}, Finished(-1, "killed")),
        ({"finished": {"return_code": 3}}, Finished(3)),
        ({"stdout": "hi\n"}, StdOut("hi\n")),
        ({"stdout": [104, 105, 0, 255]}, StdOut(b"hi\x00\xff")),
        ({"stderr": "oops"}, StdErr("oops")),
        ({"stderr": []}, StdErr(b"")),
        ({"stdout": None}, StdOut(None)),
        (
            {
                "progress": {
                    "step": [0, 1],
                    "message": None,
                    "progress": [1024, 4096],
                    "unit": "Bytes",
                }
            },
            Progress([0, 1], None, [1024, 4096], "Bytes"),
        ),
        (
            {"progress": {"step": [1, 2], "progress": [10, None]}},
            Progress([1, 2], None, [10, None]),
        ),
        ({"paused": {"why": "tea"}}, UnknownRuntimeEventKind({"paused": {"why": "tea"}})),
    ],
)
def test_runtime_event_kinds(kind: dict[str, Any], expected: Any) -> None:
    assert read(runtime_event(kind), RuntimeEvent).kind == expected
    assert read_any(kind, RuntimeEventKind) == expected


def test_runtime_event_kinds_encode_to_the_stream_shape() -> None:
    assert encode(Finished(0)) == {"finished": {"return_code": 0, "message": None}}
    assert encode(StdOut(b"hi")) == {"stdout": [104, 105]}
    assert encode(StdErr("e")) == {"stderr": "e"}
    assert encode(UnknownRuntimeEventKind({"paused": {}})) == {"paused": {}}


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ({"finished": {"return_code": "0"}}, "$.kind"),
        ({"finished": {"message": None}}, "$.kind"),
        ({"finished": None}, "$.kind"),
        ({"stdout": 5}, "$.kind"),
        ({"stdout": [256]}, "$.kind"),
        ({"stdout": [True]}, "$.kind"),
        ({"stdout": "a", "stderr": "b"}, "$.kind"),
        ({}, "$.kind"),
        ("stdout", "$.kind"),
    ],
)
def test_malformed_runtime_events_raise_decode_error(kind: object, path: str) -> None:
    err = decode_error(runtime_event(kind), RuntimeEvent)  # type: ignore[arg-type]
    assert err.path is not None
    assert err.path.startswith(path)


def test_a_bad_return_code_is_named_by_its_wire_key() -> None:
    err = decode_error(runtime_event({"finished": {"return_code": "0"}}), RuntimeEvent)
    assert err.path == "$.kind.return_code"


# --- activity results and state ------------------------------------------------------------------


def test_command_result_with_nulls() -> None:
    raw = {
        "index": 0,
        "eventDate": WHEN,
        "result": "Ok",
        "stdout": None,
        "stderr": None,
        "message": None,
        "isBatchFinished": False,
    }
    result = read(raw, ExeScriptCommandResult)
    assert result == ExeScriptCommandResult(0, WHEN_DT, CommandResult.OK)
    assert result.stdout is None
    assert result.stderr is None


def test_command_result_with_text_and_bytes() -> None:
    raw = {
        "index": 1,
        "eventDate": WHEN,
        "result": "Error",
        "stdout": [0, 1, 254, 255],
        "stderr": "boom\n",
        "message": "exit code 1",
        "isBatchFinished": True,
    }
    result = read(raw, ExeScriptCommandResult)
    assert result.stdout == b"\x00\x01\xfe\xff"
    assert result.stderr == "boom\n"
    assert result.result == CommandResult.ERROR
    assert result.is_batch_finished is True
    assert encode(result) == raw


def test_command_result_rejects_a_bad_output() -> None:
    raw = {"index": 0, "eventDate": WHEN, "result": "Ok", "stdout": [1, 2, 300]}
    assert decode_error(raw, ExeScriptCommandResult).path == "$.stdout"
    raw["stdout"] = {"text": "hi"}
    assert decode_error(raw, ExeScriptCommandResult).path == "$.stdout"


@pytest.mark.parametrize(
    ("pair", "current", "pending", "alive"),
    [
        (["Ready", None], ActivityStateName.READY, None, True),
        (["Deployed", "Ready"], ActivityStateName.DEPLOYED, ActivityStateName.READY, True),
        (["Ready", "Ready"], ActivityStateName.READY, ActivityStateName.READY, True),
        (["Terminated", None], ActivityStateName.TERMINATED, None, False),
        ([None, None], None, None, False),
    ],
)
def test_activity_state_pair(
    pair: list[str | None], current: Any, pending: Any, alive: bool
) -> None:
    state = read({"state": pair}, ActivityState)
    assert state.current == current
    assert state.pending == pending
    assert state.alive is alive
    assert encode(state) == {"state": pair}


def test_activity_state_with_an_unknown_name_is_alive() -> None:
    state = read({"state": ["Hibernating", None], "reason": "r"}, ActivityState)
    assert state.current == "Hibernating"
    assert state.alive
    assert state.reason == "r"


# --- payment -----------------------------------------------------------------------------------


def test_none_fields_are_left_out_of_request_bodies() -> None:
    assert encode(NewAllocation(Decimal("1.5"))) == {"totalAmount": "1.5"}
    full = NewAllocation(
        Decimal("1.5"),
        payment_platform="erc20-holesky-tglm",
        timeout=WHEN_DT,
        make_deposit=False,
    )
    assert encode(full) == {
        "totalAmount": "1.5",
        "paymentPlatform": "erc20-holesky-tglm",
        "timeout": WHEN,
        "makeDeposit": False,
    }


def test_defaults_that_are_not_none_are_written() -> None:
    assert encode(NewScan()) == {"type": "offer"}


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("erc20-holesky-tglm", "erc20-holesky-tglm"),
        (
            {"driver": "erc20", "network": "holesky", "token": "tGLM"},
            PaymentPlatform("erc20", "holesky", "tGLM"),
        ),
        ({}, PaymentPlatform()),
        (None, None),
    ],
)
def test_allocation_payment_platform_is_text_or_object(platform: object, expected: object) -> None:
    raw = {
        "allocationId": "al-1",
        "totalAmount": "10",
        "spentAmount": "0",
        "remainingAmount": "10",
        "timestamp": WHEN,
        "paymentPlatform": platform,
    }
    allocation = read(raw, Allocation)
    assert allocation.payment_platform == expected
    if platform is not None:
        assert encode(allocation)["paymentPlatform"] == platform


def test_allocation_payment_platform_of_a_wrong_type() -> None:
    raw = {
        "allocationId": "al-1",
        "totalAmount": "10",
        "spentAmount": "0",
        "remainingAmount": "10",
        "timestamp": WHEN,
        "paymentPlatform": 5,
    }
    assert decode_error(raw, Allocation).path == "$.paymentPlatform"


@pytest.mark.parametrize("text", ["1e999999999999", "1e-1001", "-1e61"])
def test_absurd_amounts_are_refused_before_they_cost_memory(text: str) -> None:
    with pytest.raises(DecodeError, match="out of range"):
        decode("op", text, Decimal)


def test_reason_message_wins_over_an_extra_key_of_the_same_name() -> None:
    assert encode(Reason("real", {"message": "shadow", "k": 1})) == {"k": 1, "message": "real"}


def test_only_ascii_digits_make_a_timestamp() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp("2024-05-01T10:00:00.123456\u0667\u0668\u0669Z")
