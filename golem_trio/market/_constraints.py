"""Demand and offer constraints: build, parse, render and evaluate the daemon's filter language.

A constraint is an LDAP-like filter over the other side's properties::

    (&(golem.node.debug.subnet=public)
      (golem.inf.mem.gib>=4)
      (golem.runtime.capabilities=vpn)
      (!(golem.node.id.name=bad-node*)))

Trees are immutable; build them with :func:`prop` and the operators ``&``, ``|`` and ``~``::

    wanted = Constraints.all(
        prop("golem.inf.mem.gib") >= 4,
        prop("golem.runtime.capabilities") == "vpn",
        ~prop("golem.node.id.name").matches("bad-node*"),
    )

* :func:`parse` reads constraint text (raising :exc:`ConstraintSyntaxError` with the position),
  :func:`render` writes the daemon's compact syntax; ``parse(render(c)) == c``.
* :func:`evaluate` resolves a constraint against a set of properties to ``True``, ``False`` or
  ``None`` (undefined), as the daemon's matcher does, so offers can be filtered locally before
  any negotiation.

Where this departs from the daemon's matcher, on purpose: in a wildcard value only ``*`` is
special (the daemon reads the rest of the value as a regular expression, so ``.`` matches any
character); strings are compared as they are (the daemon compares their JSON-escaped text, so a
value holding ``"`` or ``\\`` never equals, and strings holding control characters other than
newline and tab are unreadable to it); ``"@tag"`` keys of nested property objects are not
special; ``$d`` values are plain decimals (no ``_`` digit separators), ``$t`` years start at 1
and offsets take no U+2212 minus; ``$v`` pre-release identifiers may hold ``-`` anywhere.
:func:`parse` is stricter than the daemon: it refuses property names holding whitespace and
aspects (``name[aspect]``), and text after the first filter (the daemon ignores it).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

import attrs

from .._errors import GolemError

__all__ = [
    "And",
    "Compare",
    "Constraint",
    "ConstraintError",
    "ConstraintSyntaxError",
    "Constraints",
    "Empty",
    "Not",
    "Op",
    "Or",
    "Present",
    "Property",
    "TypeHint",
    "as_constraint",
    "evaluate",
    "parse",
    "prop",
    "render",
]

# Whitespace the daemon skips between tokens.
_WS: Final = " \t\r\n"
# Characters a property name cannot hold: operators, parentheses, and the aspect and type-hint
# markers (aspects are not supported).
_NAME_SPECIAL: Final = frozenset("=<>~()[]$")
_MAX_DEPTH: Final = 100


class ConstraintError(GolemError, ValueError):
    """A constraint tree cannot be built from what was given (a bad name or value)."""


class ConstraintSyntaxError(ConstraintError):
    """Constraint text is not one valid filter.

    ``position`` is the 0-based index in ``text`` where reading failed; ``reason`` says why.
    """

    def __init__(self, reason: str, text: str, position: int) -> None:
        start = max(0, position - 20)
        excerpt = f"{text[start:position]!r} <HERE> {text[position : position + 20]!r}"
        super().__init__(f"{reason} at position {position}: {excerpt}")
        self.reason = reason
        self.text = text
        self.position = position


class Op(enum.Enum):
    """A comparison operator."""

    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class TypeHint(enum.Enum):
    """A type suffix on a property name (``name$v``): read a string property as this type."""

    VERSION = "v"  # semantic version
    DECIMAL = "d"  # exact decimal number
    DATETIME = "t"  # RFC 3339 date and time


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConstraintError(f"a property name must be a non-empty string, got {name!r}")
    if name[0] in "&|!":
        raise ConstraintError(f"a property name cannot start with {name[0]!r}: {name!r}")
    if any(c.isspace() for c in name):
        raise ConstraintError(f"a property name cannot contain whitespace: {name!r}")
    bad = _NAME_SPECIAL.intersection(name)
    if bad:
        raise ConstraintError(f"a property name cannot contain {''.join(sorted(bad))!r}: {name!r}")


def _name_validator(_instance: object, _attribute: object, name: str) -> None:
    _check_name(name)


class Constraints:
    """What every constraint node shares: the ``&``, ``|`` and ``~`` operators and the
    :meth:`all` / :meth:`any` constructors."""

    __slots__ = ()

    @staticmethod
    def all(*operands: Constraint | str) -> And:
        """``(&…)`` of the operands (constraint text is parsed)."""
        return And(tuple(as_constraint(c) for c in operands))

    @staticmethod
    def any(*operands: Constraint | str) -> Or:
        """``(|…)`` of the operands (constraint text is parsed)."""
        return Or(tuple(as_constraint(c) for c in operands))

    def __and__(self, other: Constraint) -> And:
        left = self.operands if isinstance(self, And) else (_node(self),)
        right = other.operands if isinstance(other, And) else (other,)
        return And((*left, *right))

    def __or__(self, other: Constraint) -> Or:
        left = self.operands if isinstance(self, Or) else (_node(self),)
        right = other.operands if isinstance(other, Or) else (other,)
        return Or((*left, *right))

    def __invert__(self) -> Not:
        return Not(_node(self))


def _node(value: object) -> Constraint:
    if isinstance(value, Empty | And | Or | Not | Present | Compare):
        return value
    raise TypeError(f"not a constraint: {value!r}")


def _operands(value: Iterable[Constraint]) -> tuple[Constraint, ...]:
    return tuple(_node(c) for c in value)


@attrs.frozen
class Empty(Constraints):
    """``()``: always true."""


@attrs.frozen
class And(Constraints):
    """``(&f1 f2 …)``: true if every operand is (true with no operands)."""

    operands: tuple[Constraint, ...] = attrs.field(converter=_operands)


@attrs.frozen
class Or(Constraints):
    """``(|f1 f2 …)``: true if any operand is (false with no operands)."""

    operands: tuple[Constraint, ...] = attrs.field(converter=_operands)


@attrs.frozen
class Not(Constraints):
    """``(!f)``."""

    operand: Constraint = attrs.field(converter=_node)


@attrs.frozen
class Present(Constraints):
    """``(name=*)``: true if the other side has the property (never undefined).

    ``type_hint`` only keeps a ``name$v=*`` spelling; it has no effect here.
    """

    name: str = attrs.field(validator=_name_validator)
    type_hint: TypeHint | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Compare(Constraints):
    """``(name OP value)``; ``value`` is the text after the operator, as the daemon reads it.

    How the value is compared depends on the property's JSON type (see :func:`evaluate`), or on
    ``type_hint`` (``name$v``, ``name$d``, ``name$t``) if given.
    """

    name: str = attrs.field(validator=_name_validator)
    op: Op
    value: str
    type_hint: TypeHint | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        # The value is ended by the first ")" and there is no escaping; "=*" reads as a presence
        # test and "<=" / ">=" are read before "<" / ">": such values could not be written.
        if not isinstance(self.value, str):
            raise ConstraintError(f"a value must be a string, got {self.value!r}")
        if ")" in self.value:
            raise ConstraintError(f"a value cannot contain ')': {self.value!r}")
        if self.op is Op.EQ and self.value.startswith("*"):
            raise ConstraintError(f"an '=' value cannot start with '*': {self.value!r}")
        if self.op in (Op.LT, Op.GT) and self.value.startswith("="):
            raise ConstraintError(
                f"a {self.op.value!r} value cannot start with '=': {self.value!r}"
            )


Constraint: TypeAlias = Empty | And | Or | Not | Present | Compare


def as_constraint(value: Constraint | str) -> Constraint:
    """A constraint tree as it is, or constraint text parsed."""
    if isinstance(value, str):
        return parse(value)
    return _node(value)


# --- building --------------------------------------------------------------------------------


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConstraintError(f"a number must be finite, got {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConstraintError(f"a number must be finite, got {value!r}")
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConstraintError(f"a datetime must be timezone-aware, got {value!r}")
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        items = [_format_value(item) for item in value]
        for item in items:
            if not item or item[0] in _WS or set(item) & set("[],"):
                raise ConstraintError(f"a list item cannot be written in a constraint: {item!r}")
        return "[" + ",".join(items) + "]"
    raise ConstraintError(f"cannot write {value!r} in a constraint")


@attrs.frozen(eq=False)
class Property:
    """A property reference for building comparisons: see :func:`prop`."""

    name: str = attrs.field(validator=_name_validator)
    type_hint: TypeHint | None = None

    def _compare(self, op: Op, value: object) -> Compare:
        hint = self.type_hint
        if hint is None and isinstance(value, dt.datetime):
            hint = TypeHint.DATETIME
        return Compare(self.name, op, _format_value(value), type_hint=hint)

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        """``(name=value)``: equality, list membership (a string value) or list equality."""
        return self._compare(Op.EQ, value)

    def __ne__(self, value: object) -> Not:  # type: ignore[override]
        """``(!(name=value))``."""
        return Not(self._compare(Op.EQ, value))

    __hash__ = None  # type: ignore[assignment]

    def __lt__(self, value: object) -> Compare:
        return self._compare(Op.LT, value)

    def __le__(self, value: object) -> Compare:
        return self._compare(Op.LE, value)

    def __gt__(self, value: object) -> Compare:
        return self._compare(Op.GT, value)

    def __ge__(self, value: object) -> Compare:
        return self._compare(Op.GE, value)

    def matches(self, pattern: str) -> Compare:
        """``(name=pattern)``, ``*`` in the pattern standing for any text."""
        return Compare(self.name, Op.EQ, pattern, type_hint=self.type_hint)

    def present(self) -> Present:
        """``(name=*)``."""
        return Present(self.name)

    def as_version(self) -> Property:
        """Compare as semantic versions (``name$v``)."""
        return Property(self.name, TypeHint.VERSION)

    def as_decimal(self) -> Property:
        """Compare as exact decimals (``name$d``)."""
        return Property(self.name, TypeHint.DECIMAL)

    def as_datetime(self) -> Property:
        """Compare as RFC 3339 date-times (``name$t``)."""
        return Property(self.name, TypeHint.DATETIME)


def prop(name: str) -> Property:
    """A property to compare: ``prop("golem.inf.mem.gib") >= 4``, ``prop("x").present()``.

    Values are written as the daemon reads them: numbers in decimal, booleans as ``true`` /
    ``false``, sequences as ``[a,b]`` (list equality), aware datetimes in RFC 3339 (with
    ``$t``).
    """
    return Property(name)


# --- parsing ---------------------------------------------------------------------------------


def parse(text: str) -> Constraint:
    """Parse constraint text; raise :exc:`ConstraintSyntaxError` unless it is exactly one filter.

    Whitespace (space, tab, CR, LF) may surround filters and operators, except inside ``()``
    and before a top-level ``()`` (the daemon refuses both). A name runs up to its operator and
    may not hold whitespace; a value runs verbatim up to the first ``)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"constraint text must be a string, got {text!r}")
    reader = _Reader(text)
    reader.skip_ws()
    if reader.pos > 0 and text.startswith("()", reader.pos):
        raise reader.fail("whitespace before a top-level '()'", 0)
    constraint = reader.filter(0)
    reader.skip_ws()
    if reader.pos < len(text):
        raise reader.fail("unexpected text after the filter")
    return constraint


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str, position: int | None = None) -> ConstraintSyntaxError:
        return ConstraintSyntaxError(reason, self.text, self.pos if position is None else position)

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def expect_close(self, start: int, reason: str) -> None:
        self.skip_ws()
        if not self.peek():
            raise self.fail(f"missing ')' for the '(' at position {start}")
        if self.peek() != ")":
            raise self.fail(reason)
        self.pos += 1

    def filter(self, depth: int) -> Constraint:
        self.skip_ws()
        start = self.pos
        if self.peek() != "(":
            raise self.fail(
                f"expected '(' but found {self.peek()!r}"
                if self.peek()
                else "expected '(' but found the end of the text"
            )
        if depth >= _MAX_DEPTH:
            raise self.fail(f"filters nested deeper than {_MAX_DEPTH}")
        self.pos += 1
        if self.peek() == ")":
            self.pos += 1
            return Empty()
        self.skip_ws()
        head = self.peek()
        if head in ("&", "|"):
            self.pos += 1
            operands: list[Constraint] = []
            while True:
                self.skip_ws()
                if self.peek() != "(":
                    break
                operands.append(self.filter(depth + 1))
            self.expect_close(start, "expected '(' or ')'")
            return And(tuple(operands)) if head == "&" else Or(tuple(operands))
        if head == "!":
            self.pos += 1
            self.skip_ws()
            if self.peek() != "(":
                raise self.fail("expected '(' after '!'")
            operand = self.filter(depth + 1)
            self.expect_close(start, "'!' takes exactly one filter")
            return Not(operand)
        if not head:
            raise self.fail(f"missing ')' for the '(' at position {start}")
        return self.comparison(start)

    def comparison(self, start: int) -> Constraint:
        name_start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=<>~()":
            self.pos += 1
        name_end = self.pos
        found = self.peek()
        if found == "~":
            raise self.fail("unsupported operator '~'")
        if found in ("", "(", ")"):
            raise self.fail("expected a property name and an operator (=, <, <=, >, >=)")
        name, hint = self.reference(name_start, name_end)
        op = next(
            o
            for o in (Op.LE, Op.GE, Op.LT, Op.GT, Op.EQ)
            if self.text.startswith(o.value, self.pos)
        )
        self.pos += len(op.value)
        value_start = self.pos
        end = self.text.find(")", value_start)
        if end < 0:
            raise self.fail(f"missing ')' for the '(' at position {start}", len(self.text))
        value = self.text[value_start:end]
        self.pos = end + 1
        if op is Op.EQ and value.startswith("*"):
            if value.rstrip(_WS) == "*":
                return Present(name, type_hint=hint)
            raise self.fail(
                "an '=' value cannot start with '*' ('=*' alone tests presence)", value_start
            )
        return Compare(name, op, value, type_hint=hint)

    def reference(self, begin: int, end: int) -> tuple[str, TypeHint | None]:
        raw = self.text[begin:end]
        hint: TypeHint | None = None
        dollar = raw.find("$")
        if dollar >= 0:
            code = raw[dollar + 1 :]
            try:
                hint = TypeHint(code)
            except ValueError:
                raise self.fail("expected a type code $v, $d or $t", begin + dollar) from None
            raw = raw[:dollar]
        for i, char in enumerate(raw):
            if char in "[]":
                raise self.fail("property aspects (name[aspect]) are not supported", begin + i)
            if char.isspace():
                raise self.fail("whitespace in a property name", begin + i)
        if not raw:
            raise self.fail("empty property name", begin)
        try:
            _check_name(raw)
        except ConstraintError as exc:
            raise self.fail(str(exc), begin) from None
        return raw, hint


