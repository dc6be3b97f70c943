"""The runner: figures from a hand-made run, and whole scenarios on LocalNet in virtual time
(the same scenario and seed give the same report, byte for byte)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from golem_trio.bench import BenchReport, Recorder, ScenarioError, parse_scenario, run_scenario
from golem_trio.bench._runner import figures_of
from golem_trio.events import (
    DebitNoteAccepted,
    DebitNoteRefused,
    InstanceRestarting,
    InvoiceAccepted,
    ServiceStateChanged,
)

SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 5,
    "duration": 900,
    "service": {"kind": "echo", "instances": 2, "every": 20, "restart": {"strategy": "always"}},
    "budget": {"amount": "2"},
    "providers": {"count": 5, "dishonest": 1, "cheats": ["inflate"], "debit_note_interval": 60},
    "faults": [
        {"kind": "provider-termination", "rate_per_hour": 12, "start": 60},
        {"kind": "activity-death", "at": [400]},
        {"kind": "daemon-5xx", "start": 500, "duration": 20, "rate": 0.3, "status": 502},
        {"kind": "daemon-latency", "start": 600, "duration": 30, "seconds": 0.5},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def changed(instance: str, old: str, new: str) -> ServiceStateChanged:
    return ServiceStateChanged(
        cluster_id="c",
        instance_id=instance,
        service_class="S",
        old=old,
        new=new,
        trigger="t",
        reason=None,
        provider_id=None,
        provider_name=None,
    )


def test_figures_of_a_hand_made_run() -> None:
    clock = Clock()
    recorder = Recorder(target=2, clock=clock)
    recorder.start()  # t = 0 at 100

    def at(t: float, *events: object) -> None:
        clock.t = 100.0 + t
        for event in events:
            recorder(event)

    at(10, changed("a", "starting", "running"))
    at(20, changed("b", "starting", "running"))
    at(
        30,
        DebitNoteAccepted(
            debit_note_id="n1",
            agreement_id="A",
            activity_id=None,
            amount=Decimal("0.1"),
            increase=Decimal("0.1"),
        ),
    )
    at(50)
    recorder.fault("provider-termination", hit=True, instance_id="a")
    at(
        52,
        changed("a", "running", "stopping"),
        InstanceRestarting(
            cluster_id="c",
            instance_id="a",
            service_class="S",
            attempt=1,
            delay=1.0,
            avoided_provider=None,
        ),
    )
    at(58, changed("a", "starting", "running"))  # recovered 8 s after the fault
    at(70)
    recorder.fault("activity-death", hit=True, instance_id="b")
    at(72, changed("b", "running", "stopping"))
    at(90)
    recorder.fault("provider-termination", hit=False)
    at(
        95,
        DebitNoteRefused(
            debit_note_id="n2",
            agreement_id="B",
            activity_id=None,
            amount=Decimal("9"),
            reason="x",
            message="y",
        ),
    )
    at(99, InvoiceAccepted(invoice_id="i1", agreement_id="A", amount=Decimal("0.25")))
    book = {
        "agreements": [
            {"id": "A", "state": "Terminated"},
            {"id": "B", "state": "Approved"},
        ],
        "activities": [{"id": "x", "state": "Terminated"}, {"id": "y", "state": "Ready"}],
        "debitNotes": [
            {"agreementId": "A", "totalAmountDue": "0.1", "honest": True},
            {"agreementId": "B", "totalAmountDue": "9", "honest": False},
            {"agreementId": "B", "totalAmountDue": "0.05", "honest": True},
        ],
        "invoices": [{"agreementId": "A", "amount": "0.25", "honest": True}],
        "allocations": [{"spentAmount": "0.25"}],
    }
    scenario = parse_scenario({"duration": 100, "service": {"instances": 2}})
    column = figures_of(
        recorder,
        scenario,
        book,
        unpaid=[("B", Decimal("0.05"))],
        leftover_tasks=1,
        invariant_problems=["agreement B is left Approved"],
    )
    figures = column.figures
    # Running instance-seconds: a 10..50 (the fault) and 58..100, b 20..70 (the fault) =
    # 40 + 42 + 50 of 200.
    assert figures["availability"] == pytest.approx(132 / 200, abs=1e-3)
    assert figures["recovery"] == {
        "faults": 2,
        "recovered": 1,
        "unrecovered": 1,
        "p50_s": 8.0,
        "p99_s": 8.0,
        "max_s": 8.0,
    }
    assert figures["restarts"] == 1
    assert figures["faults"] == {
        "fired": {"activity-death": 1, "provider-termination": 2},
        "missed": {"provider-termination": 1},
    }
    assert figures["money"] == {
        "budget": "5",
        "spent": "0.250000000",
        "honest": "0.300000000",  # A's invoice and B's honest note
        "dishonest_documents": 1,
        "refused_documents": 1,
        "unpaid": 1,
        "unpaid_amount": "0.050000000",
    }
    assert figures["leaks"] == {"tasks": 1, "agreements": 1, "activities": 1}
    assert figures["invariants"] == {"ok": False, "problems": ["agreement B is left Approved"]}
    assert column.series["running"] == [
        [0.0, 0],
        [10.0, 1],
        [20.0, 2],
        [50.0, 1],
        [52.0, 1],
        [58.0, 2],
        [70.0, 1],
        [72.0, 1],
    ]
    assert column.series["spend"] == [
        [0.0, "0.000000000"],
        [30.0, "0.100000000"],
        [99.0, "0.250000000"],
    ]


def test_the_same_scenario_and_seed_give_identical_reports() -> None:
    scenario = parse_scenario(SMALL)
    first = BenchReport(scenario, "virtual", (run_scenario(scenario),)).json_text()
    second = BenchReport(scenario, "virtual", (run_scenario(scenario),)).json_text()
    assert first == second
    other = BenchReport(
        scenario.with_seed(6), "virtual", (run_scenario(scenario.with_seed(6)),)
    ).json_text()
    assert other != first


def test_a_run_on_localnet_counts_what_happened() -> None:
    scenario = parse_scenario(SMALL)
    report = json.loads(BenchReport(scenario, "virtual", (run_scenario(scenario),)).json_text())
    (column,) = report["columns"]
    figures = column["figures"]
    assert 0.5 < figures["availability"] <= 1.0
    fired = figures["faults"]["fired"]
    assert fired["activity-death"] == 1
    assert fired["daemon-5xx"] == fired["daemon-latency"] == 1
    hits = sum(
        fired.get(k, 0) - figures["faults"]["missed"].get(k, 0)
        for k in ("provider-termination", "activity-death")
    )
    assert figures["recovery"]["faults"] == hits
    assert figures["recovery"]["recovered"] >= 1
    assert figures["restarts"] >= figures["recovery"]["recovered"]
    assert figures["leaks"] == {"tasks": 0, "agreements": 0, "activities": 0}
    assert figures["invariants"] == {"ok": True, "problems": []}
    money = figures["money"]
    assert Decimal(money["spent"]) <= Decimal("2")
    assert money["dishonest_documents"] >= 1
    assert money["refused_documents"] >= 1
    assert column["series"]["running"][-1][0] <= 900 + 120


def test_a_users_service_class_runs() -> None:
    scenario = parse_scenario(
        {"duration": 300, "service": {"kind": "_bench_services:Ticker", "instances": 1}}
    )
    figures = run_scenario(scenario).figures
    assert figures["availability"] > 0.9
    assert figures["invariants"]["ok"]


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("no_such_module_here:Service", "cannot import no_such_module_here"),
        ("_bench_services:NOT_A_SERVICE", "is not a Service class"),
        ("_bench_services:Missing", "is not a Service class"),
    ],
)
def test_a_service_class_that_cannot_be_found(kind: str, problem: str) -> None:
    scenario = parse_scenario({"duration": 60, "service": {"kind": kind}})
    with pytest.raises(ScenarioError, match=problem) as caught:
        run_scenario(scenario)
    assert caught.value.field == "service.kind"
