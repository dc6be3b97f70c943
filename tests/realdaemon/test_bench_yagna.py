"""``golem-trio bench --backend yagna``: a scenario's faults fired on real daemons (two nodes
where a network namespace can be made), payments on the local chain, and its report read from
the requestor daemon's books."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golem_trio.cli import main

SCENARIO = """
name = "real-mix"
seed = 3
duration = 60

[service]
kind = "echo"
instances = 2
every = 4

[service.restart]
strategy = "always"
max_restarts = 20
backoff = 1

[service.health]
interval = 5
failures = 2

[budget]
amount = "5"

[providers]
count = 4
debit_note_interval = 6

[[faults]]
kind = "provider-termination"
at = 12

[[faults]]
kind = "activity-death"
at = 24

[[faults]]
kind = "daemon-5xx"
start = 32
duration = 6
rate = 0.5
status = 503

[[faults]]
kind = "dishonest-billing"
at = 40
providers = 4
billing = "inflate"
"""


def test_a_scenario_runs_on_real_daemons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "real-mix.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["bench", str(path), "--backend", "yagna", "--out", str(out), "--no-live"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "real-mix" / "report.json").read_text())
    [column] = report["columns"]
    assert (column["implementation"], column["backend"], column["clock"]) == (
        "golem-trio",
        "yagna",
        "wall",
    )
    figures = column["figures"]
    assert figures["faults"]["fired"] == {
        "activity-death": 1,
        "daemon-5xx": 1,
        "dishonest-billing": 1,
        "provider-termination": 1,
    }
    # Both instance faults found a running instance, and each came back.
    assert figures["faults"]["missed"] == {}
    assert figures["recovery"]["recovered"] == 2
    assert figures["restarts"] >= 2
    # The inflated notes every provider sent after 40 s were refused, none accepted (the
    # invariants), and what the engine spent is what the daemon says it accepted.
    money = figures["money"]
    assert money["dishonest_documents"] >= 1
    assert money["refused_documents"] >= 1
    assert figures["invariants"] == {"ok": True, "problems": []}
    assert figures["leaks"] == {"tasks": 0, "agreements": 0, "activities": 0}
    assert 0 < float(money["spent"]) < 5
    assert figures["availability"] > 0.5
    assert "real yagna daemons" in captured.out
