"""A user's tests with golem_trio's pytest plugin: a service on LocalNet in virtual time,
under a fault plan, with the invariants checked at teardown by the ``golem`` fixture."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from golem_trio import Golem, Restart, RestartPolicy, Service, vm
from golem_trio.localnet import FaultPlan, LocalNet, ScheduledFault
from golem_trio.services import ServiceState

pytest_plugins = ("pytester",)

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


class Greeter(Service):
    """Says hello every 30 seconds."""

    @staticmethod
    async def get_payload() -> Any:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        while True:
            self._ctx.run("/bin/echo", "hello")
            await self._ctx.commit()
            await trio.sleep(30)


async def test_a_service_runs_for_half_an_hour_of_virtual_time(
    golem_clock: trio.testing.MockClock, golem: Golem
) -> None:
    cluster = await golem.run_service(Greeter, num_instances=2)
    with trio.fail_after(120):
        await cluster.wait_running(2)
    await trio.sleep(1800)
    assert cluster.states()[ServiceState.RUNNING] == 2
    await cluster.stop()


@pytest.mark.golem_localnet(providers=4, seed=3, budget="2")
@pytest.mark.golem_faults(
    seed=3, scheduled=[ScheduledFault(at=300, kind="terminate-agreement", target="any")]
)
async def test_a_terminated_instance_comes_back(
    golem_clock: trio.testing.MockClock, golem: Golem, golem_localnet: LocalNet
) -> None:
    cluster = await golem.run_service(
        Greeter, num_instances=1, restart=RestartPolicy(Restart.PERMANENT, jitter=0)
    )
    await trio.sleep(600)
    (instance,) = cluster.records
    assert instance.state is ServiceState.RUNNING
    assert len(instance.stop_reasons) == 1  # one life ended, by the provider's termination
    assert [f.kind.value for f in golem_localnet.faults.fired] == ["terminate-agreement"]
    await cluster.stop()


@pytest.mark.parametrize(
    "golem_faults",
    [FaultPlan(), FaultPlan(seed=1, rates={"fail-command": 0.2})],
    indirect=True,
    ids=["none", "failing-commands"],
)
async def test_the_plan_comes_from_parametrisation(
    golem_clock: trio.testing.MockClock, golem: Golem, golem_faults: FaultPlan
) -> None:
    cluster = await golem.run_service(
        Greeter, num_instances=1, restart=RestartPolicy(Restart.TRANSIENT, jitter=0)
    )
    await trio.sleep(900)
    await cluster.stop()
    restarts = len(cluster.records[0].stop_reasons) - 1
    assert (restarts > 0) == bool(golem_faults.rates)


@pytest.mark.golem_localnet(clock="wall", providers=1)
async def test_on_the_wall_clock(golem_clock: None, golem: Golem) -> None:
    cluster = await golem.run_service(Greeter, num_instances=1)
    with trio.fail_after(30):
        await cluster.wait_running()
    await cluster.stop()


def test_a_virtual_localnet_without_the_clock_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        async def test_forgot_the_clock(golem):
            pass
        """
    )
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*take the golem_clock fixture as an argument*"])