# --- rendering -------------------------------------------------------------------------------


def render(constraint: Constraint) -> str:
    """The daemon's compact text of a constraint; ``parse(render(c)) == c``."""
    if isinstance(constraint, Empty):
        return "()"
    if isinstance(constraint, And):
        return "(&" + "".join(render(c) for c in constraint.operands) + ")"
    if isinstance(constraint, Or):
        return "(|" + "".join(render(c) for c in constraint.operands) + ")"
    if isinstance(constraint, Not):
        return "(!" + render(constraint.operand) + ")"
    hint = "" if constraint.type_hint is None else "$" + constraint.type_hint.value
    if isinstance(constraint, Present):
        return f"({constraint.name}{hint}=*)"
    return f"({constraint.name}{hint}{constraint.op.value}{constraint.value})"


# --- evaluation ------------------------------------------------------------------------------

# A property value as compared: JSON numbers as floats (the daemon holds them as f64).
_Value: TypeAlias = "str | bool | float | tuple[_Value, ...]"


def _flatten(properties: Mapping[str, object]) -> dict[str, _Value]:
    flat: dict[str, _Value] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
            return
        readable = _readable(value)
        # null, objects and lists holding them are not values to the matcher: absent.
        if readable is not None:
            flat[prefix] = readable

    walk("", properties)
    return flat


