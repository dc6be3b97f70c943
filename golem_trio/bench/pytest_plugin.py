"""A pytest plugin for testing your services on LocalNet (loaded by the ``pytest11`` entry
point ``golem_trio``; it needs pytest-trio).

Fixtures:

* ``golem_clock``: the clock of the test's trio run. Virtual (a ``MockClock`` that jumps
  ahead whenever every task waits) unless the test is marked ``golem_localnet(clock="wall")``;
  pytest-trio uses a clock only when the test takes it as an argument, so a virtual-time test
  names it (``async def test_x(golem_clock, golem): ...``).
* ``golem_faults``: the LocalNet fault plan: a ``FaultPlan`` from the ``golem_faults`` marker
  (its keyword arguments are ``FaultPlan``'s), from indirect parametrisation
  (``@pytest.mark.parametrize("golem_faults", [plan, ...], indirect=True)``), else none.
* ``golem_localnet``: a LocalNet in the test's trio run, set up by the ``golem_localnet``
  marker: ``providers`` (a count or a list of ``ProviderSpec``; default 3), ``seed`` (0),
  ``runtime`` (``"shell"``, the default: LocalNet's scripted shell; ``"local"``: bubblewrap
  sandboxes with the image folders found under ``images``; or any runtime factory), ``images``
  (folders), ``serve`` (serve it on loopback; default false, required by the wall clock's
  exec event stream), ``clock``.
* ``golem``: a ``Golem`` on that LocalNet, entered (``budget`` from the ``golem_localnet``
  marker, default 5). At teardown, after its block, the invariants of ``golem_trio.testing``
  must hold on the network's ledger, and the engine must have left no task behind: a
  failure names what was left open, unpaid or wrongly paid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from golem_trio.golem import Golem
from golem_trio.localnet import (
    FaultPlan,
    ImageStore,
    LocalNet,
    ProviderPopulation,
    ProviderSpec,
    RuntimeFactory,
    discover_images,
    local_runtime_factory,
    open_localnet,
    shell_runtime_factory,
)
from golem_trio.testing import assert_invariants, snapshot_tasks

__all__ = [
    "EPOCH",
    "golem",
    "golem_clock",
    "golem_faults",
    "golem_localnet",
    "pytest_configure",
]

#: Where the network's clock starts in virtual time.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "golem_localnet(providers=3, seed=0, runtime='shell', images=(), serve=False, "
        "clock='virtual', budget='5'): the LocalNet and Golem of golem_trio's fixtures",
    )
    config.addinivalue_line(
        "markers", "golem_faults(**plan): the FaultPlan of golem_trio's golem_faults fixture"
    )


def _settings(request: pytest.FixtureRequest) -> Mapping[str, Any]:
    marker = request.node.get_closest_marker("golem_localnet")
    settings = {} if marker is None else dict(marker.kwargs)
    unknown = set(settings) - {"providers", "seed", "runtime", "images", "serve", "clock", "budget"}
    if unknown:
        raise pytest.UsageError(f"golem_localnet: unknown settings {', '.join(sorted(unknown))}")
    return settings


@pytest.fixture
def golem_clock(request: pytest.FixtureRequest) -> trio.testing.MockClock | None:
    """The test's clock: virtual (autojump) unless ``golem_localnet(clock="wall")``."""
    clock = _settings(request).get("clock", "virtual")
    if clock not in ("virtual", "wall"):
        raise pytest.UsageError(f"golem_localnet: clock must be 'virtual' or 'wall', not {clock!r}")
    return trio.testing.MockClock(autojump_threshold=0) if clock == "virtual" else None


@pytest.fixture
def golem_faults(request: pytest.FixtureRequest) -> FaultPlan:
    """The fault plan: indirect parametrisation, else the ``golem_faults`` marker, else none."""
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, FaultPlan):
            raise pytest.UsageError(f"golem_faults: parametrise with FaultPlans, not {param!r}")
        return param
    marker = request.node.get_closest_marker("golem_faults")
    return FaultPlan() if marker is None else FaultPlan(**marker.kwargs)


def _runtime(settings: Mapping[str, Any], scratch: Path) -> RuntimeFactory:
    runtime = settings.get("runtime", "shell")
    if runtime == "shell":
        return shell_runtime_factory()
    if runtime == "local":
        store = ImageStore()
        discover_images(store, [Path(p) for p in settings.get("images", ())])
        return local_runtime_factory(store, scratch / "sandboxes")
    if callable(runtime):
        factory: RuntimeFactory = runtime
        return factory
    raise pytest.UsageError(
        f"golem_localnet: runtime must be 'shell', 'local' or a factory: {runtime!r}"
    )


def _providers(settings: Mapping[str, Any]) -> ProviderPopulation | Sequence[ProviderSpec]:
    providers = settings.get("providers", 3)
    if isinstance(providers, int):
        return ProviderPopulation(count=providers, seed=settings.get("seed", 0))
    return list(providers)


@pytest.fixture
async def golem_localnet(
    request: pytest.FixtureRequest,
    golem_clock: trio.testing.MockClock | None,
    golem_faults: FaultPlan,
    tmp_path: Path,
) -> AsyncIterator[LocalNet]:
    """A LocalNet for the test (see the module doc for the ``golem_localnet`` marker)."""
    settings = _settings(request)
    if golem_clock is not None and not isinstance(
        trio.lowlevel.current_clock(), trio.testing.MockClock
    ):
        raise pytest.UsageError(
            f"{request.node.name}: a virtual-time LocalNet needs the test to take the "
            "golem_clock fixture as an argument (or mark it golem_localnet(clock='wall'))"
        )
    # Finding image folders reads and hashes files: off the trio thread.
    runtime = await trio.to_thread.run_sync(_runtime, settings, tmp_path)
    async with open_localnet(
        _providers(settings),
        seed=settings.get("seed", 0),
        epoch=EPOCH if golem_clock is not None else None,
        runtime=runtime,
        serve=bool(settings.get("serve", False)),
        faults=golem_faults,
    ) as net:
        yield net


@pytest.fixture
async def golem(request: pytest.FixtureRequest, golem_localnet: LocalNet) -> AsyncIterator[Golem]:
    """A ``Golem`` on ``golem_localnet``, entered; at teardown the network's invariants and
    the engine's tasks are checked."""
    budget = Decimal(str(_settings(request).get("budget", "5")))
    before = snapshot_tasks()
    async with Golem(
        budget=budget,
        localnet=golem_localnet,
        handle_signals=False,
        seed=_settings(request).get("seed", 0),
    ) as engine:
        yield engine
    nursery = golem_localnet.daemon.nursery
    left = [task for task in snapshot_tasks().new_since(before) if not _runs_under(task, nursery)]
    assert not left, f"the engine left tasks running: {left}"
    assert_invariants(golem_localnet, budget=budget)


def _runs_under(task: trio.lowlevel.Task, nursery: trio.Nursery) -> bool:
    parent: trio.Nursery | None = task.parent_nursery
    while parent is not None:
        if parent is nursery:
            return True
        parent = parent.parent_task.parent_nursery
    return False
