"""The daemon's constraint language: parse, render and evaluate demand and offer constraints.

A constraint is an LDAP-like filter over the other side's properties::

    (&(golem.node.debug.subnet=public)
      (golem.inf.mem.gib>=0.5)
      (|(golem.runtime.name=vm*)(!(golem.node.id.name=bad-node*)))
      (golem.runtime.version$v>=0.2.0)
      (golem.com.payment.platform.erc20-holesky-tglm.address=*))

* :func:`parse` turns the text into an immutable tree of :class:`Empty`, :class:`And`,
  :class:`Or`, :class:`Not`, :class:`Present` and :class:`Compare`; :func:`render` turns a tree
  back into text that parses to the same tree.
* :func:`evaluate` resolves a constraint against a set of properties to a three-valued
  :class:`Tri`; :func:`matches` is the daemon's two-way match of a demand and an offer.
* :func:`flatten` turns nested property objects into the flat dotted keys the daemon matches on.

Everything here follows the daemon's matcher (the ``ya-market-resolver`` crate) rule for rule,
including its quirks. It departs only in what :func:`parse` refuses: text after the first filter
(the daemon ignores it; :func:`matches` does too), and names that are empty, hold parentheses or
start with ``!`` (the daemon reads them as names no property has); and in using Python's ``re``
for wildcard values where the daemon uses Rust's ``regex``.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeAlias, TypeVar

import attrs

__all__ = [
    "And",
    "Compare",
    "Constraint",
    "ConstraintSyntaxError",
    "Empty",
    "Not",
    "Op",
    "Or",
    "Present",
    "Tri",
    "TypeHint",
    "evaluate",
    "flatten",
    "matches",
    "parse",
    "render",
]

# The whitespace the daemon's parser skips between tokens (nom's ``sp``); other Unicode spaces
# are ordinary characters to it.
_WS = " \t\r\n"
# Characters that end or structure a property reference; a name or aspect cannot contain them.
_REF_SPECIAL = frozenset("=<>~()[]$")
# Deeper nesting than this is refused rather than risking Python's recursion limit.
_MAX_DEPTH = 100


class ConstraintSyntaxError(ValueError):
    """The constraint text is not a valid filter.

    ``position`` is the 0-based index in ``text`` where reading failed; ``reason`` says why.
    """

    def __init__(self, reason: str, text: str, position: int) -> None:
        super().__init__(f"{reason} at position {position}: {_excerpt(text, position)}")
        self.reason = reason
        self.text = text
        self.position = position


def _excerpt(text: str, position: int) -> str:
    before = text[max(0, position - 24) : position]
    after = text[position : position + 24]
    lead = "..." if position > 24 else ""
    tail = "..." if position + 24 < len(text) else ""
    return f"{lead}{before!r} <HERE> {after!r}{tail}"


class Op(enum.Enum):
    """A comparison operator."""

    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class TypeHint(enum.Enum):
    """A type suffix on a property name (``name$v``): read a string property as this type.

    ``$d`` is a decimal, not a date: dates are ``$t``.
    """

    VERSION = "v"  # semantic version
    DECIMAL = "d"  # exact decimal number
    DATETIME = "t"  # RFC 3339 date and time


class Tri(enum.Enum):
    """A three-valued truth value: the result of resolving a constraint.

    Deliberately not usable as a ``bool`` (that would make ``UNDEFINED`` truthy): compare with
    ``is``.
    """

    TRUE = "true"
    FALSE = "false"
    UNDEFINED = "undefined"

    def __bool__(self) -> bool:
        raise TypeError("a Tri is not a bool: compare it with `is Tri.TRUE`")

    @classmethod
    def of(cls, value: bool) -> Tri:
        """``TRUE`` or ``FALSE``."""
        return cls.TRUE if value else cls.FALSE


def _check_name(name: str) -> None:
    if not name:
        raise ValueError("a property name cannot be empty")
    # The parser skips whitespace before a name and reads these as the start of &, | and !.
    if name[0] in _WS or name[0] in "&|!":
        raise ValueError(f"a property name cannot start with {name[0]!r}: {name!r}")
    _check_ref_part("property name", name)


def _check_ref_part(what: str, text: str) -> None:
    bad = _REF_SPECIAL.intersection(text)
    if bad:
        raise ValueError(f"a {what} cannot contain {''.join(sorted(bad))!r}: {text!r}")


def _name_validator(_instance: object, _attribute: object, name: str) -> None:
    _check_name(name)


def _aspect_validator(_instance: object, _attribute: object, aspect: str | None) -> None:
    if aspect is not None:
        _check_ref_part("property aspect", aspect)


@attrs.frozen
class Empty:
    """``()``: always true."""


@attrs.frozen
class And:
    """``(&f1 f2 …)``: true if every operand is (true with no operands)."""

    operands: tuple[Constraint, ...]


@attrs.frozen
class Or:
    """``(|f1 f2 …)``: true if any operand is (false with no operands)."""

    operands: tuple[Constraint, ...]


@attrs.frozen
class Not:
    """``(!f)``."""

    operand: Constraint


@attrs.frozen
class Present:
    """``(name=*)``: true if the other side has the property (never undefined).

    ``aspect`` (``name[aspect]``) and ``type_hint`` (``name$v``) are kept so the text renders
    back as it was; the daemon ignores the type hint here.
    """

    name: str = attrs.field(validator=_name_validator)
    aspect: str | None = attrs.field(default=None, kw_only=True, validator=_aspect_validator)
    type_hint: TypeHint | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Compare:
    """``(name OP value)``, ``value`` being the raw text up to the closing ``)``.

    ``type_hint`` is the ``$v``/``$d``/``$t`` suffix of the name; ``aspect`` the ``[aspect]``
    part.
    """

    name: str = attrs.field(validator=_name_validator)
    op: Op
    value: str
    aspect: str | None = attrs.field(default=None, kw_only=True, validator=_aspect_validator)
    type_hint: TypeHint | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        # The value is unescaped text ended by the first ")", and the daemon reads "=*" as a
        # presence test and "<=" / ">=" before "<" / ">": such values could not be written.
        if ")" in self.value:
            raise ValueError(f"a value cannot contain ')': {self.value!r}")
        if self.op is Op.EQ and self.value.startswith("*"):
            raise ValueError(f"an '=' value cannot start with '*': {self.value!r}")
        if self.op in (Op.LT, Op.GT) and self.value.startswith("="):
            raise ValueError(f"a {self.op.value!r} value cannot start with '=': {self.value!r}")


Constraint: TypeAlias = Empty | And | Or | Not | Present | Compare


# --- parsing ---------------------------------------------------------------------------------


def parse(text: str) -> Constraint:
    """Parse constraint text into a tree; raise :exc:`ConstraintSyntaxError` if it is not one
    filter.

    Whitespace (space, tab, CR, LF) is allowed around filters and operators, except before a
    top-level ``()``. Names run up to the operator and values up to the first ``)``, both taken
    verbatim (there is no escaping, so a value cannot hold ``)``). An ``=`` value cannot start
    with ``*``: ``(name=*)`` is a presence test, and the daemon cannot read ``(name=*suffix)``.
    """
    constraint, end = _Parser(text).top_level()
    rest = text[end:].lstrip(_WS)
    if rest:
        # The daemon silently ignores whatever follows the first filter; text there is
        # always a mistake (a missing "&", an extra ")"), so it is reported.
        position = len(text) - len(rest)
        raise ConstraintSyntaxError("unexpected text after the end of the filter", text, position)
    return constraint


@functools.lru_cache(maxsize=1024)
def _parse_as_daemon(text: str) -> Constraint:
    # The daemon's own reading: the first filter counts, anything after it is ignored.
    return _Parser(text).top_level()[0]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str, position: int | None = None) -> ConstraintSyntaxError:
        return ConstraintSyntaxError(reason, self.text, self.pos if position is None else position)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def top_level(self) -> tuple[Constraint, int]:
        self.skip_ws()
        if self.pos > 0 and self.text.startswith("()", self.pos):
            # The daemon only reads a top-level "()" at the very start of the text.
            raise self.fail("whitespace before a top-level '()'", 0)
        constraint = self.filter(0)
        return constraint, self.pos

    def filter(self, depth: int) -> Constraint:
        self.skip_ws()
        start = self.pos
        if self.peek() != "(":
            found = repr(self.peek()) if self.peek() else "the end of the text"
            raise self.fail(f"expected '(' but found {found}")
        if depth >= _MAX_DEPTH:
            raise self.fail(f"filters nested deeper than {_MAX_DEPTH}")
        self.pos += 1
        if self.peek() == ")":
            self.pos += 1
            return Empty()
        self.skip_ws()
        first = self.peek()
        if first in ("&", "|"):
            self.pos += 1
            operands = self.filter_list(start, depth)
            return And(operands) if first == "&" else Or(operands)
        if first == "!":
            self.pos += 1
            self.skip_ws()
            if self.peek() != "(":
                raise self.fail("expected '(' after '!'")
            operand = self.filter(depth + 1)
            self.skip_ws()
            self.close(start, "'!' takes exactly one filter")
            return Not(operand)
        if not first:
            raise self.fail(f"missing ')' for the '(' at position {start}")
        if first in ("(", ")"):
            raise self.fail("expected a property name, '&', '|' or '!'")
        return self.comparison(start)

    def filter_list(self, start: int, depth: int) -> tuple[Constraint, ...]:
        operands: list[Constraint] = []
        while True:
            self.skip_ws()
            if self.peek() != "(":
                self.close(start, "expected '(' or ')'")
                return tuple(operands)
            operands.append(self.filter(depth + 1))

    def close(self, start: int, reason: str) -> None:
        if not self.peek():
            raise self.fail(f"missing ')' for the '(' at position {start}")
        if self.peek() != ")":
            raise self.fail(reason)
        self.pos += 1

    def comparison(self, start: int) -> Constraint:
        name_start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=<>~()":
            self.pos += 1
        found = self.peek()
        if found == "~":
            raise self.fail("unsupported operator '~'")
        if found in ("", "(", ")"):
            raise self.fail("expected an operator (=, <, <=, >, >=) after the property name")
        name, aspect, type_hint = self.reference(name_start, self.pos)
        op = self.operator()
        value_start = self.pos
        end = self.text.find(")", value_start)
        if end < 0:
            raise self.fail(f"missing ')' for the '(' at position {start}", len(self.text))
        value = self.text[value_start:end]
        self.pos = end + 1
        if op is Op.EQ and value.startswith("*"):
            if value.rstrip(_WS) == "*":
                return Present(name, aspect=aspect, type_hint=type_hint)
            # The daemon reads "=*" as a presence test and then fails on what follows.
            raise self.fail(
                "an '=' value cannot start with '*' ('=*' alone is a presence test)", value_start
            )
        return Compare(name, op, value, aspect=aspect, type_hint=type_hint)

    def operator(self) -> Op:
        # Two-character operators first, as the daemon reads them.
        for op in (Op.LE, Op.GE, Op.LT, Op.GT, Op.EQ):
            if self.text.startswith(op.value, self.pos):
                self.pos += len(op.value)
                return op
        raise AssertionError("unreachable: the name ends at an operator")  # pragma: no cover

    def reference(self, begin: int, end: int) -> tuple[str, str | None, TypeHint | None]:
        """Split ``name[aspect]$t`` (aspect and type optional) as the daemon does."""
        text = self.text
        pos = begin
        while pos < end and text[pos] not in "[]$":
            pos += 1
        name = text[begin:pos]
        if not name:
            raise self.fail("empty property name", begin)
        aspect: str | None = None
        if pos < end and text[pos] == "[":
            aspect_start = pos + 1
            pos = aspect_start
            while pos < end and text[pos] not in "[]$":
                pos += 1
            if pos >= end or text[pos] != "]":
                raise self.fail("expected ']' to close the aspect", pos)
            aspect = text[aspect_start:pos]
            pos += 1
        type_hint: TypeHint | None = None
        if pos < end and text[pos] == "$":
            code = text[pos + 1 : min(pos + 2, end)]
            try:
                type_hint = TypeHint(code)
            except ValueError:
                raise self.fail("expected a type code $v, $d or $t", pos) from None
            pos += 2
        if pos < end:
            raise self.fail("unexpected text in the property reference", pos)
        return name, aspect, type_hint


# --- rendering -------------------------------------------------------------------------------


def render(constraint: Constraint) -> str:
    """The compact text of a constraint; ``parse(render(c)) == c``."""
    if isinstance(constraint, Empty):
        return "()"
    if isinstance(constraint, And):
        return "(&" + "".join(render(c) for c in constraint.operands) + ")"
    if isinstance(constraint, Or):
        return "(|" + "".join(render(c) for c in constraint.operands) + ")"
    if isinstance(constraint, Not):
        return "(!" + render(constraint.operand) + ")"
    if isinstance(constraint, Present):
        return f"({_render_ref(constraint.name, constraint.aspect, constraint.type_hint)}=*)"
    ref = _render_ref(constraint.name, constraint.aspect, constraint.type_hint)
    return f"({ref}{constraint.op.value}{constraint.value})"


def _render_ref(name: str, aspect: str | None, type_hint: TypeHint | None) -> str:
    aspect_text = "" if aspect is None else f"[{aspect}]"
    hint_text = "" if type_hint is None else f"${type_hint.value}"
    return f"{name}{aspect_text}{hint_text}"


# --- properties ------------------------------------------------------------------------------


def flatten(properties: Mapping[str, object]) -> dict[str, object]:
    """Nested property objects as flat dotted keys, as the daemon stores and matches them.

    ``{"golem": {"inf": {"mem.gib": 4}}}`` becomes ``{"golem.inf.mem.gib": 4}``: keys are
    joined with ``.`` as they are (a key may already hold dots). Lists are values and are not
    descended into. An empty object stays as a ``{}`` value; a ``"@tag"`` key gives the value
    of its parent key itself. Keys are visited in sorted order (the daemon's JSON objects are
    sorted maps), so when two spellings flatten to the same key the later one in that order
    wins.
    """
    flat: dict[str, object] = {}
    _flatten_into(flat, "", properties)
    return flat


def _flatten_into(flat: dict[str, object], prefix: str, value: object) -> None:
    if not isinstance(value, Mapping):
        flat[prefix] = value
        return
    if not value:
        flat[prefix] = {}
        return
    for key in sorted(value):
        item = value[key]
        if key == "@tag":
            flat[prefix] = item
            continue
        _flatten_into(flat, f"{prefix}.{key}" if prefix else key, item)


# A property value as the daemon's matcher holds it: the JSON text of each flattened value is
# read back as a literal. A string keeps its JSON escapes (the matcher does not unescape).
_Value: TypeAlias = "str | bool | float | tuple[_Value, ...]"


def _property_set(properties: Mapping[str, object]) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    for name, raw in flatten(properties).items():
        # The matcher splits "name=json" at the first "=": a name holding "=" never survives.
        if "=" in name:
            continue
        value = _matcher_value(raw)
        # Values it cannot read back (null, objects, some strings) are dropped: to the matcher
        # the property is not there at all.
        if value is not None:
            values[name] = value
    return values


def _matcher_value(raw: object) -> _Value | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        try:
            number = float(raw)
        except OverflowError:
            return None  # beyond f64: the daemon refuses such JSON
        return number if math.isfinite(number) else None  # JSON has no NaN or infinity
    if isinstance(raw, str):
        return _matcher_string(raw)
    if isinstance(raw, list | tuple):
        items: list[_Value] = []
        for item in raw:
            value = _matcher_value(item)
            if value is None:
                return None  # one unreadable item makes the whole list unreadable
            items.append(value)
        return tuple(items)
    return None


def _matcher_string(raw: str) -> str | None:
    # JSON-encoding escapes \ " and control characters; the matcher's string literal then only
    # accepts the escapes \" \\ \n \t, so strings needing any other (\r, \b, \f, \u00XX) are
    # unreadable. Lone surrogates cannot be JSON-encoded at all.
    for char in raw:
        if (char < " " and char not in "\n\t") or "\ud800" <= char <= "\udfff":
            return None
    return raw.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


# --- evaluation ------------------------------------------------------------------------------


def evaluate(constraint: Constraint, properties: Mapping[str, object]) -> Tri:
    """Resolve a constraint against the other side's properties (flattened first).

    ``&``, ``|`` and ``!`` follow Kleene's three-valued logic: ``false & undefined`` is false,
    ``true | undefined`` is true, ``!undefined`` is undefined. A comparison is undefined if the
    property is missing; a presence test is then false.
    """
    return _resolve(constraint, _property_set(properties))


def matches(
    demand_properties: Mapping[str, object],
    demand_constraints: Constraint | str,
    offer_properties: Mapping[str, object],
    offer_constraints: Constraint | str,
) -> bool:
    """The daemon's match: the demand's constraints are true on the offer's properties and the
    offer's constraints are true on the demand's; undefined is no match.

    Constraint text is read as the daemon reads it: text after the first filter is ignored, and
    text that cannot be read is no match (the daemon logs it and moves on).
    """
    try:
        demand_filter = _as_constraint(demand_constraints)
        offer_filter = _as_constraint(offer_constraints)
    except ConstraintSyntaxError:
        return False
    return (
        evaluate(demand_filter, offer_properties) is Tri.TRUE
        and evaluate(offer_filter, demand_properties) is Tri.TRUE
    )


def _as_constraint(constraint: Constraint | str) -> Constraint:
    return _parse_as_daemon(constraint) if isinstance(constraint, str) else constraint


def _resolve(constraint: Constraint, props: Mapping[str, _Value]) -> Tri:
    if isinstance(constraint, Empty):
        return Tri.TRUE
    if isinstance(constraint, And):
        result = Tri.TRUE
        for operand in constraint.operands:
            value = _resolve(operand, props)
            if value is Tri.FALSE:
                return Tri.FALSE
            if value is Tri.UNDEFINED:
                result = Tri.UNDEFINED
        return result
    if isinstance(constraint, Or):
        result = Tri.FALSE
        for operand in constraint.operands:
            value = _resolve(operand, props)
            if value is Tri.TRUE:
                return Tri.TRUE
            if value is Tri.UNDEFINED:
                result = Tri.UNDEFINED
        return result
    if isinstance(constraint, Not):
        value = _resolve(constraint.operand, props)
        if value is Tri.UNDEFINED:
            return value
        return Tri.of(value is Tri.FALSE)
    if isinstance(constraint, Present):
        # Aspects are never set on properties that came as JSON, so an aspect is never there.
        return Tri.of(constraint.aspect is None and constraint.name in props)
    return _resolve_compare(constraint, props)


def _resolve_compare(constraint: Compare, props: Mapping[str, _Value]) -> Tri:
    value = props.get(constraint.name)
    if value is None or constraint.aspect is not None:
        return Tri.UNDEFINED
    op, text = constraint.op, constraint.value
    if constraint.type_hint is None:
        return Tri.of(_compare_plain(value, op, text))
    # A type hint converts a string property; a property that is not a string, or a string
    # that does not convert, makes the comparison undefined. A value text that does not parse
    # as the type makes it false.
    parse_typed = _TYPED_PARSERS[constraint.type_hint]
    converted = parse_typed(value) if isinstance(value, str) else None
    if converted is None:
        return Tri.UNDEFINED
    other = parse_typed(text)
    if other is None:
        return Tri.FALSE
    return Tri.of(_apply(op, converted, other))


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...
    def __gt__(self, other: Any, /) -> bool: ...
    def __ge__(self, other: Any, /) -> bool: ...


_O = TypeVar("_O", bound=_Ordered)


def _apply(op: Op, left: _O, right: _O) -> bool:
    if op is Op.EQ:
        return left == right
    if op is Op.LT:
        return left < right
    if op is Op.LE:
        return left <= right
    if op is Op.GT:
        return left > right
    return left >= right


def _compare_plain(value: _Value, op: Op, text: str) -> bool:
    if isinstance(value, bool):
        # Booleans only compare for equality, with exactly "true" or "false".
        return op is Op.EQ and text in ("true", "false") and (text == "true") is value
    if isinstance(value, float):
        number = _parse_f64(text)
        return number is not None and _apply(op, value, number)
    if isinstance(value, str):
        if op is Op.EQ:
            return _string_equals(text, value)
        # Ordering of strings is plain code-point order (byte order of UTF-8).
        return _apply(op, value, text)
    # Lists only compare for equality: membership, or equality with a "[a,b]" list.
    return op is Op.EQ and _list_equals(value, text)


def _equals(value: _Value, text: str) -> bool:
    return _compare_plain(value, Op.EQ, text)


def _string_equals(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    # The daemon turns each "*" into ".*" and matches the rest of the value as a regular
    # expression, unescaped: "." matches any character and an invalid expression matches
    # nothing. Python's `re` stands in for Rust's `regex`; they agree on ordinary patterns
    # (they differ on exotic syntax such as look-around, which Rust refuses).
    regex = _wildcard_regex(pattern)
    return regex is not None and regex.search(value) is not None


@functools.lru_cache(maxsize=512)
def _wildcard_regex(pattern: str) -> re.Pattern[str] | None:
    try:
        # "$" matches before a trailing newline in Python, but never meets one here: matcher
        # strings hold newlines escaped as "\n".
        return re.compile("^" + pattern.replace("*", ".*") + "$")
    except (re.error, OverflowError, RecursionError):
        return None


def _list_equals(items: tuple[_Value, ...], text: str) -> bool:
    wanted = _split_list(text)
    if wanted is None:
        return any(_equals(item, text) for item in items)
    # The daemon's list equality is loose: same length, and each wanted item equals some item
    # (so [a,a] equals [a,b] read one way, not the other).
    if len(wanted) != len(items):
        return False
    return all(any(_equals(item, want) for item in items) for want in wanted)


def _split_list(text: str) -> list[str] | None:
    """The items of a ``[a,b]`` value as the daemon reads them, or ``None`` if not a list.

    An item loses leading whitespace but keeps trailing whitespace, and cannot be empty or
    hold brackets.
    """
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        return None
    inner = text[1:-1]
    if not inner:
        return []
    items = []
    for raw in inner.split(","):
        item = raw.lstrip(_WS)
        if not item or "[" in item or "]" in item:
            return None
        items.append(item)
    return items


# Rust's f64 grammar (what `str::parse::<f64>` accepts): no whitespace, no underscores.
_F64 = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)",
    re.IGNORECASE | re.ASCII,
)


def _parse_f64(text: str) -> float | None:
    return float(text) if _F64.fullmatch(text) else None


_I64 = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _parse_decimal(text: str) -> Decimal | None:
    """Parse a decimal as the daemon's BigDecimal does (exactly; its quirks included)."""
    base, exp_text = text, None
    cut = next((i for i, char in enumerate(text) if char in "eE"), None)
    if cut is not None:
        base, exp_text = text[:cut], text[cut + 1 :]
    exponent = 0
    if exp_text is not None:
        if exp_text.startswith("+"):
            exp_text = exp_text[1:]
        if not _I64.fullmatch(exp_text):
            return None
        exponent = int(exp_text)
        if not -(2**63) <= exponent < 2**63:
            return None
    if not base:
        return None
    lead, dot, trail = base.partition(".")
    digits = lead + trail
    integer = _parse_bigint(digits)
    if integer is None:
        return None
    # Every character after the point counts toward the scale, underscores too.
    scale = len(trail) if dot else 0
    sign = 1 if integer < 0 else 0
    return Decimal((sign, tuple(int(d) for d in str(abs(integer))), exponent - scale))