def _readable(value: object) -> _Value | None:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, list | tuple):
        items = [_readable(item) for item in value]
        if any(item is None for item in items):
            return None
        return tuple(item for item in items if item is not None)
    return None


def evaluate(constraint: Constraint, properties: Mapping[str, object]) -> bool | None:
    """Resolve a constraint against the other side's properties: ``True``, ``False`` or ``None``
    (undefined). A match needs ``True``.

    * ``&``, ``|`` and ``!`` follow Kleene's three-valued logic (``False & None`` is ``False``,
      ``True | None`` is ``True``, ``!None`` is ``None``); ``(&)`` is true, ``(|)`` false.
    * A comparison on a missing property is undefined; a presence test is then ``False``.
      ``null`` values, objects and lists holding them count as missing. Nested objects are
      flattened to dotted keys first.
    * Without a type hint the value is read as the property's JSON type: numbers numerically
      (a value that is not a number makes it false); booleans only with ``=`` and exactly
      ``true``/``false``; strings with ``=`` by equality, ``*`` standing for any text, and with
      ``<``, ``>`` … by code-point order; lists only with ``=``: ``[a,b]`` is list equality
      (same length, every wanted item equals one of the list's), anything else membership.
    * With ``$v`` / ``$d`` / ``$t`` a string property is read as a semantic version, decimal or
      RFC 3339 date-time: undefined if the property is not such a string, false if the value is
      not one.
    """
    return _resolve(constraint, _flatten(properties))


