"""Constraints: building, parsing, rendering and evaluation, checked against a reference model
and against LocalNet's independent implementation of the daemon's matcher."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_trio.localnet.emulator import _constraints as emulator
from golem_trio.market import (
    And,
    Compare,
    Constraint,
    ConstraintError,
    Constraints,
    ConstraintSyntaxError,
    Empty,
    Not,
    Op,
    Or,
    Present,
    TypeHint,
    as_constraint,
    evaluate,
    parse,
    prop,
    render,
)

YAPAPI_CONSTRAINTS = """(&(golem.node.debug.subnet=public)
\t(golem.com.payment.platform.erc20-holesky-tglm.address=*)
\t(golem.com.payment.protocol.version>1)
\t(&(golem.inf.mem.gib>=0.5)
\t(golem.inf.storage.gib>=2.0)
\t(golem.inf.cpu.threads>=1)
\t(golem.runtime.name=vm)))"""

OFFER: dict[str, Any] = {
    "golem.node.debug.subnet": "public",
    "golem.node.id.name": "good-node",
    "golem.inf.mem.gib": 8.0,
    "golem.inf.storage.gib": 40.5,
    "golem.inf.cpu.threads": 4,
    "golem.runtime.name": "vm",
    "golem.runtime.version": "0.3.0",
    "golem.runtime.capabilities": ["vpn", "inet"],
    "golem.com.payment.platform.erc20-holesky-tglm.address": "0xbeef",
    "golem.com.payment.protocol.version": 3,
    "golem.node.net.is-public": False,
}


def ev(text: str, properties: Mapping[str, object] = OFFER) -> bool | None:
    return evaluate(parse(text), properties)


# --- building and parsing --------------------------------------------------------------------


def test_builder_composes_a_tree() -> None:
    built = Constraints.all(
        prop("golem.inf.mem.gib") >= 4,
        prop("golem.runtime.capabilities") == "vpn",
        ~prop("golem.node.id.name").matches("bad-node*"),
        Constraints.any(prop("x").present(), "(y<2.5)"),
        prop("golem.runtime.version").as_version() >= "0.2.0",
    )
    assert built == And(
        (
            Compare("golem.inf.mem.gib", Op.GE, "4"),
            Compare("golem.runtime.capabilities", Op.EQ, "vpn"),
            Not(Compare("golem.node.id.name", Op.EQ, "bad-node*")),
            Or((Present("x"), Compare("y", Op.LT, "2.5"))),
            Compare("golem.runtime.version", Op.GE, "0.2.0", type_hint=TypeHint.VERSION),
        )
    )
    assert render(built) == (
        "(&(golem.inf.mem.gib>=4)(golem.runtime.capabilities=vpn)"
        "(!(golem.node.id.name=bad-node*))(|(x=*)(y<2.5))(golem.runtime.version$v>=0.2.0))"
    )
    assert evaluate(built, {**OFFER, "y": 1}) is True


def test_operators_flatten_chains() -> None:
    a, b, c = prop("a") == 1, prop("b") < 2, prop("c") > 3
    assert a & b & c == And((a, b, c))
    assert a | b | c == Or((a, b, c))
    assert ~a == Not(a)
    assert (prop("a") != 1) == Not(a)


def test_builder_writes_values_as_the_daemon_reads_them() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (prop("b") == True) == Compare("b", Op.EQ, "true")  # noqa: E712
    assert (prop("n") <= 0.5) == Compare("n", Op.LE, "0.5")
    assert (prop("d").as_decimal() > Decimal("1.10")) == Compare(
        "d", Op.GT, "1.10", type_hint=TypeHint.DECIMAL
    )
    assert (prop("t") < when) == Compare(
        "t", Op.LT, "2024-01-02T03:04:05+00:00", type_hint=TypeHint.DATETIME
    )
    assert (prop("l") == ["a", "b"]) == Compare("l", Op.EQ, "[a,b]")
    for bad in (float("nan"), dt.datetime(2024, 1, 1), ["a,b"], object(), "x)"):
        with pytest.raises(ConstraintError):
            _ = prop("x") == bad


@pytest.mark.parametrize(
    "make",
    [
        lambda: Present(""),
        lambda: Present("a b"),
        lambda: Present("!a"),
        lambda: Present("a[b]"),
        lambda: Compare("a", Op.EQ, "*x"),
        lambda: Compare("a", Op.LT, "=1"),
        lambda: Compare("a=", Op.EQ, "1"),
    ],
)
def test_invalid_trees_are_refused(make: Callable[[], Constraint]) -> None:
    with pytest.raises(ConstraintError):
        make()


def test_parse_yapapi_demand_constraints() -> None:
    assert parse(YAPAPI_CONSTRAINTS) == Constraints.all(
        prop("golem.node.debug.subnet") == "public",
        prop("golem.com.payment.platform.erc20-holesky-tglm.address").present(),
        prop("golem.com.payment.protocol.version") > 1,
        Constraints.all(
            Compare("golem.inf.mem.gib", Op.GE, "0.5"),
            Compare("golem.inf.storage.gib", Op.GE, "2.0"),
            prop("golem.inf.cpu.threads") >= 1,
            prop("golem.runtime.name") == "vm",
        ),
    )
    assert ev(YAPAPI_CONSTRAINTS) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("()", Empty()),
        ("(&)", And(())),
        ("(|)", Or(())),
        ("(!())", Not(Empty())),
        (" ( & (a=b) ( b<=1) ) ", And((Compare("a", Op.EQ, "b"), Compare("b", Op.LE, "1")))),
        ("(a= *)", Compare("a", Op.EQ, " *")),
        ("(a=* )", Present("a")),
        ("(a$t=*)", Present("a", type_hint=TypeHint.DATETIME)),
        ("(a==1)", Compare("a", Op.EQ, "=1")),
        ("(a<==1)", Compare("a", Op.LE, "=1")),
        ("(a= x y )", Compare("a", Op.EQ, " x y ")),
        ("(a$d>=1.5)", Compare("a", Op.GE, "1.5", type_hint=TypeHint.DECIMAL)),
    ],
)
def test_parse(text: str, expected: Constraint) -> None:
    assert parse(text) == expected
    assert parse(render(expected)) == expected


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("a=b", 0),
        ("(a=b", 4),
        ("(a=b)x", 5),
        ("(&(a=b)x)", 7),
        ("(!(a=b)(c=d))", 7),
        ("(!a)", 2),
        ("(a~=b)", 2),
        ("(a)", 2),
        ("(a=*x)", 3),
        ("(a b=1)", 2),
        ("(a[x]=1)", 2),
        ("(a$q=1)", 2),
        ("($v=1)", 1),
        ("( )", 2),
        (" ()", 0),
        ("(&" * 101 + ")" * 101, 200),
    ],
)
def test_syntax_errors_carry_the_position(text: str, position: int) -> None:
    with pytest.raises(ConstraintSyntaxError) as info:
        parse(text)
    assert info.value.position == position
    assert info.value.text == text
    assert f"position {position}" in str(info.value)


def test_as_constraint() -> None:
    assert as_constraint("(a=1)") == Compare("a", Op.EQ, "1")
    assert as_constraint(Empty()) == Empty()
    with pytest.raises(TypeError):
        as_constraint(42)  # type: ignore[arg-type]


# --- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Kleene logic; presence is never undefined.
        ("(missing=1)", None),
        ("(missing=*)", False),
        ("(!(missing=1))", None),
        ("(&(missing=1)(golem.inf.cpu.threads=3))", False),
        ("(&(missing=1)(golem.inf.cpu.threads=4))", None),
        ("(|(missing=1)(golem.inf.cpu.threads=4))", True),
        ("(|(missing=1)(golem.inf.cpu.threads=3))", None),
        # Numbers, numerically; a value that is not a number is false.
        ("(golem.inf.mem.gib>=8)", True),
        ("(golem.inf.mem.gib=8.0e0)", True),
        ("(golem.inf.mem.gib<8)", False),
        ("(golem.inf.mem.gib=eight)", False),
        ("(golem.inf.mem.gib= 8)", False),
        ("(golem.com.payment.protocol.version>1)", True),
        # Booleans: only "=" with exactly true/false.
        ("(golem.node.net.is-public=false)", True),
        ("(golem.node.net.is-public=False)", False),
        ("(golem.node.net.is-public<true)", False),
        # Strings: equality with wildcards, code-point order.
        ("(golem.runtime.name=vm)", True),
        ("(golem.runtime.name=v*)", True),
        ("(golem.node.id.name=g*-node)", True),
        ("(golem.node.id.name=go*no*e)", True),
        ("(golem.node.id.name=go.d*)", False),
        ("(golem.runtime.name>um)", True),
        # Lists: membership, or list equality with [a,b].
        ("(golem.runtime.capabilities=vpn)", True),
        ("(golem.runtime.capabilities=gpu)", False),
        ("(golem.runtime.capabilities=[inet, vpn])", True),
        ("(golem.runtime.capabilities=[vpn])", False),
        ("(golem.runtime.capabilities>vpn)", False),
        # Type hints.
        ("(golem.runtime.version$v>=0.2.0)", True),
        ("(golem.runtime.version$v<0.3.0-rc.1)", False),
        ("(golem.runtime.version$v=not-a-version)", False),
        ("(golem.inf.mem.gib$v>=0.2.0)", None),
        ("(golem.node.id.name$v>=0.2.0)", None),
    ],
)
def test_evaluate(text: str, expected: bool | None) -> None:
    assert ev(text) is expected


def test_evaluate_typed_values() -> None:
    props = {
        "v": "1.0.0-alpha.2+build",
        "d": "0.10",
        "t": "2024-01-02T03:04:05.5+01:00",
        "leap": "2016-12-31T23:59:60Z",
    }
    assert ev("(v$v>1.0.0-alpha.1)", props) is True
    assert ev("(v$v<1.0.0)", props) is True
    assert ev("(v$v=1.0.0-alpha.2)", props) is True
    assert ev("(d$d=0.1)", props) is True
    assert ev("(d$d<1e-1)", props) is False
    assert ev("(t$t=2024-01-02T02:04:05.500Z)", props) is True
    assert ev("(t$t>2024-01-02T02:04:05Z)", props) is True
    assert ev("(t$t<2024-02-30T00:00:00Z)", props) is False
    assert ev("(leap$t>2016-12-31T23:59:59.9Z)", props) is True


def test_evaluate_flattens_and_drops_unreadable_values() -> None:
    props: dict[str, object] = {
        "golem": {"inf": {"mem.gib": 4}},
        "n": None,
        "o": {},
        "l": [1, None],
        "big": 10**400,
    }
    assert ev("(golem.inf.mem.gib=4)", props) is True
    for name in ("n", "o", "l", "big"):
        assert ev(f"({name}=*)", props) is False


# --- properties ------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b.c", "golem.inf.mem.gib", "x?"]) | st.from_regex(
    r"[a-z][a-z0-9._?*-]{0,8}", fullmatch=True
)
HINTS = st.none() | st.sampled_from(TypeHint)


def _valid_compare(name: str, op: Op, value: str, hint: TypeHint | None) -> bool:
    try:
        Compare(name, op, value, type_hint=hint)
    except ConstraintError:
        return False
    return True


ANY_COMPARES = st.tuples(
    NAMES, st.sampled_from(Op), st.text(st.characters(blacklist_characters=")")), HINTS
).filter(lambda args: _valid_compare(*args))
ANY_LEAVES = (
    st.just(Empty())
    | st.builds(lambda n, h: Present(n, type_hint=h), NAMES, HINTS)
    | ANY_COMPARES.map(lambda args: Compare(args[0], args[1], args[2], type_hint=args[3]))
)


def trees(leaves: st.SearchStrategy[Constraint]) -> st.SearchStrategy[Constraint]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4).map(lambda ops: And(tuple(ops)))
            | st.lists(children, max_size=4).map(lambda ops: Or(tuple(ops)))
            | children.map(Not)
        ),
        max_leaves=12,
    )


@settings(max_examples=300)
@given(trees(ANY_LEAVES))
def test_render_parse_round_trip(tree: Constraint) -> None:
    assert parse(render(tree)) == tree


@settings(max_examples=400)
@given(st.text() | st.text(alphabet="()&|!=<>*~$[] \tavd.0,-"))
def test_random_text_raises_only_syntax_errors(text: str) -> None:
    try:
        tree = parse(text)
    except ConstraintSyntaxError as exc:
        position = exc.position
        assert 0 <= position <= len(text)
        return
    assert parse(render(tree)) == tree


# A reference model over a small subset: integer and word properties, lists of words; the logic
# is min/max over F < U < T.
F, U, T = 0, 1, 2
REF_OPS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


def reference(tree: Constraint, props: Mapping[str, object]) -> int:
    if isinstance(tree, Empty):
        return T
    if isinstance(tree, And):
        return min((reference(c, props) for c in tree.operands), default=T)
    if isinstance(tree, Or):
        return max((reference(c, props) for c in tree.operands), default=F)
    if isinstance(tree, Not):
        return T - reference(tree.operand, props)
    if isinstance(tree, Present):
        return T if tree.name in props else F
    if tree.name not in props:
        return U
    value = props[tree.name]
    if isinstance(value, int):
        return T if REF_OPS[tree.op](value, int(tree.value)) else F
    if isinstance(value, list):
        return T if tree.op is Op.EQ and tree.value in value else F
    return T if REF_OPS[tree.op](value, tree.value) else F


REF_NAMES = st.sampled_from(["p", "q", "r", "s"])
REF_WORDS = st.sampled_from(["", "a", "b", "ab", "ba"])
REF_LEAVES = (
    st.just(Empty())
    | st.builds(Present, REF_NAMES)
    | st.builds(Compare, REF_NAMES, st.sampled_from(Op), st.integers(-3, 3).map(str) | REF_WORDS)
)
REF_PROPS = st.dictionaries(
    REF_NAMES, st.integers(-3, 3) | REF_WORDS.filter(bool) | st.lists(REF_WORDS.filter(bool))
)


@settings(max_examples=400)
@given(trees(REF_LEAVES), REF_PROPS)
def test_evaluate_agrees_with_a_reference_model(tree: Constraint, props: dict[str, object]) -> None:
    # Words compared with numbers and numbers with words fall outside the model.
    for leaf in _leaves(tree):
        if isinstance(leaf, Compare) and leaf.name in props:
            value = props[leaf.name]
            is_number = leaf.value.lstrip("-").isdigit()
            if isinstance(value, int) != is_number or (isinstance(value, list) and is_number):
                return
            if isinstance(value, list) and not leaf.value:
                return
    expected = {F: False, U: None, T: True}[reference(tree, props)]
    assert evaluate(tree, props) is expected


def _leaves(tree: Constraint) -> list[Constraint]:
    if isinstance(tree, And | Or):
        return [leaf for child in tree.operands for leaf in _leaves(child)]
    if isinstance(tree, Not):
        return _leaves(tree.operand)
    return [tree]


# --- against LocalNet's implementation of the daemon's matcher -------------------------------

# The common subset: strings without characters the daemon escapes or reads as regular
# expression syntax in wildcard patterns, plain decimals, versions with alphanumeric
# identifiers, date-times with years 1000-9999.
WORD = st.text(alphabet="abvx01_-", max_size=4)
WILDCARD = st.lists(WORD, min_size=2, max_size=3).map("*".join).filter(lambda t: t[0] != "*")
NUMBER_TEXT = st.from_regex(
    r"[+-]?([0-9]{1,3}(\.[0-9]{0,2})?|\.[0-9])([eE][+-]?[0-9])?", fullmatch=True
)
VERSION_TEXT = st.from_regex(
    r"(0|[1-3])\.(0|[1-3])\.(0|1)(-(alpha|[0-9]|01)(\.(alpha|[0-9]))?)?(\+b1)?", fullmatch=True
)
DATETIME_TEXT = st.from_regex(
    r"20[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,10})?"
    r"([Zz]|[+-][0-2][0-9]:[0-6][0-9])",
    fullmatch=True,
)
SCALAR_TEXT = (
    WORD | NUMBER_TEXT | VERSION_TEXT | DATETIME_TEXT | st.sampled_from(["true", "false", "nan"])
)
VALUE_TEXT = (
    SCALAR_TEXT
    | WILDCARD
    | st.lists(WORD.filter(bool) | NUMBER_TEXT, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
)
DIFF_NAMES = st.sampled_from(["p", "q.r", "s?"])
DIFF_LEAVES = (
    st.just(Empty())
    | st.builds(lambda n, h: Present(n, type_hint=h), DIFF_NAMES, HINTS)
    | st.tuples(DIFF_NAMES, st.sampled_from(Op), VALUE_TEXT, HINTS)
    .filter(lambda args: _valid_compare(*args))
    .map(lambda args: Compare(args[0], args[1], args[2], type_hint=args[3]))
)
SCALARS = (
    st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | SCALAR_TEXT
    | st.none()
)
DIFF_PROPS = st.dictionaries(DIFF_NAMES, SCALARS | st.lists(SCALARS, max_size=3))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(trees(DIFF_LEAVES), DIFF_PROPS)
def test_evaluate_agrees_with_localnet(tree: Constraint, props: dict[str, object]) -> None:
    theirs = emulator.evaluate(emulator.parse(render(tree)), props)
    expected = {emulator.Tri.TRUE: True, emulator.Tri.FALSE: False}.get(theirs)
    assert evaluate(tree, props) is expected


KINDS: dict[TypeHint | None, st.SearchStrategy[str]] = {
    None: VALUE_TEXT,
    TypeHint.VERSION: VERSION_TEXT,
    TypeHint.DECIMAL: NUMBER_TEXT,
    TypeHint.DATETIME: DATETIME_TEXT,
}


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[Compare, object]:
    """One comparison and a property value of the kind it compares, so that most resolve."""
    hint = draw(st.sampled_from(list(KINDS)))
    op = draw(st.sampled_from(Op))
    value = draw(KINDS[hint].filter(lambda v: _valid_compare("p", op, v, hint)))
    prop_value = draw(SCALARS | st.lists(SCALARS, max_size=3) if hint is None else KINDS[hint])
    return Compare("p", op, value, type_hint=hint), prop_value


@settings(max_examples=600)
@given(comparisons())
def test_comparisons_agree_with_localnet(case: tuple[Compare, object]) -> None:
    compare, value = case
    theirs = emulator.evaluate(emulator.parse(render(compare)), {"p": value})
    expected = {emulator.Tri.TRUE: True, emulator.Tri.FALSE: False}.get(theirs)
    assert evaluate(compare, {"p": value}) is expected


@pytest.mark.parametrize(
    ("text", "props", "ours", "theirs"),
    [
        # Wildcard patterns: only "*" is special to the SDK; the daemon reads the rest as a
        # regular expression.
        ("(n=a.c*)", {"n": "abcd"}, False, True),
        # Strings holding quotes or backslashes: the daemon compares their JSON-escaped text.
        ('(n=a"b)', {"n": 'a"b'}, True, False),
    ],
)
def test_intentional_differences_from_the_daemon(
    text: str, props: dict[str, object], ours: bool, theirs: bool
) -> None:
    assert ev(text, props) is ours
    assert emulator.evaluate(emulator.parse(text), props) is emulator.Tri.of(theirs)
