"""Property tests over every model exported by ``golem_trio.yagna``.

* every valid instance survives ``encode`` -> JSON text -> ``decode`` unchanged;
* garbage (random JSON, and mutated valid encodings) either decodes or raises
  :class:`DecodeError`, nothing else;
* a missing required key or a value of the wrong JSON type raises :class:`DecodeError`
  naming the key.

Models are discovered from the package namespace, so a new model is covered as soon as it is
exported; :func:`strategy_for` derives its instances from the field annotations.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import golem_trio.yagna as yagna
from golem_trio.yagna import (
    CaptureFormat,
    CaptureMode,
    DecodeError,
    Reason,
    StdErr,
    StdOut,
    Timestamp,
    TolerantEnum,
    UnknownAgreementEvent,
    UnknownMarketEvent,
    UnknownRuntimeEventKind,
)
from golem_trio.yagna._convert import decode, encode

# --- what is under test ------------------------------------------------------------------------

#: Exported attrs classes that are client configuration or call results, never JSON.
NOT_JSON_MODELS = frozenset(
    {
        yagna.ApiConfig,
        yagna.RetryPolicy,
        yagna.Timeouts,
        yagna.ApprovalResult,
        # The client's own reports on the daemon's availability, never on the wire.
        yagna.DaemonAvailable,
        yagna.DaemonMonitor,
        yagna.DaemonUnavailable,
        yagna.RideOut,
    }
)

MODELS: list[type[Any]] = sorted(
    (
        obj
        for name in yagna.__all__
        if isinstance(obj := getattr(yagna, name), type)
        and attrs.has(obj)
        and obj not in NOT_JSON_MODELS
    ),
    key=lambda cls: cls.__name__,
)

UNIONS: dict[str, Any] = {
    "MarketEvent": yagna.MarketEvent,
    "AgreementEvent": yagna.AgreementEvent,
    "ExeScriptCommand": yagna.ExeScriptCommand,
    "RuntimeEventKind": yagna.RuntimeEventKind,
}

COMMANDS: tuple[type[Any], ...] = typing.get_args(yagna.ExeScriptCommand)
KINDS: tuple[type[Any], ...] = typing.get_args(yagna.RuntimeEventKind)

#: The exec stream's event kinds, as the daemon names them (docs/daemon-notes.md §4.5).
KIND_NAMES = frozenset({"started", "finished", "stdout", "stderr", "progress"})

#: Classes whose JSON is not one object of their fields (custom hooks in ``_models``).
UNKNOWN_EVENTS = (UnknownMarketEvent, UnknownAgreementEvent)
OPAQUE = (StdOut, StdErr, UnknownRuntimeEventKind)


def _known_event_types(union: Any) -> frozenset[str]:
    return frozenset(m.EVENT_TYPE for m in typing.get_args(union) if hasattr(m, "EVENT_TYPE"))


KNOWN_EVENT_TYPES = {
    UnknownMarketEvent: _known_event_types(yagna.MarketEvent),
    UnknownAgreementEvent: _known_event_types(yagna.AgreementEvent),
}


def reader(cls: type[Any]) -> Any:
    """The type the library decodes ``cls`` as: commands and event kinds travel wrapped in a
    one-key object and are read through their union."""
    if cls in COMMANDS:
        return yagna.ExeScriptCommand
    if cls in KINDS:
        return yagna.RuntimeEventKind
    return cls


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_name(cls: type[Any], field: attrs.Attribute[Any]) -> str:
    """The key of ``field`` in the daemon's JSON."""
    if cls in KINDS:  # the exec stream is snake_case
        return field.name
    explicit = field.metadata.get("json_name")
    return explicit if isinstance(explicit, str) else camel(field.name)


# --- strategies --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)

_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.just(dt.UTC) | _offsets,
)


def _with_nanoseconds(value: dt.datetime, nanoseconds: int) -> Timestamp:
    stamp = Timestamp(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=value.tzinfo,
    )
    stamp.nanoseconds = nanoseconds
    return stamp


timestamps = st.builds(_with_nanoseconds, aware_datetimes, st.integers(0, 999))
datetimes = aware_datetimes | timestamps

