"""The daemon's constraint language: parsing, rendering, flattening, evaluation and matching."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_trio.localnet.emulator._constraints import (
    And,
    Compare,
    Constraint,
    ConstraintSyntaxError,
    Empty,
    Not,
    Op,
    Or,
    Present,
    Tri,
    TypeHint,
    evaluate,
    flatten,
    matches,
    parse,
    render,
)

T, F, U = Tri.TRUE, Tri.FALSE, Tri.UNDEFINED

# yapapi's default demand constraints for a VM payload, as it sends them.
YAPAPI_CONSTRAINTS = """(&(golem.node.debug.subnet=public)
\t(golem.com.payment.platform.erc20-holesky-tglm.address=*)
\t(golem.com.payment.protocol.version>1)
\t(&(golem.inf.mem.gib>=0.5)
\t(golem.inf.storage.gib>=2.0)
\t(golem.inf.cpu.threads>=1)
\t(golem.runtime.name=vm)))"""

PROVIDER_CONSTRAINTS = (
    "(&(golem.srv.comp.expiration>1705586871777)(golem.node.debug.subnet=public))"
)

DEMAND_PROPERTIES: dict[str, object] = {
    "golem.srv.comp.expiration": 1705587000000,
    "golem.srv.caps.multi-activity": True,
    "golem.node.debug.subnet": "public",
    "golem.srv.comp.task_package": "hash:sha3:abc:http://registry/x.gvmi",
    "golem.srv.comp.vm.package_format": "gvmkit-squash",
    "golem.com.payment.platform.erc20-holesky-tglm.address": "0xdead",
    "golem.com.payment.protocol.version": "3",
    "golem.com.payment.debit-notes.accept-timeout?": 240,
}

# Nested, as a provider's offer template may be written; the daemon flattens it.
OFFER_PROPERTIES: dict[str, object] = {
    "golem": {
        "node": {"debug.subnet": "public", "id.name": "good-node", "net.is-public": False},
        "inf": {
            "mem.gib": 8.0,
            "storage.gib": 40.5,
            "cpu": {"threads": 4, "cores": 2, "architecture": "x86_64"},
        },
        "runtime": {"name": "vm", "version": "0.3.0", "capabilities": ["vpn", "inet"]},
        "com": {
            "scheme": "payu",
            "pricing.model": "linear",
            "pricing.model.linear.coeffs": [0.1, 0.2, 0.0],
            "usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            "payment": {
                "platform.erc20-holesky-tglm.address": "0xbeef",
                "protocol.version": "3",
            },
        },
        "activity.caps.transfer.protocol": ["gftp", "https", "http"],
    },
}


def ev(text: str, properties: Mapping[str, object]) -> Tri:
    return evaluate(parse(text), properties)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_yapapi_demand_constraints() -> None:
    assert parse(YAPAPI_CONSTRAINTS) == And(
        (
            Compare("golem.node.debug.subnet", Op.EQ, "public"),
            Present("golem.com.payment.platform.erc20-holesky-tglm.address"),
            Compare("golem.com.payment.protocol.version", Op.GT, "1"),
            And(
                (
                    Compare("golem.inf.mem.gib", Op.GE, "0.5"),
                    Compare("golem.inf.storage.gib", Op.GE, "2.0"),
                    Compare("golem.inf.cpu.threads", Op.GE, "1"),
                    Compare("golem.runtime.name", Op.EQ, "vm"),
                )
            ),
        )
    )


def test_parse_provider_and_notes_examples() -> None:
    assert parse(PROVIDER_CONSTRAINTS) == And(
        (
            Compare("golem.srv.comp.expiration", Op.GT, "1705586871777"),
            Compare("golem.node.debug.subnet", Op.EQ, "public"),
        )
    )
    assert parse(
        "(|(golem.com.payment.platform.erc20-holesky-tglm.address=*)"
        "(golem.com.payment.platform.erc20-polygon-glm.address=*))"
    ) == Or(
        (
            Present("golem.com.payment.platform.erc20-holesky-tglm.address"),
            Present("golem.com.payment.platform.erc20-polygon-glm.address"),
        )
    )
    assert parse("(!(golem.node.id.name=bad-node*))") == Not(
        Compare("golem.node.id.name", Op.EQ, "bad-node*")
    )
    assert parse("(golem.runtime.version$v>=0.2.0)") == Compare(
        "golem.runtime.version", Op.GE, "0.2.0", type_hint=TypeHint.VERSION
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("()", Empty()),
        ("(&)", And(())),
        ("(|)", Or(())),
        ("(!())", Not(Empty())),
        ("(&()(a=b))", And((Empty(), Compare("a", Op.EQ, "b")))),
        # Every operator; two-character ones win over "<" and ">".
        ("(a=1)", Compare("a", Op.EQ, "1")),
        ("(a<1)", Compare("a", Op.LT, "1")),
        ("(a<=1)", Compare("a", Op.LE, "1")),
        ("(a>1)", Compare("a", Op.GT, "1")),
        ("(a>=1)", Compare("a", Op.GE, "1")),
        # Values are raw text up to the first ")": spaces, "(", "=", "*" included; may be empty.
        ("(cn=Babs Jensen)", Compare("cn", Op.EQ, "Babs Jensen")),
        ("(a= b )", Compare("a", Op.EQ, " b ")),
        ("(a=f(x)", Compare("a", Op.EQ, "f(x")),
        ("(a==b)", Compare("a", Op.EQ, "=b")),
        ("(a=<b)", Compare("a", Op.EQ, "<b")),
        ("(a>*)", Compare("a", Op.GT, "*")),
        ("(a=b*c*)", Compare("a", Op.EQ, "b*c*")),
        ("(a=)", Compare("a", Op.EQ, "")),
        ("(a=\\)", Compare("a", Op.EQ, "\\")),
        # Presence, with whitespace before ")".
        ("(a=*)", Present("a")),
        ("(a=* \n)", Present("a")),
        # A name keeps inner and trailing whitespace (the daemon then never finds it).
        ("( a b =1)", Compare("a b ", Op.EQ, "1")),
        (
            "(golem.com.payment.debit-notes.accept-timeout?=*)",
            Present("golem.com.payment.debit-notes.accept-timeout?"),
        ),
        # Aspects and type hints.
        ("(a[asp]=x)", Compare("a", Op.EQ, "x", aspect="asp")),
        ("(a[]=x)", Compare("a", Op.EQ, "x", aspect="")),
        ("(a[asp]$d<1)", Compare("a", Op.LT, "1", aspect="asp", type_hint=TypeHint.DECIMAL)),
        (
            "(a$t>2024-01-01T00:00:00Z)",
            Compare("a", Op.GT, "2024-01-01T00:00:00Z", type_hint=TypeHint.DATETIME),
        ),
        ("(a[asp]=*)", Present("a", aspect="asp")),
        ("(a$v=*)", Present("a", type_hint=TypeHint.VERSION)),
    ],
)
def test_parse_forms(text: str, expected: Constraint) -> None:
    assert parse(text) == expected
    assert parse(render(expected)) == expected


def test_whitespace_and_newlines_between_filters() -> None:
    # The daemon's own parser tests.
    assert parse("( !   (cn=Tim Howes))") == Not(Compare("cn", Op.EQ, "Tim Howes"))
    assert parse("( &  (a=b)  (b=c)  (c=d) )") == parse("(&(a=b)(b=c)(c=d))")
    assert parse("\n (&\r\n\t(a=b)\n\t()\n\t(!\n (c=d)\n)\n)\n ") == And(
        (Compare("a", Op.EQ, "b"), Empty(), Not(Compare("c", Op.EQ, "d")))
    )
    # Only space, tab, CR and LF are whitespace to the daemon.
    assert parse("(\u00a0a=1)") == Compare("\u00a0a", Op.EQ, "1")


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", 0, "expected '(' but found the end of the text"),
        ("   ", 3, "expected '(' but found the end of the text"),
        ("a=b", 0, "expected '(' but found 'a'"),
        ("werwer(werwerewro1=v2)", 0, "expected '('"),
        ("(", 1, "missing ')' for the '(' at position 0"),
        ("(a=b", 4, "missing ')' for the '(' at position 0"),
        ("(&(a=b)(c=d)", 12, "missing ')' for the '(' at position 0"),
        ("(&(a=b)(|(c=d)", 14, "missing ')' for the '(' at position 7"),
        ("(a=b))", 5, "unexpected text after the end of the filter"),
        ("(a=b)(c=d)", 5, "unexpected text after the end of the filter"),
        ("(a=b) x", 6, "unexpected text after the end of the filter"),
        ("((a=b))", 1, "expected a property name, '&', '|' or '!'"),
        ("( )", 2, "expected a property name, '&', '|' or '!'"),
        ("(a)", 2, "expected an operator"),
        ("(a b)", 4, "expected an operator"),
        ("(&(golem.inf.mem.gib 4))", 22, "expected an operator"),
        ("(a(b=1)", 2, "expected an operator"),
        ("(=b)", 1, "empty property name"),
        ("( =b)", 2, "empty property name"),
        ("([asp]=b)", 1, "empty property name"),
        ("($v=b)", 1, "empty property name"),
        ("(a~=b)", 2, "unsupported operator '~'"),
        ("(a$x=1)", 2, "expected a type code $v, $d or $t"),
        ("(a$=1)", 2, "expected a type code $v, $d or $t"),
        ("(a$V=1)", 2, "expected a type code $v, $d or $t"),
        ("(a[b=1)", 4, "expected ']' to close the aspect"),
        ("(a[b]c=1)", 5, "unexpected text in the property reference"),
        ("(a$vv=1)", 4, "unexpected text in the property reference"),
        ("(a]=1)", 2, "unexpected text in the property reference"),
        # The daemon reads "=*" as presence and then fails on what follows.
        ("(a=*b)", 3, "an '=' value cannot start with '*'"),
        ("(golem.node.id.name=*node)", 20, "an '=' value cannot start with '*'"),
        ("(!(a=b)(c=d))", 7, "'!' takes exactly one filter"),
        ("(!a=b)", 2, "expected '(' after '!'"),
        ("(!)", 2, "expected '(' after '!'"),
        ("(&a=b)", 2, "expected '(' or ')'"),
        ("(&(a=b)x)", 7, "expected '(' or ')'"),
        # The daemon cannot read a top-level "()" after whitespace.
        (" ()", 0, "whitespace before a top-level '()'"),
    ],
)
def test_syntax_errors_say_where(text: str, position: int, reason: str) -> None:
    with pytest.raises(ConstraintSyntaxError) as caught:
        parse(text)
    assert caught.value.position == position
    assert caught.value.reason.startswith(reason)
    assert caught.value.text == text
    assert f"at position {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_nesting_is_bounded() -> None:
    deep = "(!" * 99 + "()" + ")" * 99
    assert isinstance(parse(deep), Not)
    with pytest.raises(ConstraintSyntaxError, match="nested deeper"):
        parse("(!" * 100 + "()" + ")" * 100)
    with pytest.raises(ConstraintSyntaxError):
        parse("(&" * 5000)


# --- rendering -------------------------------------------------------------------------------


def test_render_is_compact() -> None:
    assert render(parse(YAPAPI_CONSTRAINTS)) == (
        "(&(golem.node.debug.subnet=public)"
        "(golem.com.payment.platform.erc20-holesky-tglm.address=*)"
        "(golem.com.payment.protocol.version>1)"
        "(&(golem.inf.mem.gib>=0.5)(golem.inf.storage.gib>=2.0)(golem.inf.cpu.threads>=1)"
        "(golem.runtime.name=vm)))"
    )
    assert render(Compare("a", Op.LE, "x", aspect="p", type_hint=TypeHint.DATETIME)) == (
        "(a[p]$t<=x)"
    )
    assert render(Present("a", aspect="", type_hint=TypeHint.DECIMAL)) == "(a[]$d=*)"
    assert render(Or((Empty(), Not(Empty())))) == "(|()(!()))"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Compare("", Op.EQ, "x"),
        lambda: Compare(" a", Op.EQ, "x"),
        lambda: Compare("&a", Op.EQ, "x"),
        lambda: Compare("!a", Op.EQ, "x"),
        lambda: Compare("a=b", Op.EQ, "x"),
        lambda: Compare("a(b", Op.EQ, "x"),
        lambda: Compare("a$v", Op.EQ, "x"),
        lambda: Compare("a[b]", Op.EQ, "x"),
        lambda: Compare("a", Op.EQ, "x", aspect="]"),
        lambda: Compare("a", Op.EQ, "x)"),
        lambda: Compare("a", Op.EQ, "*x"),
        lambda: Compare("a", Op.LT, "=x"),
        lambda: Compare("a", Op.GT, "=x"),
        lambda: Present("a~"),
        lambda: Present("a", aspect="$"),
    ],
)
def test_trees_that_cannot_be_written_are_refused(build: Callable[[], Constraint]) -> None:
    with pytest.raises(ValueError, match="cannot"):
        build()


def test_trees_that_can_be_written_are_accepted() -> None:
    # "=" may start a "=", "<=" or ">=" value; "*" may start any value but "=".
    for constraint in [
        Compare("a", Op.EQ, "=x"),
        Compare("a", Op.LE, "=x"),
        Compare("a", Op.GE, "*"),
        Compare("a b", Op.EQ, "(x"),
    ]:
        assert parse(render(constraint)) == constraint


# --- flattening ------------------------------------------------------------------------------


def test_flatten_joins_nested_keys_as_they_are() -> None:
    assert flatten({"golem": {"inf": {"mem": {"gib": 4}}}}) == {"golem.inf.mem.gib": 4}
    assert flatten({"golem": {"inf.mem.gib": 4, "inf": {"storage.gib": 2.5}}}) == {
        "golem.inf.mem.gib": 4,
        "golem.inf.storage.gib": 2.5,
    }
    flat = flatten(OFFER_PROPERTIES)
    assert flat["golem.inf.cpu.threads"] == 4
    assert flat["golem.com.payment.platform.erc20-holesky-tglm.address"] == "0xbeef"
    assert flat["golem.runtime.capabilities"] == ["vpn", "inet"]
    # Already flat properties stay as they are.
    assert flatten(DEMAND_PROPERTIES) == DEMAND_PROPERTIES


def test_flatten_keeps_lists_empty_objects_and_tags() -> None:
    # Lists are values, even holding objects.
    assert flatten({"a": [{"b": 1}, 2]}) == {"a": [{"b": 1}, 2]}
    # An empty object stays (the matcher cannot read it, so it is not a property to it).
    assert flatten({"a": {}, "b": 1}) == {"a": {}, "b": 1}
    assert flatten({}) == {"": {}}
    # "@tag" is the value of the key it is in.
    assert flatten({"a": {"@tag": "x", "b": 1}}) == {"a": "x", "a.b": 1}


def test_flatten_collisions_resolve_in_sorted_key_order() -> None:
    # "a" sorts before "a.b": its "a.b" is written first, then overwritten.
    assert flatten({"a.b": 1, "a": {"b": 2}}) == {"a.b": 1}
    assert flatten({"a": {"b": 2}, "a.b": 1}) == {"a.b": 1}
    assert flatten({"a": {"c": {"d": 1}}, "a.c": {"d": 2}}) == {"a.c.d": 2}


# --- evaluation: types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(n=4)", T),
        ("(n=4.0)", T),
        ("(n=+4e0)", T),
        ("(n>3.5)", T),
        ("(n>=4)", T),
        ("(n<4)", F),
        ("(n<=4)", T),
        ("(n<inf)", T),
        ("(n<NaN)", F),
        ("(n=.4e1)", T),
        ("(n=4.)", T),
        # Rust's f64 grammar: no whitespace, underscores or hex; unparseable is false.
        ("(n= 4)", F),
        ("(n<1_0)", F),
        ("(n<0x10)", F),
        ("(n>abc)", F),
        ("(n<abc)", F),
        ("(n!=3)", U),  # the name is "n!"
        ("(x=0.5)", T),
        ("(big=1705586871777)", T),
        ("(big>1705586871776)", T),
    ],
)
def test_numbers_compare_numerically(text: str, expected: Tri) -> None:
    assert ev(text, {"n": 4, "x": 0.5, "big": 1705586871777}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(s=vm)", T),
        ("(s=VM)", F),
        ("(s=vm )", F),
        ("(s=v*)", T),
        ("(s=*)", T),  # presence
        ("(s=vm*)", T),
        ("(s=v*m)", T),
        ("(s=x*)", F),
        ("(r=0.2.*)", T),
        # The wildcard pattern is an unescaped regular expression: "." is any character...
        ("(r=0x2x*)", F),
        ("(d=0.2.*)", T),
        # ...and an invalid expression matches nothing.
        ("(s=v(*)", F),
        ("(s=[v]m*)", T),
        ("(s=[*)", F),
        # Strings order by code point.
        ("(v>1)", T),
        ("(v>25)", T),
        ("(v<4)", T),
        ("(s>=vm)", T),
        ("(s<vma)", T),
        ("(s<vl)", F),
    ],
)
def test_strings_compare_with_wildcards_and_order(text: str, expected: Tri) -> None:
    props = {"s": "vm", "r": "0.2.1", "d": "0x2y1", "v": "3"}
    assert ev(text, props) is expected


def test_strings_are_matched_in_their_json_escaped_form() -> None:
    # The daemon matches on the JSON text of a string without unescaping it.
    props = {"q": 'say "hi"', "b": "a\\b", "n": "line\nnext", "t": "a\tb"}
    assert ev('(q=say "hi")', props) is F
    assert ev('(q=say \\"hi\\")', props) is T
    assert ev("(b=a\\\\b)", props) is T
    assert ev("(n=line\\nnext)", props) is T
    assert ev("(t=a\\tb)", props) is T
    # Escapes the daemon's reader does not know make the property unreadable: it is not there.
    for bad in ("a\rb", "bell\x07", "form\x0cfeed", "\ud800"):
        assert ev("(x=*)", {"x": bad}) is F
        assert ev("(x<zzz)", {"x": bad}) is U


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(yes=true)", T),
        ("(yes=false)", F),
        ("(no=false)", T),
        ("(yes=True)", F),
        ("(yes=1)", F),
        ("(yes=t*)", F),
        ("(yes>false)", F),
        ("(yes<=true)", F),
    ],
)
def test_booleans_only_equal_true_or_false(text: str, expected: Tri) -> None:
    assert ev(text, {"yes": True, "no": False}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Membership, with wildcards on string items and numbers compared as numbers.
        ("(caps=vpn)", T),
        ("(caps=inet)", T),
        ("(caps=manifest-support)", F),
        ("(caps=v*)", T),
        ("(caps=*)", T),
        ("(nums=2)", T),
        ("(nums=2.0)", T),
        ("(nums=3)", F),
        ("(mixed=true)", T),
        ("(mixed=x)", T),
        ("(nested=b)", T),
        ("(empty=x)", F),
        # List equality: same length and every wanted item in the list.
        ("(caps=[vpn,inet])", T),
        ("(caps=[inet,vpn])", T),
        ("(caps=[vpn])", F),
        ("(caps=[vpn,inet,gftp])", F),
        ("(caps=[vpn,vpn])", T),
        ("(pair=[a,b])", F),
        ("(caps=[v*,i*])", T),
        ("(nums=[2,1])", T),
        ("(empty=[])", T),
        ("(caps=[])", F),
        # An item loses leading whitespace only.
        ("(caps=[ vpn,\n inet])", T),
        ("(caps=[vpn ,inet])", F),
        # Not a list to the daemon: read as one item.
        ("(odd=[vpn,])", T),
        ("(odd=[ ])", F),
        ("(caps=[vpn,inet]x)", F),
        # Ordering is false for lists.
        ("(caps>a)", F),
        ("(caps<zzz)", F),
        ("(nums>=0)", F),
    ],
)
def test_lists_membership_and_equality(text: str, expected: Tri) -> None:
    props = {
        "caps": ["vpn", "inet"],
        "nums": [1, 2],
        "mixed": [True, "x", 1.5],
        "nested": [["a", "b"], "c"],
        "empty": [],
        "pair": ["a", "a"],
        "odd": ["[vpn,]", "x"],
    }
    assert ev(text, props) is expected


def test_unreadable_values_are_missing_properties() -> None:
    # null, objects, and lists holding either: the daemon cannot read them back.
    props: dict[str, object] = {
        "null": None,
        "obj": {},
        "list_null": [1, None],
        "list_obj": [{"a": 1}],
        "nan": float("nan"),
        "huge": 10**400,
        "ok": [1, [2, ["x"]]],
    }
    for name in ("null", "obj", "list_null", "list_obj", "nan", "huge", "nope"):
        assert ev(f"({name}=*)", props) is F, name
        assert ev(f"({name}=1)", props) is U, name
    assert ev("(ok=*)", props) is T
    assert ev("(ok=1)", props) is T
    # A key holding "=" cannot be matched at all.
    assert ev("(a=*)", {"a=b": 1}) is F


def test_missing_property_is_undefined_and_presence_false() -> None:
    assert ev("(golem.srv.comp.expiration>1705586871777)", {}) is U
    assert ev("(golem.srv.comp.expiration=*)", {}) is F
    assert ev("(!(golem.srv.comp.expiration=*))", {}) is T
    # A name with trailing whitespace is a different property.
    assert ev("(a =1)", {"a": 1}) is U


def test_aspects_are_never_set() -> None:
    # Only the daemon's own tests ever set aspects; properties from JSON never have them.
    assert ev("(a[x]=1)", {"a": 1}) is U
    assert ev("(a[x]=*)", {"a": 1}) is F
    assert ev("(b[x]=*)", {"a": 1}) is F
    assert ev("(b[x]<1)", {"a": 1}) is U


# --- evaluation: type hints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(v$v>=0.2.0)", T),
        ("(v$v>=1.5.0)", F),
        ("(v$v=0.10.0)", T),
        ("(v$v>0.9.9)", T),
        ("(v$v<0.10.1-alpha)", T),
        # Without the hint the same text compares as strings.
        ("(v>=0.2.0)", F),
        # Pre-releases sort before the release, numerically, numbers before words.
        ("(pre$v<1.0.0)", T),
        ("(pre$v>1.0.0-alpha.2)", T),
        ("(pre$v<1.0.0-alpha.beta)", T),
        ("(pre$v>1.0.0-alpha)", T),
        # Build metadata is ignored; whitespace around is allowed.
        ("(build$v=1.0.0)", T),
        ("(build$v=1.0.0+other)", T),
        ("(v$v= 0.10.0\t)", T),
        # An unparseable value text is false...
        ("(v$v>=0.2)", F),
        ("(v$v>=v0.2.0)", F),
        ("(v$v=00.10.0)", F),
        ("(v$v=0.10.0-)", F),
        # ...an unparseable or non-string property is undefined.
        ("(bad$v>=0.1.0)", U),
        ("(num$v>=0.1.0)", U),
        ("(list$v>=0.1.0)", U),
        ("(bad$v=*)", T),
    ],
)
def test_version_hint(text: str, expected: Tri) -> None:
    props = {
        "v": "0.10.0",
        "pre": "1.0.0-alpha.10",
        "build": "1.0.0+linux",
        "bad": "0.10",
        "num": 1,
        "list": ["0.1.0"],
    }
    assert ev(text, props) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(d$d=0.30)", T),
        ("(d$d=3e-1)", T),
        ("(d$d>0.2999999999999999999999)", T),
        ("(d$d<0.3000000000000000000001)", T),
        ("(d$d>=+.3)", T),
        ("(d$d=0.3e+0)", T),
        ("(neg$d<-1_0)", T),  # underscores separate digits
        ("(neg$d<_1)", F),
        ("(d$d<1.2.3)", F),
        ("(d$d<)", F),
        ("(d$d<inf)", F),
        # Hinted comparisons need a string property: a JSON number is undefined.
        ("(num$d=0.3)", U),
        ("(word$d=1)", U),
    ],
)
def test_decimal_hint(text: str, expected: Tri) -> None:
    props = {"d": "0.3", "neg": "-12.5", "num": 0.3, "word": "one"}
    assert ev(text, props) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(t$t=2024-01-01T00:00:00Z)", T),
        ("(t$t=2024-01-01T01:00:00+01:00)", T),
        ("(t$t=2023-12-31t19:00:00-05:00)", T),
        ("(t$t=2024-01-01 00:00:00.000000000z)", T),
        ("(t$t<2024-01-01T00:00:00.000000001Z)", T),
        ("(t$t<2024-01-01T00:00:00.0000000009Z)", F),  # past nanoseconds is dropped
        ("(t$t>2023-12-31T23:59:60Z)", T),  # a leap second
        ("(t$t<2023-12-31T23:59:60.5Z)", F),
        ("(t$t>0000-02-29T00:00:00Z)", T),
        ("(t$t=2024-01-01T00:00:00\u221200:00)", T),
        # Not RFC 3339 to the daemon: false.
        ("(t$t<2024-01-02)", F),
        ("(t$t<2024-01-02T00:00:00)", F),
        ("(t$t<2024-02-30T00:00:00Z)", F),
        ("(t$t<2024-01-02T00:00:00+24:00)", F),
        ("(t$t<2024-01-02T24:00:00Z)", F),
        ("(t$t<2024-01-02T00:00:00.Z)", F),
        # Without the hint, RFC 3339 strings compare as strings.
        ("(t=2024-01-01T00:00:00Z)", T),
        ("(t=2024-01-01T01:00:00+01:00)", F),
        ("(leap$t>2023-12-31T23:59:59.999Z)", T),
        ("(bad$t<2030-01-01T00:00:00Z)", U),
    ],
)
def test_datetime_hint(text: str, expected: Tri) -> None:
    props = {"t": "2024-01-01T00:00:00Z", "leap": "2023-12-31T23:59:60Z", "bad": "yesterday"}
    assert ev(text, props) is expected


# --- evaluation: logic -----------------------------------------------------------------------

# Leaves of each truth value against LOGIC_PROPS.
LEAF = {T: "(a=1)", F: "(a=2)", U: "(missing=1)"}
LOGIC_PROPS = {"a": 1}


@pytest.mark.parametrize("left", [T, F, U])
@pytest.mark.parametrize("right", [T, F, U])
def test_kleene_and_or(left: Tri, right: Tri) -> None:
    rank = {F: 0, U: 1, T: 2}
    low, high = sorted((left, right), key=rank.__getitem__)
    assert ev(f"(&{LEAF[left]}{LEAF[right]})", LOGIC_PROPS) is low
    assert ev(f"(|{LEAF[left]}{LEAF[right]})", LOGIC_PROPS) is high


def test_kleene_not_and_empty_operands() -> None:
    assert ev(f"(!{LEAF[T]})", LOGIC_PROPS) is F
    assert ev(f"(!{LEAF[F]})", LOGIC_PROPS) is T
    assert ev(f"(!{LEAF[U]})", LOGIC_PROPS) is U
    assert ev("()", {}) is T
    assert ev("(!())", {}) is F
    assert ev("(&)", {}) is T
    assert ev("(|)", {}) is F
    # Undefined before a false, or after a true, does not matter.
    assert ev(f"(&{LEAF[U]}{LEAF[F]}{LEAF[U]})", LOGIC_PROPS) is F
    assert ev(f"(|{LEAF[U]}{LEAF[T]}{LEAF[U]})", LOGIC_PROPS) is T


def test_tri_is_not_a_bool() -> None:
    assert Tri.of(True) is T
    assert Tri.of(False) is F
    with pytest.raises(TypeError):
        bool(U)


def test_yapapi_demand_constraints_on_an_offer() -> None:
    demand = parse(YAPAPI_CONSTRAINTS)
    assert evaluate(demand, OFFER_PROPERTIES) is T
    small = {**flatten(OFFER_PROPERTIES), "golem.inf.mem.gib": 0.25}
    assert evaluate(demand, small) is F
    testnet_only = flatten(OFFER_PROPERTIES)
    del testnet_only["golem.com.payment.platform.erc20-holesky-tglm.address"]
    assert evaluate(demand, testnet_only) is F
    no_runtime = flatten(OFFER_PROPERTIES)
    del no_runtime["golem.runtime.name"]
    assert evaluate(demand, no_runtime) is U


# --- matching --------------------------------------------------------------------------------


def test_match_is_two_way() -> None:
    assert matches(DEMAND_PROPERTIES, YAPAPI_CONSTRAINTS, OFFER_PROPERTIES, PROVIDER_CONSTRAINTS)
    # The offer's constraint needs the demand's expiration: without it, undefined, no match.
    no_expiration = {k: v for k, v in DEMAND_PROPERTIES.items() if "expiration" not in k}
    assert not matches(no_expiration, YAPAPI_CONSTRAINTS, OFFER_PROPERTIES, PROVIDER_CONSTRAINTS)
    old = {**DEMAND_PROPERTIES, "golem.srv.comp.expiration": 1705586871777}
    assert not matches(old, YAPAPI_CONSTRAINTS, OFFER_PROPERTIES, PROVIDER_CONSTRAINTS)
    # The demand's side fails.
    other_subnet = {**DEMAND_PROPERTIES, "golem.node.debug.subnet": "devnet"}
    assert not matches(DEMAND_PROPERTIES, YAPAPI_CONSTRAINTS, other_subnet, "()")
    # Parsed constraints work as well as text.
    assert matches({}, parse("()"), {}, Empty())


def test_match_undefined_is_no_match() -> None:
    assert not matches({}, "(a=1)", {}, "()")
    assert not matches({}, "(|(a=1)(b=1))", {"b": 2}, "()")
    assert matches({}, "(|(a=1)(b=1))", {"b": 1}, "()")
    assert not matches({}, "()", {}, "(!(a=1))")


def test_match_reads_constraints_as_the_daemon_does() -> None:
    # Text the daemon cannot read is no match; text after the first filter is ignored.
    assert not matches({}, "(a=1", {"a": 1}, "()")
    assert not matches({}, "()", {}, "((a=1))")
    assert matches({}, "(a=1)(b=2)", {"a": 1}, "()")
    assert matches({}, "(a=1))", {"a": 1}, "()")
    assert not matches({}, "(a=2)(a=1)", {"a": 1}, "()")


# --- property tests --------------------------------------------------------------------------

_WS = " \t\r\n"
_ref_chars = st.characters(exclude_characters="=<>~()[]$", codec="utf-8")
names = st.text(_ref_chars, min_size=1, max_size=8).filter(lambda s: s[0] not in _WS + "&|!")
aspects = st.none() | st.text(_ref_chars, max_size=4)
type_hints = st.none() | st.sampled_from(TypeHint)
value_texts = st.text(st.characters(exclude_characters=")", codec="utf-8"), max_size=8)


def _value_fits(op: Op, value: str) -> bool:
    if op is Op.EQ:
        return not value.startswith("*")
    return not (op in (Op.LT, Op.GT) and value.startswith("="))


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    op = draw(st.sampled_from(Op))
    value = draw(value_texts.filter(lambda v: _value_fits(op, v)))
    return Compare(draw(names), op, value, aspect=draw(aspects), type_hint=draw(type_hints))


leaves = (
    st.just(Empty()) | st.builds(Present, names, aspect=aspects, type_hint=type_hints) | compares()
)


def trees(leaf: st.SearchStrategy[Constraint]) -> st.SearchStrategy[Constraint]:
    def extend(inner: st.SearchStrategy[Constraint]) -> st.SearchStrategy[Constraint]:
        operands = st.lists(inner, max_size=4).map(tuple)
        return st.builds(And, operands) | st.builds(Or, operands) | st.builds(Not, inner)

    return st.recursive(leaf, extend, max_leaves=10)


def render_spaced(
    constraint: Constraint, space: Callable[[st.SearchStrategy[str]], str], top: bool = True
) -> str:
    """Render with random whitespace wherever the daemon allows it."""

    def ws() -> str:
        return space(st.text(st.sampled_from(_WS), max_size=3))

    # Whitespace before the top level "()" is the one place the daemon refuses it.
    before = "" if top and isinstance(constraint, Empty) else ws()
    if isinstance(constraint, And | Or):
        sign = "&" if isinstance(constraint, And) else "|"
        inner = "".join(render_spaced(c, space, top=False) for c in constraint.operands)
        return f"{before}({ws()}{sign}{inner}{ws()}){ws()}"
    if isinstance(constraint, Not):
        inner = render_spaced(constraint.operand, space, top=False)
        return f"{before}({ws()}!{inner}{ws()}){ws()}"
    if isinstance(constraint, Present):
        text = render(constraint)
        return f"{before}({ws()}{text[1:-1]}{ws()}){ws()}"
    if isinstance(constraint, Compare):
        # A value runs up to ")", so no whitespace can go there.
        return f"{before}({ws()}{render(constraint)[1:]}{ws()}"
    return f"{before}(){ws()}"


@settings(max_examples=300, deadline=None)
@given(trees(leaves))
def test_render_then_parse_gives_the_same_tree(constraint: Constraint) -> None:
    text = render(constraint)
    assert parse(text) == constraint
    assert render(parse(text)) == text


@settings(max_examples=150, deadline=None)
@given(trees(leaves), st.data())
def test_whitespace_between_filters_changes_nothing(
    constraint: Constraint, data: st.DataObject
) -> None:
    assert parse(render_spaced(constraint, data.draw)) == constraint


# A reference evaluator, in plain Python over a small domain where each rule is easy to see:
# strings from a few letters (wildcards but no other regex characters), numbers and decimals in
# plain notation, lists without whitespace, and typed values from tables of known order.

VERSIONS = {
    "0.1.0": 0,
    "0.2.0-alpha": 1,
    "0.2.0": 2,
    "0.10.0": 3,
    "1.0.0": 4,
    "1.0.0+build": 4,
}
DECIMALS = ["1", "1.5", "1.50", "-2", "1e3", "0.1", "10"]
DECIMAL_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?(e[0-9]+)?")
DATETIMES = {
    "2023-12-31T23:59:59Z": Fraction(-1),
    "2024-01-01T00:00:00Z": Fraction(0),
    "2024-01-01T01:00:00+01:00": Fraction(0),
    "2024-01-01T00:00:00.5Z": Fraction(1, 2),
    "2024-01-01t00:00:01z": Fraction(1),
}
TYPED: dict[TypeHint, list[str]] = {
    TypeHint.VERSION: [*VERSIONS],
    TypeHint.DECIMAL: DECIMALS,
    TypeHint.DATETIME: [*DATETIMES],
}
TYPED_TEXTS = [text for texts in TYPED.values() for text in texts]
# Few distinct strings, so that equal ones meet often.
short = st.sampled_from(["a", "b", "ab", "ba", "1"])
numbers = st.sampled_from([0, 1, 1.5, -2, 10, 1000])
ref_lists = st.lists(st.booleans() | st.sampled_from([1, 2]) | short, max_size=3)


def typed_or_junk(hint: TypeHint) -> st.SearchStrategy[str]:
    return st.sampled_from([*TYPED[hint], "junk", "1", ""])


# Each name mostly holds one kind of value; "x" holds anything, unreadable values included.
REF_VALUES: dict[str, st.SearchStrategy[object]] = {
    "n": st.booleans() | numbers,
    "s": short,
    "l": ref_lists | st.sampled_from([["a", "b"], ["b", "a"], ["a", "a"], [1, 2], [True, "a"]]),
    "v": typed_or_junk(TypeHint.VERSION),
    "d": typed_or_junk(TypeHint.DECIMAL),
    "t": typed_or_junk(TypeHint.DATETIME),
    "x": st.none() | st.lists(st.none() | short, min_size=1, max_size=2) | numbers | short,
}
REF_NAMES = [*REF_VALUES]
HINTED_NAME = {TypeHint.VERSION: "v", TypeHint.DECIMAL: "d", TypeHint.DATETIME: "t"}


@st.composite
def ref_properties(draw: st.DrawFn) -> dict[str, object]:
    there = st.sampled_from([True] * 9 + [False])  # mostly there
    return {name: draw(values) for name, values in REF_VALUES.items() if draw(there)}


# Value texts that meet each name's kind of property often.
PLAIN_VALUES = {
    "n": ["1", "1.5", "-2", "10", "1e3", "abc", "true", "false", "True"],
    "s": ["a", "b", "ab", "ba", "a*", "b*", "*b", "a*b", "[*", "1", "A", "0.1.0"],
    "l": [
        *["a", "b", "a*", "1", "2", "true", "[a,b]", "[b,a]", "[a,a]", "[a]", "[]"],
        *["[ab,ba,1]", "[1,2]", "[2,1]", "[true]", "[a,1,true]"],
    ],
}
# (Sampled, not built: Hypothesis would mostly draw "" and "[]".)
any_values = st.sampled_from(sorted({v for vs in PLAIN_VALUES.values() for v in vs}))
any_values |= st.sampled_from(TYPED_TEXTS)


@st.composite
def ref_compares(draw: st.DrawFn) -> Compare:
    hint = draw(st.sampled_from([None, None, None, *TypeHint]))
    op = draw(st.sampled_from(Op))
    if hint is None:
        name = draw(st.sampled_from(REF_NAMES))
        candidates = any_values
        if name in PLAIN_VALUES:
            candidates = st.sampled_from(PLAIN_VALUES[name]) | candidates
    else:
        name = draw(st.sampled_from([HINTED_NAME[hint]] * 6 + REF_NAMES))
        candidates = typed_or_junk(hint)
    value = draw(candidates.filter(lambda v: _value_fits(op, v)))
    aspect = draw(st.sampled_from([None] * 9 + ["x"]))
    return Compare(name, op, value, aspect=aspect, type_hint=hint)


ref_leaves = (
    ref_compares()
    | ref_compares()
    | st.builds(Present, st.sampled_from(REF_NAMES), aspect=st.sampled_from([None] * 9 + ["x"]))
    | st.just(Empty())
)


def ref_number(text: str) -> float | None:
    return float(text) if DECIMAL_RE.fullmatch(text) else None


def ref_typed(hint: TypeHint, text: str) -> object:
    if hint is TypeHint.VERSION:
        return VERSIONS.get(text)
    if hint is TypeHint.DECIMAL:
        return Fraction(text) if DECIMAL_RE.fullmatch(text) else None
    return DATETIMES.get(text)


def ref_order(op: Op, left: Any, right: Any) -> bool:
    return bool(
        {
            Op.EQ: left == right,
            Op.LT: left < right,
            Op.LE: left <= right,
            Op.GT: left > right,
            Op.GE: left >= right,
        }[op]
    )


def ref_equals(value: object, text: str) -> bool:
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, int | float):
        number = ref_number(text)
        return number is not None and value == number
    if isinstance(value, str):
        return re.fullmatch(".*".join(map(re.escape, text.split("*"))), value) is not None
    assert isinstance(value, list)
    if re.fullmatch(r"\[([^,\[\]]+(,[^,\[\]]+)*)?\]", text):
        wanted = text[1:-1].split(",") if text != "[]" else []
        return len(wanted) == len(value) and all(
            any(ref_equals(item, w) for item in value) for w in wanted
        )
    return any(ref_equals(item, text) for item in value)


def ref_compare(c: Compare, props: Mapping[str, object]) -> bool | None:
    value = props.get(c.name)
    if value is None or (isinstance(value, list) and None in value) or c.aspect is not None:
        return None
    if c.type_hint is not None:
        converted = ref_typed(c.type_hint, value) if isinstance(value, str) else None
        if converted is None:
            return None
        other = ref_typed(c.type_hint, c.value)
        return other is not None and ref_order(c.op, converted, other)
    if c.op is Op.EQ:
        return ref_equals(value, c.value)
    if isinstance(value, bool | list):
        return False
    if isinstance(value, str):
        return ref_order(c.op, value, c.value)
    number = ref_number(c.value)
    return number is not None and ref_order(c.op, value, number)


def ref_evaluate(c: Constraint, props: Mapping[str, object]) -> bool | None:
    if isinstance(c, Empty):
        return True
    if isinstance(c, And | Or):
        results = [ref_evaluate(o, props) for o in c.operands]
        decisive = isinstance(c, Or)  # the value that settles it
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    if isinstance(c, Not):
        result = ref_evaluate(c.operand, props)
        return None if result is None else not result
    if isinstance(c, Present):
        value = props.get(c.name)
        usable = value is not None and not (isinstance(value, list) and None in value)
        return usable and c.aspect is None
    return ref_compare(c, props)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(ref_leaves), ref_properties())
def test_evaluation_agrees_with_the_reference(
    constraint: Constraint, properties: dict[str, object]
) -> None:
    expected = {True: T, False: F, None: U}[ref_evaluate(constraint, properties)]
    assert evaluate(constraint, properties) is expected


PROPERTY_POOL: list[object] = [
    *[None, True, False, 0, 1, 1.5, -2, 10, 1000],
    *["a", "b", "ab", "ba", "1", "A", "", "junk", *TYPED_TEXTS],
    *[["a", "b"], ["b", "a"], ["a", "a"], [1, 2], [True, "a"], [], ["a", None]],
]
VALUE_POOL = sorted({*(v for vs in PLAIN_VALUES.values() for v in vs), *TYPED_TEXTS, "junk", ""})


def test_every_comparison_agrees_with_the_reference() -> None:
    mismatches = []
    for hint in [None, *TypeHint]:
        for op in Op:
            for text in VALUE_POOL:
                if not _value_fits(op, text):
                    continue
                for aspect in (None, "x"):
                    constraint = Compare("p", op, text, aspect=aspect, type_hint=hint)
                    for value in PROPERTY_POOL:
                        props = {"p": value}
                        expected = {True: T, False: F, None: U}[ref_evaluate(constraint, props)]
                        got = evaluate(constraint, props)
                        if got is not expected:
                            mismatches.append((render(constraint), value, got, expected))
    assert mismatches[:10] == []


@settings(max_examples=200, deadline=None)
@given(trees(ref_leaves), ref_properties(), trees(ref_leaves), ref_properties())
def test_match_is_both_sides_true(
    demand: Constraint,
    demand_props: dict[str, object],
    offer: Constraint,
    offer_props: dict[str, object],
) -> None:
    both = ref_evaluate(demand, offer_props) is True and ref_evaluate(offer, demand_props) is True
    assert matches(demand_props, render(demand), offer_props, render(offer)) is both


syntax_soup = st.text(
    st.sampled_from("()&|!=<>~*$[] \nab.v") | st.characters(codec="utf-8"),
    max_size=40,
)


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A valid constraint with one character deleted, inserted or replaced."""
    text = render(draw(trees(leaves)))
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from("()&|!=<>~*$[] "))
    edit = draw(st.sampled_from(["delete", "insert", "replace"]))
    if edit == "delete":
        return text[:at] + text[at + 1 :]
    if edit == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + char + text[at + 1 :]


@settings(max_examples=300, deadline=None)
@given(syntax_soup | near_misses())
def test_parse_fails_only_with_syntax_errors(text: str) -> None:
    error: ConstraintSyntaxError | None = None
    try:
        constraint = parse(text)
    except ConstraintSyntaxError as caught:
        error = caught
    if error is None:
        assert parse(render(constraint)) == constraint
    else:
        assert 0 <= error.position <= len(text)
        assert error.text == text
    assert matches({}, text, {}, "()") in (True, False)