def _parse_bigint(text: str) -> int | None:
    negative = False
    if text.startswith("-") and not text.startswith("-+"):
        negative, text = True, text[1:]
    if text.startswith("+") and not text.startswith("++"):
        text = text[1:]
    # Underscores may separate digits, but not lead.
    if not text or text[0] == "_" or not all(c in "0123456789_" for c in text):
        return None
    value = int(text.replace("_", ""))
    return -value if negative else value


_VERSION = re.compile(
    r"[ \t\r\n]*(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z]+(?:[-.][0-9A-Za-z]+)*))?"
    r"(?:\+[0-9A-Za-z]+(?:[-.][0-9A-Za-z]+)*)?[ \t\r\n]*"
)


def _parse_version(text: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]] | None:
    """A sort key of a semantic version as the daemon's semver 0.11 reads it, or ``None``.

    Build metadata is ignored by its comparisons; a version without pre-release identifiers
    sorts after any with them; numeric identifiers sort before alphanumeric ones.
    """
    match = _VERSION.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = (int(match[i]) for i in (1, 2, 3))
    if max(major, minor, patch) >= 2**64:
        return None
    pre: list[tuple[int, int, str]] = []
    if match[4] is not None:
        for identifier in match[4].split("."):
            # Leading zeros are allowed (as text); "a-1" is one identifier.
            numeric = identifier.isdigit() and (identifier == "0" or identifier[0] != "0")
            if numeric and int(identifier) < 2**64:
                pre.append((0, int(identifier), ""))
            else:
                pre.append((1, 0, identifier))
    return (major, minor, patch, 0 if pre else 1, tuple(pre))