amounts = st.decimals(
    min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False, allow_infinity=False
)

SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    str: st.text(max_size=12),
    int: st.integers(),
    float: st.floats(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
    bytes: st.binary(max_size=12),
    Decimal: amounts,
    dt.datetime: datetimes,
    Any: json_values,
    type(None): st.none(),
}


def enum_values(enum: type[TolerantEnum]) -> st.SearchStrategy[TolerantEnum]:
    """Known members and values this version has never heard of."""
    return st.sampled_from(list(enum)) | st.text(max_size=10).map(enum)


def _unknown_event(cls: type[Any]) -> st.SearchStrategy[Any]:
    known = KNOWN_EVENT_TYPES[cls]
    return st.builds(
        lambda event_type, rest: cls(event_type, {**rest, "eventType": event_type}),
        st.text(max_size=24).filter(lambda t: t not in known),
        json_objects,
    )


SPECIAL: dict[type[Any], st.SearchStrategy[Any]] = {
    # ``extra`` holds the keys other than ``message``.
    Reason: st.builds(
        Reason,
        st.text(max_size=12),
        st.dictionaries(
            st.text(max_size=24).filter(lambda k: k != "message"), json_values, max_size=3
        ),
    ),
    # ``stream`` captures know only ``limit``, ``atEnd`` ones only ``head``/``tail``/``headTail``.
    CaptureMode: st.builds(
        CaptureMode,
        stream=st.just(True),
        limit=st.none() | st.integers(0, 2**32),
        format=st.none() | enum_values(CaptureFormat),
    )
    | st.builds(
        CaptureMode,
        stream=st.just(False),
        head=st.none() | st.integers(0, 2**32),
        tail=st.none() | st.integers(0, 2**32),
        head_tail=st.none() | st.integers(0, 2**32),
        format=st.none() | enum_values(CaptureFormat),
    ),
    UnknownMarketEvent: _unknown_event(UnknownMarketEvent),
    UnknownAgreementEvent: _unknown_event(UnknownAgreementEvent),
    # The daemon's kinds are objects with exactly one key.
    UnknownRuntimeEventKind: st.builds(
        lambda name, body: UnknownRuntimeEventKind({name: body}),
        st.text(max_size=12).filter(lambda name: name not in KIND_NAMES),
        json_values,
    ),
}


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Valid values of the annotation ``tp``."""
    if tp in SPECIAL:
        return SPECIAL[tp]
    if tp in SCALARS:
        return SCALARS[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*(strategy_for(arg) for arg in args))
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin in (dict, Mapping):
        assert args[0] is str, tp
        return st.dictionaries(st.text(max_size=12), strategy_for(args[1]), max_size=3)
    if isinstance(tp, type) and issubclass(tp, TolerantEnum):
        return enum_values(tp)
    if isinstance(tp, type) and attrs.has(tp):
        fields = {f.alias: strategy_for(f.type) for f in attrs.fields(tp)}
        return st.builds(tp, **fields)
    raise NotImplementedError(f"no strategy for {tp!r}: teach strategy_for about it")


def as_json(value: Any) -> Any:
    """``value`` through JSON text, checking it is made of plain JSON types only."""
    _assert_plain_json(value)
    text = json.dumps(value, allow_nan=False)
    loaded = json.loads(text)
    assert loaded == value
    return loaded


def _assert_plain_json(value: Any) -> None:
    if isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str, key
            _assert_plain_json(item)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            _assert_plain_json(item)
    else:
        # str subclasses pass: a StrEnum inside a list is left as the member, which json
        # writes as its value.
        assert isinstance(value, str | int | float | None), type(value)


# --- round trips -------------------------------------------------------------------------------

ROUND_TRIP = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _round_trip_params() -> list[Any]:
    params = []
    for cls in MODELS:
        params.append(pytest.param(cls, id=cls.__name__))
    return params


TARGETS = [pytest.param(cls, id=cls.__name__) for cls in MODELS] + [
    pytest.param(union, id=name) for name, union in UNIONS.items()
]


def check_round_trip(value: Any, as_type: Any) -> None:
    encoded = encode(value)
    loaded = as_json(encoded)
    decoded = decode("op", loaded, as_type)
    assert decoded == value
    assert type(decoded) is type(value)
    # Equality of datetimes ignores the nanoseconds a Timestamp keeps; the JSON does not.
    assert encode(decoded) == encoded


@pytest.mark.parametrize("cls", _round_trip_params())
@ROUND_TRIP
@given(data=st.data())
def test_round_trip_as_own_type(cls: type[Any], data: st.DataObject) -> None:
    check_round_trip(data.draw(strategy_for(cls)), cls)


@pytest.mark.parametrize("target", TARGETS)
@ROUND_TRIP
@given(data=st.data())
def test_round_trip_as_read_by_the_library(target: Any, data: st.DataObject) -> None:
    value = data.draw(strategy_for(target))
    as_type = reader(target) if isinstance(target, type) else target
    check_round_trip(value, as_type)


def _reaches_enum(tp: Any) -> bool:
    """Whether decoding ``tp`` structures a TolerantEnum through the converter's hooks."""
    if tp is CaptureMode:  # its own hook builds the CaptureFormat
        return False
    if isinstance(tp, type) and issubclass(tp, TolerantEnum):
        return True
    if isinstance(tp, type) and attrs.has(tp):
        return any(_reaches_enum(f.type) for f in attrs.fields(tp))
    return any(_reaches_enum(arg) for arg in typing.get_args(tp))


