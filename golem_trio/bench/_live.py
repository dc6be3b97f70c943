"""A live terminal view of a running scenario, drawn with rich."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from ._report import MissingExtra
from ._runner import Recorder
from ._scenario import Scenario

__all__ = ["LiveView"]

#: Wall-clock seconds between redraws (a virtual-time run reports thousands of changes a
#: second).
_REDRAW = 0.1


class LiveView:
    """Instances by state, restarts, spend and faults fired, redrawn as the run reports them.
    A context manager around one run; :meth:`observe` is the runner's ``observer``."""

    def __init__(self, scenario: Scenario) -> None:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            raise MissingExtra("rich") from None
        self.scenario = scenario
        self._live: Any = Live(console=Console(), auto_refresh=False, transient=False)
        self._last = 0.0
        self._recorder: Recorder | None = None
        #: The run's time at the latest change (the run's clock is gone after it).
        self._at = 0.0

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._recorder is not None:
            self._at = max(self._at, self.scenario.duration if exc is None else 0.0)
            self._live.update(self._render(self._recorder), refresh=True)
        self._live.__exit__(exc_type, exc, tb)

    def observe(self, recorder: Recorder) -> None:
        self._recorder = recorder
        recorder.listener = self._changed

    def _changed(self, recorder: Recorder) -> None:
        # The wall clock here only paces the drawing; the figures use the run's clock.
        self._at = recorder.now()
        now = time.monotonic()
        if now - self._last >= _REDRAW:
            self._last = now
            self._live.update(self._render(recorder), refresh=True)

    def _render(self, recorder: Recorder) -> Any:
        from rich.table import Table

        scenario = self.scenario
        table = Table(
            title=f"{scenario.name}: {min(self._at, scenario.duration):.0f} / "
            f"{scenario.duration:g} s",
            show_header=False,
        )
        table.add_column("what")
        table.add_column("value")
        states: dict[str, int] = {}
        for state in recorder.states.values():
            states[state] = states.get(state, 0) + 1
        shown = ", ".join(f"{state} {count}" for state, count in sorted(states.items()))
        table.add_row(
            "instances",
            f"{len(recorder.running)} running of {recorder.target} ({shown or 'none yet'})",
        )
        table.add_row("restarts", str(recorder.restarts))
        table.add_row("spent", f"{recorder.spent():.6f} of {scenario.budget} GLM")
        fired = ", ".join(f"{kind} {n}" for kind, n in sorted(recorder.fired.items()))
        table.add_row("faults fired", fired or "none yet")
        return table
