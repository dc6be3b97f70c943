"""``--against yapapi``: the same scenario through a yapapi app in its own virtualenv, on a
served LocalNet on the wall clock (about half a minute), side by side in one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from compat.yapapi_venv import COMPAT_VENV, CompatVenvError, yapapi_python

from golem_trio.bench import BenchReport, parse_scenario, run_yapapi_column
from golem_trio.cli import main

SCENARIO = {
    "name": "side-by-side",
    "seed": 4,
    "duration": 20,
    "service": {"kind": "echo", "instances": 2, "every": 4},
    "providers": {"count": 4},
    "faults": [
        {"kind": "provider-termination", "at": [8]},
        {"kind": "daemon-latency", "start": 12, "duration": 3, "seconds": 0.2},
    ],
}


@pytest.fixture
def yapapi_venv(monkeypatch: pytest.MonkeyPatch) -> Path:
    try:
        yapapi_python()
    except CompatVenvError as exc:
        pytest.skip(f"no yapapi virtualenv: {exc}")
    monkeypatch.setenv("GOLEM_TRIO_YAPAPI_VENV", str(COMPAT_VENV))
    return COMPAT_VENV


async def test_yapapi_runs_the_same_scenario(yapapi_venv: Path) -> None:
    scenario = parse_scenario(SCENARIO)
    column = await run_yapapi_column(scenario)
    assert column.implementation == "yapapi 0.13.1"
    assert column.clock == "wall"
    figures = column.figures
    assert figures["faults"]["fired"] == {"daemon-latency": 1, "provider-termination": 1}
    assert 0.2 < figures["availability"] < 1.0
    # yapapi does not replace an instance that was running.
    assert figures["recovery"]["recovered"] == 0
    assert figures["restarts"] == 0
    assert figures["leaks"]["tasks"] is None
    assert figures["leaks"]["agreements"] == 0
    report = BenchReport(scenario, "virtual", (column,))
    assert "| yapapi 0.13.1 |" in report.markdown()


def test_against_yapapi_puts_both_columns_in_one_report(
    yapapi_venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "side.toml"
    path.write_text(
        'name = "side"\nduration = 10\n[service]\nkind = "idle"\ninstances = 1\n'
        "[providers]\ncount = 2\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["bench", str(path), "--against", "yapapi", "--out", str(out), "--no-live"]) == 0
    report = json.loads((out / "side" / "report.json").read_text())
    assert [(c["implementation"], c["clock"]) for c in report["columns"]] == [
        ("golem-trio", "virtual"),
        ("yapapi 0.13.1", "wall"),
    ]
    assert "| figure | golem-trio | yapapi 0.13.1 |" in capsys.readouterr().out


def test_a_yapapi_virtualenv_that_cannot_be_made_is_status_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("GOLEM_TRIO_YAPAPI_VENV", str(blocker / "venv"))
    path = tmp_path / "s.toml"
    path.write_text("duration = 5\n", encoding="utf-8")
    code = main(["bench", str(path), "--against", "yapapi", "--out", str(tmp_path), "--no-plots"])
    assert code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot make yapapi's virtualenv" in err


def test_against_something_else_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "x.toml", "--against", "golem-js"]) == 2
    assert "--against" in capsys.readouterr().err