def _resolve(constraint: Constraint, props: Mapping[str, _Value]) -> bool | None:
    if isinstance(constraint, Empty):
        return True
    if isinstance(constraint, And | Or):
        # The absorbing value decides at once; otherwise undefined wins over the neutral one.
        absorbing = isinstance(constraint, Or)
        result: bool | None = not absorbing
        for operand in constraint.operands:
            outcome = _resolve(operand, props)
            if outcome is absorbing:
                return absorbing
            if outcome is None:
                result = None
        return result
    if isinstance(constraint, Not):
        inner = _resolve(constraint.operand, props)
        return None if inner is None else not inner
    if isinstance(constraint, Present):
        return constraint.name in props
    value: _Value | None = props.get(constraint.name)
    if value is None:
        return None
    if constraint.type_hint is None:
        return _compare(value, constraint.op, constraint.value)
    read = _TYPED[constraint.type_hint]
    left = read(value) if isinstance(value, str) else None
    if left is None:
        return None
    right = read(constraint.value)
    return right is not None and _ordered(constraint.op, left, right)


def _ordered(op: Op, left: Any, right: Any) -> bool:
    if op is Op.EQ:
        return bool(left == right)
    if op is Op.LT:
        return bool(left < right)
    if op is Op.LE:
        return bool(left <= right)
    if op is Op.GT:
        return bool(left > right)
    return bool(left >= right)


