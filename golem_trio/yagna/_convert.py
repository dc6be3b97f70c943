"""The one cattrs converter that maps the daemon's camelCase JSON onto our attrs models.

Rules, in one place:

* field ``some_name`` is ``someName`` in JSON unless the field's metadata says otherwise
  (``json_name``), because a few wire names are snake_case (``entry_point``) or keywords
  (``from``);
* unknown keys are ignored, missing required keys and wrong JSON types raise
  :class:`~golem_trio.yagna.DecodeError` naming the field; primitives are never coerced
  (``"5"`` is not an int, ``5`` is not a string, ``true`` is not a number);
* money is :class:`~decimal.Decimal`, read from decimal strings (or JSON numbers, as the daemon
  accepts them) and written as plain decimal strings;
* timestamps are timezone-aware :class:`~datetime.datetime`, read from RFC 3339 with up to
  nanoseconds (naive timestamps, as in the exec event stream, are UTC) and written with ``Z``;
* ``None`` fields with a ``None`` default are left out of request bodies.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.cols
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import DecodeError

__all__ = [
    "JSON_NAME",
    "Timestamp",
    "converter",
    "decode",
    "encode",
    "format_timestamp",
    "json_field",
    "parse_timestamp",
]

T = TypeVar("T")

#: Metadata key giving a field's JSON name when it is not the camelCase of its Python name.
JSON_NAME = "json_name"

converter = cattrs.Converter(forbid_extra_keys=False)


def json_field(name: str, **kwargs: Any) -> Any:
    """An attrs field whose JSON name is ``name``."""
    metadata = dict(kwargs.pop("metadata", {}))
    metadata[JSON_NAME] = name
    return attrs.field(metadata=metadata, **kwargs)


def camel(name: str) -> str:
    """``some_field_name`` -> ``someFieldName``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_name(field: attrs.Attribute[Any]) -> str:
    """The JSON name of an attrs field."""
    name = field.metadata.get(JSON_NAME)
    return name if isinstance(name, str) else camel(field.name)


# --- primitives: no silent coercion -----------------------------------------------------------


def _structure_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _structure_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _structure_any(value: object, _: object) -> object:
    return value


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(Any, _structure_any)


def _checked(
    kind: type | tuple[type, ...], what: str, factory: Callable[[Any, Any], Any]
) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """Wrap a cattrs hook factory so that the JSON value's type is checked first (cattrs would
    happily iterate a string where an array is due)."""

    def make(cl: Any) -> Callable[[Any, Any], Any]:
        inner = factory(cl, converter)

        def structure(value: Any, target: Any) -> Any:
            if not isinstance(value, kind):
                raise TypeError(f"expected {what}, got {type(value).__name__}")
            return inner(value, target)

        return structure

    return make


def _is_list(cl: Any) -> bool:
    return getattr(cl, "__origin__", None) is list


def _is_dict(cl: Any) -> bool:
    return getattr(cl, "__origin__", None) is dict


converter.register_structure_hook_factory(
    _is_list, _checked((list, tuple), "an array", cattrs.cols.list_structure_factory)
)
converter.register_structure_hook_factory(
    _is_dict, _checked(Mapping, "an object", cattrs.cols.mapping_structure_factory)
)


# --- money -------------------------------------------------------------------------------------


#: Amounts of 10**MAX_AMOUNT_DIGITS or more, or with more than MAX_AMOUNT_PLACES decimal
#: places, are refused: written out in full they would take unbounded memory.
MAX_AMOUNT_DIGITS = 60
MAX_AMOUNT_PLACES = 1000


def _structure_decimal(value: object, _: type) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"expected a decimal string, got {type(value).__name__}")
    try:
        amount = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise ValueError(f"not a decimal amount: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {str(value)[:40]!r}")
    exponent = int(amount.as_tuple().exponent)
    if amount and (amount.adjusted() > MAX_AMOUNT_DIGITS or exponent < -MAX_AMOUNT_PLACES):
        # A hostile "1e999999999" would otherwise become a gigabyte of digits when written.
        raise ValueError(f"amount out of range: {str(value)[:40]!r}")
    return amount


def _unstructure_decimal(value: decimal.Decimal) -> str:
    return format(value, "f")


