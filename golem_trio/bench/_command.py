"""``golem-trio bench``: run scenario files and write their reports."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from ._report import BenchReport, MissingExtra, write_report
from ._runner import Column, Recorder, run_scenario
from ._scenario import Scenario, ScenarioError, load_scenario
from ._yagna import BACKENDS, run_yagna_scenario
from ._yapapi import YapapiUnavailable, run_yapapi_column

__all__ = ["EXIT_FAILED", "EXIT_MISSING", "EXIT_OK", "EXIT_USAGE", "bench_command"]

#: Exit statuses: 0 reports written, 1 a run failed, 2 bad usage (a scenario that cannot run),
#: 3 a piece of the ``bench`` extra is not installed.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3
PROG = "golem-trio bench"


def bench_command(
    paths: Sequence[str],
    *,
    out: Path,
    seed: int | None = None,
    clock: str | None = None,
    plots: bool = True,
    live: bool | None = None,
    against: Sequence[str] = (),
    backend: str = "localnet",
    nodes: int | None = None,
) -> int:
    """Run each scenario file of ``paths`` (under ``seed`` when given, else the file's), write
    its report into ``out/<scenario name>/`` and print its Markdown summary on standard
    output; the exit status. Errors are one line on standard error. ``live``: show a live view
    while each runs (default: when standard output is a terminal and ``rich`` is installed).
    ``against=["yapapi"]``: also run each scenario through yapapi (on a served LocalNet, on the
    wall clock) and put both columns in the report. ``backend="yagna"``: run golem-trio's
    column against real yagna daemons (``golem-trio[yagna]`` and a local chain; on the wall
    clock, ``nodes`` as for :func:`~golem_trio.localnet.yagna.open_yagna_localnet`).
    ``clock`` defaults to ``"virtual"`` on LocalNet, ``"wall"`` on yagna."""
    unknown = sorted(set(against) - {"yapapi"})
    if unknown:
        _error(f"--against {unknown[0]}: the only other SDK it runs is yapapi")
        return EXIT_USAGE
    if backend not in BACKENDS:
        _error(f"--backend {backend}: must be one of {', '.join(BACKENDS)}")
        return EXIT_USAGE
    if clock is None:
        clock = "wall" if backend == "yagna" else "virtual"
    if backend == "yagna" and clock != "wall":
        _error("--backend yagna runs on the wall clock only (real daemons keep real time)")
        return EXIT_USAGE
    if backend == "yagna":
        problem = _yagna_problem()
        if problem is not None:
            _error(problem)
            return EXIT_MISSING
    scenarios: list[Scenario] = []
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            _error(str(exc))
            return EXIT_USAGE
        scenarios.append(scenario if seed is None else scenario.with_seed(seed))
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _error(str(MissingExtra("matplotlib")) + " (or --no-plots)")
            return EXIT_MISSING
    if live is None:
        live = sys.stdout.isatty() and _has_rich()
    elif live and not _has_rich():
        _error(str(MissingExtra("rich")))
        return EXIT_MISSING
    if not logging.getLogger().handlers:
        # The engine's warnings (a shutdown handler that met a dead activity, ...) are what
        # the scenario provokes: the report counts them; only errors are shown.
        logging.basicConfig(level=logging.ERROR, format=f"{PROG}: %(levelname)s: %(message)s")
    folders: set[str] = set()
    for scenario in scenarios:
        folder = scenario.name
        n = 1
        while folder in folders:
            n += 1
            folder = f"{scenario.name}-{n}"
        folders.add(folder)
        try:
            column = _run(scenario, clock, live, backend, nodes)
        except ScenarioError as exc:  # a user's service class that cannot be loaded
            _error(str(exc))
            return EXIT_USAGE
        except Exception as exc:
            _error(f"{scenario.name}: the run failed: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
        columns = [column]
        if "yapapi" in against:
            try:
                columns.append(trio.run(run_yapapi_column, scenario))
            except YapapiUnavailable as exc:
                _error(str(exc))
                return EXIT_MISSING
            except Exception as exc:
                _error(f"{scenario.name}: the yapapi run failed: {type(exc).__name__}: {exc}")
                return EXIT_FAILED
        report = BenchReport(scenario, clock, tuple(columns))
        try:
            written = write_report(report, out / folder, plots=plots)
        except OSError as exc:
            _error(f"{out / folder}: cannot write the report: {exc.strerror or exc}")
            return EXIT_FAILED
        print(report.markdown(), flush=True)
        print(f"{PROG}: wrote {', '.join(str(p) for p in written)}", file=sys.stderr, flush=True)
    return EXIT_OK


def _run(scenario: Scenario, clock: str, live: bool, backend: str, nodes: int | None) -> Column:
    def run(observer: Callable[[Recorder], None] | None) -> Column:
        if backend == "yagna":
            return run_yagna_scenario(scenario, observer=observer, nodes=nodes)
        return run_scenario(scenario, clock=clock, observer=observer)

    if not live:
        return run(None)
    from ._live import LiveView

    with LiveView(scenario) as view:
        return run(view.observe)


def _yagna_problem() -> str | None:
    """Why real daemons cannot be started here, if they cannot (checked before any run)."""
    from golem_trio.localnet.yagna import (
        AnvilNotInstalled,
        YagnaNotInstalled,
        find_anvil_binary,
        find_yagna_binary,
    )

    try:
        find_yagna_binary()
        find_anvil_binary()
    except (YagnaNotInstalled, AnvilNotInstalled) as exc:
        return f"--backend yagna: {str(exc).splitlines()[0]}"
    return None


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
