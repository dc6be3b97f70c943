"""``golem-trio bench``: reports written, and one line with the right exit status for a bad
scenario, a bad option or a missing piece."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from golem_trio.cli import main

SCENARIO = """
name = "tiny"
seed = 2
duration = 300

[service]
kind = "idle"
instances = 2

[providers]
count = 3

[[faults]]
kind = "provider-termination"
at = [100]
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_bench_writes_the_report_and_prints_the_summary(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["bench", str(scenario), "--out", str(out), "--seed", "9", "--no-live"]) == 0
    folder = out / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "recovery.png",
        "report.json",
        "report.md",
        "running.png",
        "spend.png",
    ]
    report = json.loads((folder / "report.json").read_text())
    assert report["scenario"]["seed"] == 9
    assert report["columns"][0]["figures"]["faults"]["fired"] == {"provider-termination": 1}
    captured = capsys.readouterr()
    assert "| availability |" in captured.out
    assert captured.out.strip() == (folder / "report.md").read_text().split("\nPlots:")[0].strip()
    assert "wrote" in captured.err
    for png in ("recovery.png", "running.png", "spend.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_scenario_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('duration = 60\n[service]\ninstances = "many"\n', encoding="utf-8")
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "service.instances: must be a whole number" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_clock_is_a_usage_error(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(scenario), "--clock", "sundial"]) == 2
    assert "--clock" in capsys.readouterr().err


def test_real_daemons_keep_the_wall_clock(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["bench", str(scenario), "--backend", "yagna", "--clock", "virtual"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--backend yagna runs on the wall clock only" in err
    assert main(["bench", str(scenario), "--backend", "moon", "--out", str(out)]) == 2
    assert "--backend" in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_daemon_is_one_line_and_status_3(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import golem_trio.localnet.yagna as yagna

    def missing() -> Path:
        raise yagna.YagnaNotInstalled(f"{yagna.INSTALL_HINT}\nSearched:\n  {tmp_path}")

    monkeypatch.setattr(yagna, "find_yagna_binary", missing)
    out = tmp_path / "out"
    assert main(["bench", str(scenario), "--backend", "yagna", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("golem-trio bench: error: --backend yagna: ")
    assert yagna.INSTALL_HINT.splitlines()[0] in err
    assert not out.exists()


def test_missing_matplotlib_is_one_line_and_status_3(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    assert main(["bench", str(scenario), "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'golem-trio[bench]'" in err
    # Without plots it needs no matplotlib.
    assert (
        main(["bench", str(scenario), "--out", str(tmp_path / "out"), "--no-plots", "--no-live"])
        == 0
    )


def test_a_live_view_needs_rich(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(["bench", str(scenario), "--out", str(tmp_path), "--live", "--no-plots"]) == 3
    assert "rich is not installed" in capsys.readouterr().err


def test_the_live_view_draws_the_run(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(scenario), "--out", str(tmp_path), "--live", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 300 / 300 s" in out
    assert "faults fired" in out
    assert "provider-termination 1" in out