_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([-+\u2212])([0-9]{2}):([0-5][0-9]))"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _parse_datetime(text: str) -> tuple[int, int] | None:
    """An RFC 3339 date-time as the daemon's chrono reads it: ``(UTC seconds, nanoseconds)``.

    Years 0000-9999; "T", "t" or a space between date and time; a leap second ``:60`` sorts
    after ``:59``; fractions past nanoseconds are dropped; offsets up to ±23:59.
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    leap_year = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= month <= 12:
        return None
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and leap_year):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    nanos = int((match[7] or "0")[:9].ljust(9, "0"))
    if second == 60:
        second, nanos = 59, nanos + 1_000_000_000
    offset = 0
    if match[8] is not None:
        offset_hours, offset_minutes = int(match[9]), int(match[10])
        if offset_hours > 23:
            return None
        offset = (offset_hours * 60 + offset_minutes) * 60
        if match[8] != "+":
            offset = -offset
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return seconds - offset, nanos


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar, year 0 included (which
    # `datetime` cannot represent).
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


_TYPED_PARSERS: dict[TypeHint, Callable[[str], _Ordered | None]] = {
    TypeHint.VERSION: _parse_version,
    TypeHint.DECIMAL: _parse_decimal,
    TypeHint.DATETIME: _parse_datetime,
}