def _typed_params() -> list[Any]:
    params = []
    for param in TARGETS:
        (target,) = param.values
        params.append(pytest.param(target, id=param.id))
    return params


def assert_same_types(decoded: Any, original: Any, where: str = "$") -> None:
    """``decoded`` is built of the same Python types as ``original`` (which ``==`` does not
    show: a str equals a StrEnum member, a datetime a Timestamp)."""
    if attrs.has(type(original)):
        assert type(decoded) is type(original), where
        for field in attrs.fields(type(original)):
            value = getattr(original, field.name)
            assert_same_types(getattr(decoded, field.name), value, f"{where}.{field.name}")
    elif isinstance(original, Mapping):
        for key, value in original.items():
            assert_same_types(decoded[key], value, f"{where}[{key!r}]")
    elif isinstance(original, list):
        for index, (got, value) in enumerate(zip(decoded, original, strict=True)):
            assert_same_types(got, value, f"{where}[{index}]")
    elif isinstance(original, dt.datetime):
        assert isinstance(decoded, Timestamp), where
    else:
        assert type(decoded) is type(original), (
            f"{where}: {type(decoded).__name__} instead of {type(original).__name__}"
        )


@pytest.mark.parametrize("target", _typed_params())
@ROUND_TRIP
@given(data=st.data())
def test_decoded_values_have_the_declared_types(target: Any, data: st.DataObject) -> None:
    value = data.draw(strategy_for(target))
    as_type = reader(target) if isinstance(target, type) else target
    assert_same_types(decode("op", as_json(encode(value)), as_type), value)


def _plain_object_models() -> list[Any]:
    skip = (Reason, CaptureMode, *UNKNOWN_EVENTS, *KINDS)  # shapes of their own
    return [pytest.param(cls, id=cls.__name__) for cls in MODELS if cls not in skip]


@pytest.mark.parametrize("cls", _plain_object_models())
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_none_fields_are_left_out(cls: type[Any], data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    body = container(cls, encode(value))
    for field in attrs.fields(cls):
        present = wire_name(cls, field) in body
        if field.default is None and getattr(value, field.name) is None:
            assert not present, field.name
        else:
            assert present, field.name


@settings(max_examples=200, deadline=None)
@given(timestamps)
def test_timestamp_text_round_trips_to_the_nanosecond(value: Timestamp) -> None:
    text = yagna.format_timestamp(value)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{6}|\d{9})Z", text), text
    parsed = yagna.parse_timestamp(text)
    assert parsed == value
    assert parsed.utcoffset() == dt.timedelta(0)
    assert getattr(parsed, "nanoseconds", None) == value.nanoseconds
    assert yagna.format_timestamp(parsed) == text


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
def test_naive_datetimes_are_written_as_utc(value: dt.datetime) -> None:
    text = yagna.format_timestamp(value)
    assert text == yagna.format_timestamp(value.replace(tzinfo=dt.UTC))
    assert yagna.parse_timestamp(text) == value.replace(tzinfo=dt.UTC)


