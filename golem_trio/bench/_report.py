"""Reports: a scenario's columns (one per implementation) as JSON, a Markdown summary and PNG
plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from golem_trio._errors import GolemError

from ._runner import Column
from ._scenario import Scenario

__all__ = ["PLOTS", "BenchReport", "MissingExtra", "write_report"]

#: The plots a report draws, by file name.
PLOTS = ("running.png", "recovery.png", "spend.png")


class MissingExtra(GolemError, ImportError):
    """A piece of the ``bench`` extra (matplotlib, rich) is not installed; the message says
    how to get it."""

    def __init__(self, package: str) -> None:
        super().__init__(
            f"{package} is not installed: pip install 'golem-trio[bench]' "
            f"(or pip install {package})"
        )
        self.package = package


_BACKEND_NAMES = {"localnet": "LocalNet's emulator", "yagna": "real yagna daemons"}


@attrs.frozen
class BenchReport:
    """One scenario, run under one seed by one or more implementations."""

    scenario: Scenario
    clock: str
    columns: tuple[Column, ...]

    def to_json(self) -> dict[str, Any]:
        service = self.scenario.service
        return {
            "scenario": {
                "name": self.scenario.name,
                "description": self.scenario.description,
                "seed": self.scenario.seed,
                "duration_s": self.scenario.duration,
                "service": service.kind,
                "instances": service.instances,
                "restart": service.restart.strategy,
                "providers": self.scenario.providers.count,
                "budget": str(self.scenario.budget),
                "clock": self.clock,
            },
            "columns": [column.to_json() for column in self.columns],
        }

    def json_text(self) -> str:
        """The report as JSON text: the same run gives the same bytes (sorted keys, no
        wall-clock stamps)."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def markdown(self, plots: Sequence[str] = ()) -> str:
        """A Markdown summary: one row per figure, one column per implementation."""
        names = [column.implementation for column in self.columns]
        scenario = self.scenario
        lines = [
            f"# {scenario.name}",
            "",
            *([scenario.description, ""] if scenario.description else []),
            f"{scenario.service.instances} instances of `{scenario.service.kind}` for "
            f"{scenario.duration:g} s on {scenario.providers.count} providers, budget "
            f"{scenario.budget} GLM, seed {scenario.seed}; "
            + ", ".join(
                f"{c.implementation} on {_BACKEND_NAMES.get(c.backend, c.backend)}, "
                f"on the {c.clock} clock"
                for c in self.columns
            )
            + ".",
            "",
            "| figure | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names),
        ]
        for label, read in _ROWS:
            cells = [read(column.figures) for column in self.columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        problems = [
            (column.implementation, problem)
            for column in self.columns
            for problem in column.figures["invariants"]["problems"]
        ]
        if problems:
            lines += ["", "Invariant problems:", ""]
            lines += [f"- {name}: {problem}" for name, problem in problems]
        if plots:
            lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots)]
        return "\n".join(lines) + "\n"


def _recovery(figures: Any, key: str) -> str:
    value = figures["recovery"][key]
    return "-" if value is None else f"{value:g} s"


def _faults(figures: Any) -> str:
    fired = figures["faults"]["fired"]
    missed = figures["faults"]["missed"]
    if not fired:
        return "none"
    return ", ".join(
        f"{kind} {count}" + (f" ({missed[kind]} missed)" if missed.get(kind) else "")
        for kind, count in fired.items()
    )


_ROWS: tuple[tuple[str, Any], ...] = (
    ("availability", lambda f: f"{f['availability'] * 100:.1f} %"),
    ("faults fired", _faults),
    (
        "instance faults recovered",
        lambda f: f"{f['recovery']['recovered']} of {f['recovery']['faults']}",
    ),
    ("recovery p50", lambda f: _recovery(f, "p50_s")),
    ("recovery p99", lambda f: _recovery(f, "p99_s")),
    ("restarts", lambda f: str(f["restarts"])),
    ("spent (GLM)", lambda f: f["money"]["spent"]),
    ("honest amount (GLM)", lambda f: f["money"]["honest"]),
    ("dishonest documents", lambda f: str(f["money"]["dishonest_documents"])),
    ("refused documents", lambda f: str(f["money"]["refused_documents"])),
    ("unpaid agreements", lambda f: str(f["money"]["unpaid"])),
    (
        "leaks (tasks, agreements, activities)",
        lambda f: ", ".join(
            "n/a" if f["leaks"][k] is None else str(f["leaks"][k])
            for k in ("tasks", "agreements", "activities")
        ),
    ),
    ("invariants", lambda f: "hold" if f["invariants"]["ok"] else "VIOLATED"),
)


def write_report(report: BenchReport, out: Path, *, plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md`` and (with ``plots``) the PNG plots into ``out``
    (created if missing); the paths written. :class:`MissingExtra` without matplotlib."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    (out / "report.json").write_text(report.json_text(), encoding="utf-8")
    names: list[str] = []
    if plots:
        names = [path.name for path in draw_plots(report, out)]
        written += [out / name for name in names]
    (out / "report.md").write_text(report.markdown(names), encoding="utf-8")
    written.append(out / "report.md")
    return written


def draw_plots(report: BenchReport, out: Path) -> list[Path]:
    """The three plots of :data:`PLOTS`, drawn with matplotlib (Agg) into ``out``."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("matplotlib") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    scenario = report.scenario
    # No timestamps in the files, so that the same run draws the same bytes.
    metadata = {"Software": None}
    paths = [out / name for name in PLOTS]

    figure, axes = pyplot.subplots(figsize=(8, 4))
    for column in report.columns:
        points = column.series["running"]
        xs = [t for t, _n in points] + [scenario.duration]
        ys = [n for _t, n in points] + [points[-1][1]]
        axes.step(xs, ys, where="post", label=column.implementation)
    axes.axhline(scenario.service.instances, color="grey", linestyle="--", label="target")
    for t, _kind in report.columns[0].series["faults"]:
        axes.axvline(t, color="red", alpha=0.15, linewidth=1)
    axes.set_xlim(0, scenario.duration)
    axes.set_xlabel("seconds")
    axes.set_ylabel("instances running")
    axes.set_title(f"{scenario.name}: running instances (faults in red)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(paths[0], metadata=metadata)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(8, 4))
    values = [column.series["recoveries"] for column in report.columns]
    if any(values):
        axes.hist(values, bins=20, label=[c.implementation for c in report.columns])
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no instance faults recovered", ha="center", transform=axes.transAxes)
    axes.set_xlabel("seconds from fault to a replacement running")
    axes.set_ylabel("faults")
    axes.set_title(f"{scenario.name}: recovery latency")
    figure.tight_layout()
    figure.savefig(paths[1], metadata=metadata)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(8, 4))
    end = scenario.duration
    for column in report.columns:
        points = column.series["spend"]
        end = max(end, points[-1][0])
        xs = [t for t, _a in points] + [end]
        ys = [float(a) for _t, a in points] + [float(points[-1][1])]
        axes.step(xs, ys, where="post", label=column.implementation)
    axes.axhline(float(scenario.budget), color="grey", linestyle="--", label="budget")
    axes.set_xlabel("seconds")
    axes.set_ylabel("GLM accepted")
    axes.set_title(f"{scenario.name}: spend")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(paths[2], metadata=metadata)
    pyplot.close(figure)
    return paths