converter.register_structure_hook(decimal.Decimal, _structure_decimal)
converter.register_unstructure_hook(decimal.Decimal, _unstructure_decimal)


# --- timestamps --------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]+))?(?P<zone>[Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)


class Timestamp(dt.datetime):
    """A timezone-aware datetime that also keeps the daemon's sub-microsecond digits.

    The daemon stamps events with nanoseconds and selects persistent events by
    ``timestamp > afterTimestamp``; echoing a timestamp cut to microseconds would fetch the
    last seen event again. ``nanoseconds`` (0-999) are the digits past the microseconds.
    """

    __slots__ = ("nanoseconds",)
    nanoseconds: int


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp with up to nanoseconds; a naive one is taken as UTC.

    Returns a :class:`Timestamp`, which formats back to the same instant to the nanosecond.
    """
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:60]!r}")
    digits = (match["fraction"] or "").ljust(9, "0")
    zone = match["zone"] or "Z"
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    value = Timestamp.fromisoformat(f"{match['date']}T{match['time']}.{digits[:6]}{zone}")
    value.nanoseconds = int(digits[6:9])
    return value


def format_timestamp(value: dt.datetime) -> str:
    """Format a datetime as RFC 3339 UTC with a ``Z`` (a naive one is taken as UTC), with
    nanoseconds when it is a :class:`Timestamp` that has them."""
    nanoseconds = getattr(value, "nanoseconds", 0)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    text = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    if nanoseconds:
        text += f"{nanoseconds:03d}"
    return text + "Z"


def _structure_datetime(value: object, _: type) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 timestamp string, got {type(value).__name__}")
    return parse_timestamp(value)


converter.register_structure_hook(dt.datetime, _structure_datetime)
converter.register_unstructure_hook(dt.datetime, format_timestamp)


# --- attrs classes: camelCase, unknown keys ignored, None defaults omitted -----------------------


def _structure_factory(cl: type[Any]) -> Callable[[Any, Any], Any]:
    overrides = {f.name: override(rename=wire_name(f)) for f in attrs.fields(cl)}
    inner = make_dict_structure_fn(cl, converter, **overrides)  # type: ignore[arg-type]

    def structure(value: Any, target: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object for {cl.__name__}, got {type(value).__name__}")
        return inner(value, target)

    return structure


def _unstructure_factory(cl: type[Any]) -> Callable[[Any], Any]:
    overrides = {
        f.name: override(rename=wire_name(f), omit_if_default=f.default is None)
        for f in attrs.fields(cl)
    }
    return make_dict_unstructure_fn(cl, converter, **overrides)  # type: ignore[arg-type]


converter.register_structure_hook_factory(attrs.has, _structure_factory)
converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)


# --- the decode boundary -------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


def _first_problem(exc: BaseException, path: str = "$") -> tuple[str, str]:
    """A readable message and the JSON path (with the *wire* names) of the first leaf error of
    a cattrs error group."""
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, others = exc.group_exceptions()
        if with_notes:
            sub, note = with_notes[0]
            name = note.name
            if attrs.has(exc.cl):
                by_name = {f.name: f for f in attrs.fields(exc.cl)}
                if name in by_name:
                    name = wire_name(by_name[name])
            return _first_problem(sub, f"{path}.{name}")
        if others:
            return _first_problem(others[0], path)
    if isinstance(exc, cattrs.IterableValidationError):
        with_index, others = exc.group_exceptions()
        if with_index:
            sub, index_note = with_index[0]
            return _first_problem(sub, f"{path}[{index_note.index!r}]")
        if others:
            return _first_problem(others[0], path)
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _first_problem(exc.exceptions[0], path)
    return _describe(exc), path


def decode(operation: str, data: object, cl: type[T] | Any) -> T:
    """Structure ``data`` into ``cl`` or raise one :class:`DecodeError` that names the field."""
    try:
        result: T = converter.structure(data, cl)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        detail, path = _first_problem(exc)
        raise DecodeError(operation, f"malformed reply: {detail}", path=path) from exc
    except RecursionError as exc:
        raise DecodeError(operation, "malformed reply: nested too deeply") from exc
    return result


def encode(value: object) -> Any:
    """Unstructure a model (or a list or dict of models) into JSON-ready data."""
    return converter.unstructure(value)