# --- garbage -----------------------------------------------------------------------------------


def field_cases(cls: type[Any]) -> list[tuple[str, str, Any, bool]]:
    """``(attribute, JSON key, annotation, required)`` of the keys a test may break."""
    if cls is Reason:
        return [("message", "message", str, True)]
    if cls in UNKNOWN_EVENTS:
        return [("event_type", "eventType", str, True)]
    if cls in OPAQUE:
        return []
    return [
        (f.name, wire_name(cls, f), f.type, f.default is attrs.NOTHING)
        for f in attrs.fields(cls)
        if not (cls is CaptureMode and f.name == "stream")  # the key, not a value
    ]


def container(cls: type[Any], encoded: Any) -> dict[str, Any]:
    """The JSON object that holds the fields of ``cls`` in its encoding."""
    if cls in COMMANDS or cls in KINDS or cls is CaptureMode:
        ((_, body),) = encoded.items()
        return body  # type: ignore[no-any-return]
    return encoded  # type: ignore[no-any-return]


ALL_KINDS = frozenset({"null", "bool", "int", "float", "str", "array", "object"})


def accepted_kinds(tp: Any) -> frozenset[str]:
    """The JSON types a value of annotation ``tp`` may be read from."""
    if tp is Any:
        return ALL_KINDS
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return frozenset().union(*(accepted_kinds(arg) for arg in typing.get_args(tp)))
    if origin is list or tp is bytes:
        return frozenset({"array"})
    if origin in (dict, Mapping) or (isinstance(tp, type) and attrs.has(tp)):
        return frozenset({"object"})
    simple = {
        type(None): {"null"},
        str: {"str"},
        int: {"int"},  # and integral floats
        float: {"int", "float"},
        bool: {"bool"},
        Decimal: {"str", "int", "float"},
        dt.datetime: {"str"},
    }
    if tp in simple:
        return frozenset(simple[tp])
    if isinstance(tp, type) and issubclass(tp, TolerantEnum):
        return frozenset({"str"})
    raise NotImplementedError(f"which JSON types does {tp!r} accept?")


KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    "str": st.text(max_size=8),
    "array": st.lists(json_scalars, max_size=3),
    "object": json_objects,
}


def _names(err: DecodeError, key: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", str(err)) is not None


def _field_params(*, required_only: bool, wrong_type: bool) -> list[Any]:
    params = []
    for cls in MODELS:
        for _, key, annotation, required in field_cases(cls):
            if required_only and not required:
                continue
            if wrong_type and accepted_kinds(annotation) == ALL_KINDS:
                continue
            params.append(pytest.param(cls, key, annotation, id=f"{cls.__name__}.{key}"))
    return params


PER_FIELD = settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _applicable(cls: type[Any], encoded: Any, key: str) -> bool:
    if cls is CaptureMode:  # each capture mode has its own keys
        return key == "format" or (key == "limit") == ("stream" in encoded)
    return True


@pytest.mark.parametrize(
    ("cls", "key", "annotation"), _field_params(required_only=True, wrong_type=False)
)
@PER_FIELD
@given(data=st.data())
def test_missing_required_key_is_named(
    cls: type[Any], key: str, annotation: Any, data: st.DataObject
) -> None:
    encoded = as_json(encode(data.draw(strategy_for(cls))))
    del container(cls, encoded)[key]
    with pytest.raises(DecodeError) as caught:
        decode("op", encoded, reader(cls))
    assert _names(caught.value, key), str(caught.value)


@pytest.mark.parametrize(
    ("cls", "key", "annotation"), _field_params(required_only=False, wrong_type=True)
)
@PER_FIELD
@given(data=st.data())
def test_wrong_json_type_is_named(
    cls: type[Any], key: str, annotation: Any, data: st.DataObject
) -> None:
    encoded = as_json(encode(data.draw(strategy_for(cls))))
    assume(_applicable(cls, encoded, key))
    kind = data.draw(st.sampled_from(sorted(ALL_KINDS - accepted_kinds(annotation))))
    container(cls, encoded)[key] = data.draw(KIND_VALUES[kind])
    with pytest.raises(DecodeError) as caught:
        decode("op", encoded, reader(cls))
    assert _names(caught.value, key), str(caught.value)


def _extra_key_models() -> list[Any]:
    # Reason and unknown events keep every key; the opaque kinds have no object of fields.
    skip = (Reason, *UNKNOWN_EVENTS, *OPAQUE)
    return [pytest.param(cls, id=cls.__name__) for cls in MODELS if cls not in skip]


def deep_junk(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"junk": value}
    return value


@pytest.mark.parametrize("cls", _extra_key_models())
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_unknown_keys_are_ignored(cls: type[Any], data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    encoded = as_json(encode(value))
    body = container(cls, encoded)
    names = {key for _, key, _, _ in field_cases(cls)}
    extra = data.draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in names))
    body[extra] = data.draw(json_values | st.integers(1, 300).map(deep_junk))
    assert decode("op", encoded, reader(cls)) == value


