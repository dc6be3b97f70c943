"""Settings the engine cannot use are refused when they are given, with a typed error that
names the parameter (``ConfigurationError``, a ``GolemError`` and a ``ValueError``; for a value
of the wrong type also a ``TypeError``), never at run time in the middle of a stop; and leaving
the block closes everything even when one of its steps raises."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
import trio
import trio.testing
from _services_support import BUDGET, EPOCH, BaseService, golem_of, open_world

from golem_trio import (
    ConfigurationError,
    ConfigurationTypeError,
    Golem,
    GolemError,
    HealthCheck,
    RestartPolicy,
    Timeouts,
)
from golem_trio.localnet import ProviderSpec, ledger, open_localnet, scripted_runtime_factory
from golem_trio.services import Engine, ServiceState
from golem_trio.testing import assert_invariants, snapshot_tasks
from golem_trio.work import HttpStorage


def assert_refused(
    excinfo: pytest.ExceptionInfo[ConfigurationError], parameter: str, *, wrong_type: bool
) -> None:
    error = excinfo.value
    assert isinstance(error, GolemError)
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError) is wrong_type
    assert isinstance(error, ConfigurationTypeError) is wrong_type
    assert error.parameter == parameter
    assert str(error).startswith(f"{parameter}: ")


@pytest.mark.parametrize(
    ("field", "value", "wrong_type"),
    [
        ("cleanup", -30, False),
        ("shutdown", math.nan, False),
        ("shutdown", -1.0, False),
        ("close", 0, False),
        ("stop_phase", math.inf, False),
        ("exit_wait", -math.inf, False),
        ("activity_creation", 0.0, False),
        ("adoption", -5, False),
        ("start_rollback", math.nan, False),
        ("expiration_margin", -60, False),
        ("cleanup", "20", True),
        ("shutdown", None, True),
        ("close", True, True),
    ],
)
def test_timeouts_refuse_what_would_break_the_stop(
    field: str, value: Any, wrong_type: bool
) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        Timeouts(**{field: value})
    assert_refused(excinfo, f"Timeouts.{field}", wrong_type=wrong_type)


def test_timeouts_that_can_be_zero_and_derived_defaults() -> None:
    timeouts = Timeouts(shutdown=0, expiration_margin=0)
    assert (timeouts.stop_phase, timeouts.exit_wait) == (21.0, 25.0)
    # A bad field is named even where the defaults derived from it would fail first.
    with pytest.raises(ConfigurationError, match=r"^Timeouts\.cleanup: "):
        Timeouts(cleanup="abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "parameter", "wrong_type"),
    [
        ({"budget": "abc"}, "budget", False),
        ({"budget": "NaN"}, "budget", False),
        ({"budget": "Infinity"}, "budget", False),
        ({"budget": 0}, "budget", False),
        ({"budget": -1.5}, "budget", False),
        ({"budget": True}, "budget", True),
        ({"budget": [1]}, "budget", True),
        ({"budget": 1, "invoice_wait": -1}, "invoice_wait", False),
        ({"budget": 1, "invoice_wait": math.nan}, "invoice_wait", False),
        ({"budget": 1, "invoice_wait": "60"}, "invoice_wait", True),
        ({"budget": 1, "timeouts": {"cleanup": 1}}, "timeouts", True),
        ({"budget": 1, "stream_output": "yes"}, "stream_output", True),
        ({"budget": 1, "subnet_tag": 7}, "subnet_tag", True),
        ({"budget": 1, "event_consumer": "print"}, "event_consumer", True),
        ({"budget": 1, "image_dirs": "images"}, "image_dirs", True),
        ({"budget": 1, "transfer": "ftp"}, "transfer", False),
        ({"budget": 1, "transfer": "GFTP"}, "transfer", False),
        ({"budget": 1, "transfer": None}, "transfer", True),
        ({"budget": 1, "seed": "7"}, "seed", True),
        ({"budget": 1, "seed": True}, "seed", True),
    ],
)
def test_golem_refuses_bad_settings_when_made(
    kwargs: dict[str, Any], parameter: str, wrong_type: bool
) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        Golem(**kwargs)
    assert_refused(excinfo, parameter, wrong_type=wrong_type)


def test_a_budget_given_as_text_is_read_exactly() -> None:
    assert str(Golem(budget=" 1.25 ").budget) == "1.25"


@pytest.mark.parametrize(
    ("make", "parameter", "wrong_type"),
    [
        (lambda: HealthCheck(failures="3"), "HealthCheck.failures", True),
        (lambda: HealthCheck(failures=0), "HealthCheck.failures", False),
        (lambda: HealthCheck(interval=math.inf), "HealthCheck.interval", False),
        (lambda: HealthCheck(interval=-1), "HealthCheck.interval", False),
        (lambda: HealthCheck(probe_timeout=math.nan), "HealthCheck.probe_timeout", False),
        (lambda: HealthCheck(probe="probe"), "HealthCheck.probe", True),
        (lambda: RestartPolicy(max_restarts="2"), "RestartPolicy.max_restarts", True),
        (lambda: RestartPolicy(max_restarts=-1), "RestartPolicy.max_restarts", False),
        (lambda: RestartPolicy(window=math.nan), "RestartPolicy.window", False),
        (lambda: RestartPolicy(backoff=-1), "RestartPolicy.backoff", False),
        (lambda: RestartPolicy(max_backoff=math.inf), "RestartPolicy.max_backoff", False),
        (lambda: RestartPolicy(jitter=2), "RestartPolicy.jitter", False),
        (lambda: RestartPolicy(strategy="sometimes"), "RestartPolicy.strategy", False),
        (lambda: RestartPolicy(strategy=3), "RestartPolicy.strategy", True),
    ],
)
def test_health_checks_and_restart_policies_refuse_bad_numbers(
    make: Any, parameter: str, wrong_type: bool
) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        make()
    assert_refused(excinfo, parameter, wrong_type=wrong_type)


async def test_run_service_refuses_bad_arguments_and_starts_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world() as world:
        golem = golem_of(world)
        bad: list[tuple[dict[str, Any], str, bool]] = [
            ({"num_instances": "2"}, "num_instances", True),
            ({"num_instances": 1.0}, "num_instances", True),
            ({"num_instances": -1}, "num_instances", False),
            ({"instance_params": {"a": 1}}, "instance_params", True),
            ({"expiration": EPOCH.replace(tzinfo=None)}, "expiration", False),
            ({"expiration": "tomorrow"}, "expiration", True),
            ({"restart": {"max_restarts": 1}}, "restart", True),
            ({"health": 10}, "health", True),
            ({"payload": "image"}, "payload", True),
            ({"negotiation_options": ["x"]}, "negotiation_options", True),
        ]
        for kwargs, parameter, wrong_type in bad:
            with pytest.raises(ConfigurationError) as excinfo:
                await golem.run_service(BaseService, **kwargs)
            assert_refused(excinfo, parameter, wrong_type=wrong_type)
        assert golem.clusters == []
        # Good arguments still run.
        cluster = await golem.run_service(
            BaseService, num_instances=1, expiration=EPOCH + dt.timedelta(hours=1)
        )
        with trio.fail_after(300):
            await cluster.wait_running()


async def test_leaving_the_block_closes_everything_when_a_step_raises(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait for the clusters raises: the engine, the payments (final invoices, the
    allocation's release) and the daemon client are still closed, the error comes out, and
    nothing is left open on the network or in trio."""

    async def broken_wait(self: Engine) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("the wait broke")

    monkeypatch.setattr(Engine, "wait_finished", broken_wait)
    specs = [ProviderSpec(name=f"p{i}") for i in range(2)]
    async with open_localnet(specs, epoch=EPOCH, runtime=scripted_runtime_factory({})) as net:
        before = snapshot_tasks()
        events: list[object] = []
        golem = Golem(
            budget=BUDGET, localnet=net, handle_signals=False, event_consumer=events.append
        )
        clusters = []

        async def run_one() -> None:
            async with golem:
                cluster = await golem.run_service(BaseService, num_instances=1)
                clusters.append(cluster)
                with trio.fail_after(300):
                    await cluster.wait_running()

        with pytest.raises(RuntimeError, match="the wait broke"):
            await run_one()
        assert not golem.operative
        assert [s.state for s in clusters[0].instances] == [ServiceState.TERMINATED]
        assert golem.payment_report is not None
        assert golem.payment_report.allocation_released
        assert snapshot_tasks().new_since(before) == []
        assert_invariants(ledger(net), budget=BUDGET)
        # The cancel-scope stack is intact: this task still works normally.
        with trio.move_on_after(1):
            await trio.sleep(2)


@pytest.mark.parametrize("transfer", ["auto", "http", "gftp"])
async def test_localnets_emulator_moves_files_over_http_and_refuses_gftp(
    autojump_clock: trio.testing.MockClock, transfer: str
) -> None:
    """``transfer="auto"`` (and ``"http"``) on LocalNet's emulator serve files over loopback
    HTTP; the emulator has no service bus, so ``"gftp"`` is refused when the engine is made."""
    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH) as net:
        if transfer == "gftp":
            with pytest.raises(ConfigurationError) as excinfo:
                Golem(budget=BUDGET, localnet=net, transfer=transfer)
            assert_refused(excinfo, "transfer", wrong_type=False)
            return
        golem = Golem(budget=BUDGET, localnet=net, handle_signals=False, transfer=transfer)
        async with golem:
            assert golem._engine is not None
            assert isinstance(golem._engine.context.storage, HttpStorage)
