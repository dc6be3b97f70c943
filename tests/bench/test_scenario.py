"""Scenario files: what they read into, and one ScenarioError naming the field for anything
wrong."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest

from golem_trio import GolemError
from golem_trio.bench import FaultType, Scenario, ScenarioError, load_scenario, parse_scenario

EXAMPLES = Path(__file__).parents[2] / "examples" / "bench"

VALID: dict[str, Any] = {
    "name": "t",
    "seed": 3,
    "duration": 600,
    "service": {
        "kind": "echo",
        "instances": 2,
        "every": 5,
        "restart": {"strategy": "always", "max_restarts": 9},
        "health": {"interval": 5, "failures": 2},
    },
    "budget": {"amount": "1.5"},
    "providers": {"count": 4, "cpu_sec": ["0.0001", "0.0002"], "dishonest": 1},
    "faults": [
        {"kind": "provider-termination", "rate_per_hour": 30, "start": 60},
        {"kind": "activity-death", "at": [100, 50]},
        {"kind": "daemon-5xx", "start": 200, "duration": 10, "rate": 0.5, "status": 503},
        {"kind": "daemon-outage", "start": 300, "duration": 30},
        {"kind": "dishonest-billing", "at": 10, "providers": 2, "billing": "too-fast"},
    ],
}


def with_value(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def test_the_examples_read() -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.toml"))
    assert names == ["budget-squeeze", "flaky-daemon", "hostile-billing", "provider-churn"]
    for path in EXAMPLES.glob("*.toml"):
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert scenario.faults


def test_a_scenario_reads_into_its_classes() -> None:
    scenario = parse_scenario(VALID)
    assert isinstance(scenario, Scenario)
    assert (scenario.seed, scenario.duration, scenario.budget) == (3, 600.0, Decimal("1.5"))
    assert scenario.service.restart.policy().max_restarts == 9
    assert scenario.service.health.check().failures == 2
    assert scenario.providers.cpu_sec == (Decimal("0.0001"), Decimal("0.0002"))
    assert scenario.faults[1].at == (50.0, 100.0)
    assert scenario.faults[4].kind is FaultType.DISHONEST_BILLING


def test_firings_follow_the_seed_and_stay_in_their_windows() -> None:
    scenario = parse_scenario(VALID)
    firings = scenario.firings()
    assert firings == scenario.firings()
    assert firings != scenario.with_seed(4).firings()
    terminations = [f.at for f in firings if f.kind is FaultType.PROVIDER_TERMINATION]
    assert terminations
    assert all(60 <= t < 600 for t in terminations)
    assert [f.at for f in firings if f.kind is FaultType.ACTIVITY_DEATH] == [50.0, 100.0]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("duration",), -1, "duration"),
        (("duration",), "long", "duration"),
        (("seed",), 1.5, "seed"),
        (("service", "kind"), "nothing here", "service.kind"),
        (("service", "instances"), 0, "service.instances"),
        (("service", "restart", "strategy"), "sometimes", "service.restart.strategy"),
        (("service", "restart", "jitter"), 2, "service.restart.jitter"),
        (("service", "health", "failures"), 0, "service.health.failures"),
        (("service", "colour"), "red", "service.colour"),
        (("budget", "amount"), "lots", "budget.amount"),
        (("budget", "amount"), "0", "budget.amount"),
        (("providers", "count"), True, "providers.count"),
        (("providers", "cpu_sec"), ["2", "1"], "providers.cpu_sec"),
        (("providers", "dishonest"), 9, "providers.dishonest"),
        (("providers", "cheats"), ["lie"], "providers.cheats[0]"),
        (("faults", 0, "rate_per_hour"), -3, "faults[0].rate_per_hour"),
        (("faults", 0, "duration"), 3, "faults[0].duration"),
        (("faults", 1, "at"), ["soon"], "faults[1].at[0]"),
        (("faults", 2, "status"), 404, "faults[2].status"),
        (("faults", 2, "rate"), 1.5, "faults[2].rate"),
        (("faults", 3, "duration"), 0, "faults[3].duration"),
        (("faults", 4, "providers"), 5, "faults[4].providers"),
        (("faults", 4, "kind"), "meteor", "faults[4].kind"),
        (("faults",), {"kind": "daemon-5xx"}, "faults"),
        (("weather",), "rain", "weather"),
    ],
)
def test_a_wrong_field_is_named(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(with_value(path, value), source="s.toml")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"s.toml: {field}: ")
    assert isinstance(caught.value, GolemError)
    assert isinstance(caught.value, ValueError)


def test_a_missing_duration_and_a_missing_fault_kind_are_named() -> None:
    data = copy.deepcopy(VALID)
    del data["duration"]
    with pytest.raises(ScenarioError, match=r"^duration: missing"):
        parse_scenario(data)
    data = with_value(("faults", 0), {"rate_per_hour": 3})
    with pytest.raises(ScenarioError, match=r"^faults\[0\]\.kind: missing"):
        parse_scenario(data)


def test_files_that_are_not_scenarios(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("duration = [", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not TOML") as caught:
        load_scenario(broken)
    assert caught.value.source == str(broken)


#: Any TOML value.
TOML_VALUES = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
PATHS = st.sampled_from(
    [
        ("duration",),
        ("seed",),
        ("name",),
        ("service",),
        ("service", "kind"),
        ("service", "instances"),
        ("service", "every"),
        ("service", "restart"),
        ("service", "restart", "window"),
        ("service", "restart", "backoff"),
        ("service", "health", "interval"),
        ("budget",),
        ("budget", "amount"),
        ("providers", "count"),
        ("providers", "start"),
        ("providers", "cheats"),
        ("faults",),
        ("faults", 0),
        ("faults", 0, "start"),
        ("faults", 0, "end"),
        ("faults", 1, "at"),
        ("faults", 2, "seconds"),
        ("faults", 2, "operation"),
        ("faults", 4, "billing"),
    ]
)


@hypothesis.given(path=PATHS, value=TOML_VALUES)
@hypothesis.settings(max_examples=300, deadline=None)
def test_any_value_anywhere_reads_or_names_its_field(path: tuple[Any, ...], value: Any) -> None:
    """Whatever value a field gets, the reader gives a scenario or a ScenarioError whose
    field is that field or lies inside it: never another exception."""
    try:
        parse_scenario(with_value(path, value))
    except ScenarioError as exc:
        error = exc
    else:
        return
    named = dotted(path)
    allowed = (named, *DEPENDENTS.get(named, ()))
    field = error.field
    assert any(field == a or field.startswith((f"{a}.", f"{a}[")) for a in allowed), (field, path)


#: Fields checked against another one: a change to the key may be reported on them.
DEPENDENTS = {"providers.count": ("providers.dishonest", "faults[4].providers")}


def dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
