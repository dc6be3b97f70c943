"""The guide's SimpleService (``examples/simple_service/``) tested as a user would test it,
with golem_trio's pytest plugin: its image in LocalNet's local runtime (bubblewrap), on the
wall clock; the ``golem`` fixture checks the invariants at teardown (docs/testing.md)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import trio

from golem_trio import Golem
from golem_trio.services import ClusterStopped, ServiceState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simple_service"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simple_service", EXAMPLE / "simple_service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
@pytest.mark.golem_localnet(clock="wall", runtime="local", images=[EXAMPLE], providers=1)
async def test_the_guides_service_starts_and_stops_in_a_sandbox(
    golem_clock: None, golem: Golem
) -> None:
    simple_service = load_example()
    cluster = await golem.run_service(simple_service.SimpleService, num_instances=1)
    with trio.fail_after(60):
        await cluster.wait_running()
    # Its run() first sleeps 10 s; stop before it downloads a plot next to the example.
    await trio.sleep(1)
    await cluster.stop()
    (record,) = cluster.records
    assert record.state is ServiceState.TERMINATED
    assert isinstance(record.stop_reason, ClusterStopped)
    assert record.shutdown_ran
    assert not record.shutdown_timed_out