def _compare(value: _Value, op: Op, text: str) -> bool:
    if isinstance(value, bool):
        return op is Op.EQ and text in ("true", "false") and value is (text == "true")
    if isinstance(value, float):
        number = _read_number(text)
        return number is not None and _ordered(op, value, number)
    if isinstance(value, str):
        if op is Op.EQ:
            return _wildcard(text).fullmatch(value) is not None if "*" in text else value == text
        return _ordered(op, value, text)
    if op is not Op.EQ:
        return False
    wanted = _list_items(text)
    if wanted is None:
        return any(_compare(item, Op.EQ, text) for item in value)
    return len(wanted) == len(value) and all(
        any(_compare(item, Op.EQ, want) for item in value) for want in wanted
    )


@functools.lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # Only "*" is special; the rest of the pattern is literal text.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _list_items(text: str) -> list[str] | None:
    # "[a, b]": items lose leading whitespace, cannot be empty or hold brackets.
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        return None
    inner = text[1:-1]
    if not inner:
        return []
    items = [raw.lstrip(_WS) for raw in inner.split(",")]
    if any(not item or "[" in item or "]" in item for item in items):
        return None
    return items


# Rust's f64 syntax: no whitespace or underscores, "inf" / "infinity" / "nan" in any case.
_NUMBER = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)", re.I | re.ASCII
)


def _read_number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _read_decimal(text: str) -> Decimal | None:
    if not _DECIMAL.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimals
        return None


_SEMVER = re.compile(
    r"[ \t\r\n]*(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?[ \t\r\n]*",
    re.ASCII,
)


def _read_version(text: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]] | None:
    """A sort key: a release sorts after its pre-releases; numeric identifiers before others;
    build metadata is ignored."""
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = int(match[1]), int(match[2]), int(match[3])
    if max(major, minor, patch) >= 2**64:
        return None
    pre: list[tuple[int, int, str]] = []
    for ident in match[4].split(".") if match[4] else ():
        if ident.isdigit() and (ident == "0" or ident[0] != "0") and int(ident) < 2**64:
            pre.append((0, int(ident), ""))
        else:
            pre.append((1, 0, ident))
    return major, minor, patch, 0 if pre else 1, tuple(pre)


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _read_datetime(text: str) -> tuple[int, int] | None:
    """``(UTC seconds since the epoch, nanoseconds)``; a leap second sorts after ``:59``."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    nanos = int((match[7] or "0")[:9].ljust(9, "0"))
    if second == 60:
        second, nanos = 59, nanos + 1_000_000_000
    offset = 0
    if match[8]:
        hours, minutes = int(match[9]), int(match[10])
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 60 + minutes) * 60 * (1 if match[8] == "+" else -1)
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None  # no such date (or year 0, which datetime cannot hold)
    return (moment - _EPOCH) // dt.timedelta(seconds=1) - offset, nanos


_TYPED: Final[dict[TypeHint, Callable[[str], Any]]] = {
    TypeHint.VERSION: _read_version,
    TypeHint.DECIMAL: _read_decimal,
    TypeHint.DATETIME: _read_datetime,
}
