"""An activity end to end on the real yagna daemon, with :class:`ExeUnit` as the exe-unit.

The requestor uses the golem_trio client; the provider side is an agent that polls the
provider's activity events (``GET /activity-api/v1/events``) and starts an :class:`ExeUnit`
on the daemon's bus for each ``CreateActivity`` (and terminates it on ``DestroyActivity``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import httpx2
import pytest
import trio

from golem_trio.gsb import GsbBus, open_gsb
from golem_trio.localnet.providers import CommandOutcome, Reply, RuntimeContext, ScriptedRuntime
from golem_trio.localnet.yagna import ExeUnit, YagnaNode, exeunit_service_id
from golem_trio.yagna import (
    ActivityStateName,
    ApiConfig,
    Capture,
    CaptureMode,
    CommandResult,
    Deploy,
    ExeScriptCommandResult,
    Run,
    Start,
    YagnaClient,
)

from ._provider import RawProvider
from .test_client_real import Scenario, Subscriptions, _approved_agreement
from .test_gsb import _refused

TEST_DEADLINE = 60.0  # a normal run takes a few seconds


class GatedRuntime(ScriptedRuntime):
    """A scripted runtime whose ``/gate`` entry point waits for :attr:`gate`."""

    def __init__(self) -> None:
        super().__init__(
            {
                "/bin/echo": lambda args: Reply(stdout=" ".join(args) + "\n"),
                "/fail": lambda args: Reply(stderr="boom\n", exit_code=3),
            }
        )
        self.gate = trio.Event()

    async def run(self, entry_point: str, args: Sequence[str], capture: Any) -> CommandOutcome:
        if entry_point == "/gate":
            await self.gate.wait()
            return CommandOutcome(stdout=b"opened\n")
        return await super().run(entry_point, args, capture)


@attrs.define
class ProviderAgent:
    """Starts an :class:`ExeUnit` per ``CreateActivity`` event; terminates it on
    ``DestroyActivity``."""

    node: YagnaNode
    bus: GsbBus
    app_session_id: str
    units: dict[str, ExeUnit] = attrs.field(factory=dict)
    runtimes: dict[str, GatedRuntime] = attrs.field(factory=dict)
    events: list[str] = attrs.field(factory=list)
    created: trio.Event = attrs.field(factory=trio.Event)

    def _runtime(self, context: RuntimeContext) -> GatedRuntime:
        runtime = GatedRuntime()
        self.runtimes[context.activity_id] = runtime
        return runtime

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        after = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        headers = {"Authorization": f"Bearer {self.node.provider_app_key}"}
        async with (
            httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(15.0), trust_env=False
            ) as http,
            trio.open_nursery() as nursery,
        ):
            task_status.started()
            while True:
                response = await http.get(
                    f"{self.node.api_url}/activity-api/v1/events",
                    params={
                        "afterTimestamp": after.isoformat(),
                        "appSessionId": self.app_session_id,
                        "timeout": 1.0,
                        "maxEvents": 10,
                    },
                )
                # With no event within the timeout the daemon answers 408.
                assert response.status_code in (200, 408), response.text
                for event in response.json() if response.status_code == 200 else []:
                    after = max(after, dt.datetime.fromisoformat(event["eventDate"]))
                    (kind,) = event["eventType"]
                    activity_id = event["activityId"]
                    self.events.append(kind)
                    if kind == "CreateActivity":
                        context = RuntimeContext(
                            activity_id=activity_id,
                            agreement_id=event["agreementId"],
                            requestor_id=self.node.requestor_id,
                            provider_id=self.node.provider_id,
                        )
                        unit = ExeUnit(self.bus, context, self._runtime)
                        self.units[activity_id] = unit
                        await nursery.start(unit.run)
                        self.created.set()
                    elif kind == "DestroyActivity" and activity_id in self.units:
                        await self.units[activity_id].terminate()


@contextlib.asynccontextmanager
async def _agreement(node: YagnaNode, requestor: YagnaClient, session: str) -> AsyncIterator[str]:
    scenario = Scenario(requestor_id=node.requestor_id, provider_id=node.provider_id)
    async with RawProvider(node.api_url, node.provider_app_key) as provider:
        offer_id = await provider.subscribe_offer(
            scenario.offer_properties(), scenario.offer_constraints()
        )
        try:
            demand_id = await requestor.market.subscribe_demand(scenario.demand())
            try:
                subs = Subscriptions(offer_id=offer_id, demand_id=demand_id)
                yield await _approved_agreement(requestor, provider, scenario, subs, session)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await requestor.market.unsubscribe_demand(demand_id)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await provider.unsubscribe_offer(offer_id)


@pytest.fixture
async def requestor(yagna_node: YagnaNode) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=yagna_node.requestor_app_key, api_url=yagna_node.api_url)
    async with YagnaClient(config) as client:
        yield client


async def _results(
    requestor: YagnaClient, activity_id: str, batch_id: str
) -> list[ExeScriptCommandResult]:
    """Poll until the batch is finished."""
    while True:
        results = await requestor.activity.get_exec_batch_results(activity_id, batch_id, wait=5.0)
        if results and results[-1].is_batch_finished:
            return results


AT_END = Capture(stdout=CaptureMode(), stderr=CaptureMode())


async def test_activity_end_to_end(yagna_node: YagnaNode, requestor: YagnaClient) -> None:
    session = f"golem-trio-{uuid.uuid4().hex[:8]}"
    with trio.fail_after(TEST_DEADLINE):
        async with (
            _agreement(yagna_node, requestor, session) as agreement_id,
            open_gsb(yagna_node.gsb_url, name="golem-trio-exeunit") as bus,
            trio.open_nursery() as nursery,
        ):
            agent = ProviderAgent(yagna_node, bus, f"{session}-provider")
            await nursery.start(agent.run)

            activity_id = await requestor.activity.create_activity(agreement_id, wait=15.0)
            unit = agent.units[activity_id]
            runtime = agent.runtimes[activity_id]
            state = await requestor.activity.get_state(activity_id)
            assert state.current == ActivityStateName.INITIALIZED

            # Polling: deploy, start, run.
            batch_id = await requestor.activity.exec(
                activity_id, [Deploy(), Start(), Run("/bin/echo", ["hello"], capture=AT_END)]
            )
            results = await _results(requestor, activity_id, batch_id)
            assert [r.index for r in results] == [0, 1, 2]
            assert all(r.result == CommandResult.OK for r in results)
            assert results[2].stdout == "hello\n"
            assert results[2].stderr is None
            assert runtime.deploy_params is not None
            state = await requestor.activity.get_state(activity_id)
            assert state.current == ActivityStateName.READY
            assert unit.report_errors == []

            # Streaming: the daemon's SSE route never delivers StreamExecBatchResults to a
            # bus-registered exe-unit on a one-node hybrid net, so the stream is called over
            # the bus itself, as the daemon would. The gate holds the batch until the stream
            # is open, as the exe-unit does not replay events.
            streamed = Capture(stdout=CaptureMode(stream=True))
            batch_id = await requestor.activity.exec(
                activity_id, [Run("/gate"), Run("/bin/echo", ["streamed"], capture=streamed)]
            )
            kinds: list[tuple[int, str]] = []
            request = {"activity_id": activity_id, "batch_id": batch_id}
            address = f"{exeunit_service_id(activity_id)}/StreamExecBatchResults"
            async with (
                open_gsb(yagna_node.gsb_url, name=yagna_node.requestor_id) as caller,
                caller.call_streaming(address, request) as items,
            ):
                while unit.stream_listeners(batch_id) == 0:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.02)
                runtime.gate.set()
                async for item in items:
                    event = item["Ok"]
                    assert set(event) == {"batch_id", "index", "timestamp", "kind"}
                    assert event["batch_id"] == batch_id
                    dt.datetime.fromisoformat(event["timestamp"][:26])  # naive UTC
                    (kind,) = event["kind"]
                    kinds.append((event["index"], kind))
                    if kind == "stdout":
                        assert event["kind"]["stdout"] == "streamed\n"
                    if kind == "started":
                        assert set(event["kind"]["started"]["command"]) == {"run"}
                    if kind == "finished":
                        assert event["kind"]["finished"]["return_code"] == 0
            # Command 0 may have started before the stream opened (no replay).
            assert kinds[:-4] in ([], [(0, "started")])
            assert kinds[-4:] == [
                (0, "finished"),
                (1, "started"),
                (1, "stdout"),
                (1, "finished"),
            ]
            results = await _results(requestor, activity_id, batch_id)
            assert [r.stdout for r in results] == [None, "streamed\n"]

            # A failing command: an Error result with its stderr; the batch stops there.
            batch_id = await requestor.activity.exec(
                activity_id,
                [Run("/fail", capture=AT_END), Run("/bin/echo", ["never"], capture=AT_END)],
            )
            results = await _results(requestor, activity_id, batch_id)
            assert len(results) == 1
            assert results[0].result == CommandResult.ERROR
            assert results[0].stderr == "boom\n"
            assert results[0].message == "ExeScript command exited with code 3"
            assert results[0].is_batch_finished

            usage = await requestor.activity.get_usage(activity_id)
            assert usage.current_usage is not None
            assert len(usage.current_usage) == 2
            # The daemon's REST route asks its own /public/activity service, which does not
            # answer GetRunningCommand (500 "Service receiver was cancelled" in 0.17.6); the
            # exe-unit answers it over the bus.
            running = await bus.call(
                f"{exeunit_service_id(activity_id)}/GetRunningCommand",
                {"activityId": activity_id, "timeout": None},
            )
            assert set(running["Err"]) == {"notFound"}
            state_reply = await bus.call(
                f"{exeunit_service_id(activity_id)}/GetState",
                {"activityId": activity_id, "timeout": None},
            )
            assert state_reply["Ok"]["state"] == ["Ready", None]

            # Destroy: the agent terminates the exe-unit, which unregisters.
            await requestor.activity.destroy_activity(activity_id, wait=15.0)
            assert unit.stopped
            assert runtime.terminated
            state = await requestor.activity.get_state(activity_id)
            assert state.current == ActivityStateName.TERMINATED
            with trio.fail_after(5):
                exc = await _refused(bus, f"{exeunit_service_id(activity_id)}/GetState")
            assert exc.code == 400
            assert "CreateActivity" in agent.events
            assert "DestroyActivity" in agent.events
            nursery.cancel_scope.cancel()