# Garbage that looks like the daemon's JSON: its keys, event types, timestamps and amounts.

VOCABULARY = sorted(
    {key for cls in MODELS for _, key, _, _ in field_cases(cls)}
    | {"eventType", "message", "stream", "atEnd"}
    | {cls.NAME for cls in COMMANDS}
    | KIND_NAMES
    | {t for known in KNOWN_EVENT_TYPES.values() for t in known}
)
GARBAGE_TEXT = (
    st.sampled_from(VOCABULARY)
    | st.sampled_from(["2024-05-01T10:00:00.123456789Z", "2024-05-01T10:00:00", "1.5", "NaN"])
    | st.text(max_size=10)
)
garbage_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300)
    | st.floats()
    | GARBAGE_TEXT
)
garbage = st.recursive(
    garbage_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)

GARBAGE = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_raises_decode_error(data: Any, target: Any) -> None:
    try:
        decode("op", data, target)
    except DecodeError as err:
        message = str(err)
    else:
        return
    assert message.startswith("op: malformed reply: ")


@pytest.mark.parametrize("target", TARGETS)
@GARBAGE
@given(data=garbage)
def test_garbage_decodes_or_raises_decode_error(target: Any, data: Any) -> None:
    decodes_or_raises_decode_error(data, target)


def _node_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _node_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _node_paths(item, (*path, index))


@st.composite
def mutations(draw: Callable[..., Any], value: Any) -> Any:
    """``value`` with one node removed, replaced by garbage or deep junk, or given a new key."""
    value = copy.deepcopy(value)
    path = draw(st.sampled_from(list(_node_paths(value))))
    operation = draw(st.sampled_from(["remove", "replace", "deep", "add"]))
    if operation == "add":
        parent = _at(value, path)
        if isinstance(parent, dict):
            parent[draw(st.sampled_from(VOCABULARY) | st.text(max_size=6))] = draw(garbage)
            return value
        operation = "replace"
    if not path:
        return draw(garbage)
    parent, last = _at(value, path[:-1]), path[-1]
    if operation == "remove":
        del parent[last]
    elif operation == "replace":
        parent[last] = draw(garbage)
    else:
        parent[last] = deep_junk(draw(st.integers(50, 3000)))
    return value


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@pytest.mark.parametrize("target", TARGETS)
@GARBAGE
@given(data=st.data())
def test_mutated_encoding_decodes_or_raises_decode_error(target: Any, data: st.DataObject) -> None:
    encoded = as_json(encode(data.draw(strategy_for(target))))
    decodes_or_raises_decode_error(
        data.draw(mutations(encoded)), reader(target) if isinstance(target, type) else target
    )


def test_models_and_unions_are_discovered() -> None:
    exported = {getattr(yagna, name) for name in yagna.__all__}
    assert NOT_JSON_MODELS.issubset(exported)
    assert {yagna.Proposal, yagna.Agreement, yagna.RuntimeEvent, yagna.Invoice} <= set(MODELS)
    for name, union in UNIONS.items():
        assert getattr(yagna, name) is union
        assert set(typing.get_args(union)) <= set(MODELS), name
