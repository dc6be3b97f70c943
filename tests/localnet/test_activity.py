"""The emulated activity API, driven through the project's own client: in virtual time over an
in-process transport, and over a real socket for the event stream."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import httpx2
import pytest
import trio
import trio.testing
from starlette.applications import Starlette

from golem_trio.localnet._server import serve_asgi
from golem_trio.localnet.emulator import (
    ActivityState,
    Daemon,
    Ids,
    MarketState,
    NetClock,
    NodeIdentity,
    _activity_routes,
    activity_routes,
    market_routes,
)
from golem_trio.localnet.emulator import build_app as build_daemon_app
from golem_trio.localnet.providers import Reply, RuntimeContext, ScriptedRuntime
from golem_trio.yagna import (
    ActivityStateName,
    ApiConfig,
    Capture,
    CaptureFormat,
    CaptureMode,
    CommandResult,
    Deploy,
    Finished,
    Run,
    Sign,
    Start,
    Started,
    StdOut,
    Terminate,
    Transfer,
    YagnaClient,
)

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ACT = "/activity-api/v1"


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n")


def work(args: Sequence[str]) -> Reply:
    return Reply(stdout="done\n", stderr="warn\n", duration_s=float(args[0]) if args else 10.0)


def fail(args: Sequence[str]) -> Reply:
    return Reply(stderr="boom\n", exit_code=3, duration_s=1.0)


def blob(args: Sequence[str]) -> Reply:
    return Reply(stdout=bytes(range(10)))


SCRIPTS = {"/bin/echo": echo, "/bin/work": work, "/bin/fail": fail, "/bin/blob": blob}


@attrs.define
class Setup:
    daemon: Daemon
    market: MarketState
    activity: ActivityState
    requestor: NodeIdentity
    provider: NodeIdentity
    app: Starlette
    runtimes: list[ScriptedRuntime]
    agreement_id: str = ""


def build_app(daemon: Daemon, market: MarketState, activity: ActivityState) -> Starlette:
    """Market and activity routes, served by the emulator's own app."""
    return build_daemon_app(
        daemon, [*market_routes(daemon, market), *activity_routes(daemon, activity)]
    )


async def approved_agreement(market: MarketState, requestor: str, provider: str) -> str:
    """Negotiate one agreement to Approved through the market's own methods."""
    offer = market.subscribe_offer(
        provider,
        {"properties": {"golem.runtime.name": "scripted"}, "constraints": "(golem.x=1)"},
    )
    demand = market.subscribe_demand(
        requestor, {"properties": {"golem.x": 1}, "constraints": "(golem.runtime.name=scripted)"}
    )
    (initial,) = await market.collect_offers(requestor, demand, 1, None)
    body = {"properties": {"golem.x": 1}, "constraints": "(golem.runtime.name=scripted)"}
    market.counter_proposal_demand(requestor, demand, initial["proposal"]["proposalId"], body)
    (ours,) = await market.collect_demands(provider, offer, 1, None)
    draft = market.counter_proposal_offer(
        provider,
        offer,
        ours["proposal"]["proposalId"],
        {"properties": {"golem.runtime.name": "scripted"}, "constraints": "(golem.x=1)"},
    )
    valid_to = (EPOCH + dt.timedelta(hours=1)).isoformat()
    agreement_id = market.create_agreement(
        requestor, {"proposalId": "R-" + draft[2:], "validTo": valid_to}
    )
    market.confirm_agreement(requestor, agreement_id, None)
    market.approve_agreement(provider, agreement_id, None)
    return agreement_id


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with trio.open_nursery() as nursery:
        daemon = Daemon(NetClock(EPOCH), Ids(3), nursery)
        market = MarketState(daemon)
        runtimes: list[ScriptedRuntime] = []

        def factory(context: RuntimeContext) -> ScriptedRuntime:
            runtime = ScriptedRuntime(SCRIPTS, deploy_s=30.0, start_s=2.0)
            runtimes.append(runtime)
            return runtime

        activity = ActivityState(daemon, market, factory)
        requestor = daemon.add_identity("requestor")
        provider = daemon.add_identity("provider")
        app = build_app(daemon, market, activity)
        s = Setup(daemon, market, activity, requestor, provider, app, runtimes)
        s.agreement_id = await approved_agreement(market, requestor.node_id, provider.node_id)
        yield s
        nursery.cancel_scope.cancel()


@pytest.fixture
async def yagna(setup: Setup) -> AsyncIterator[YagnaClient]:
    config = ApiConfig(app_key=setup.requestor.app_key, api_url="http://localnet")
    async with YagnaClient(config, transport=httpx2.ASGITransport(app=setup.app)) as client:
        yield client


@pytest.fixture
async def raw(setup: Setup) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=setup.app),
        base_url="http://localnet",
        headers={"Authorization": f"Bearer {setup.requestor.app_key}"},
    ) as client:
        yield client


def run(entry: str, *args: str, out: CaptureMode | None = None) -> Run:
    capture = Capture(stdout=out or CaptureMode(), stderr=CaptureMode())
    return Run(entry, list(args), capture)


async def deployed(yagna: YagnaClient, setup: Setup) -> str:
    activity_id = await yagna.activity.create_activity(setup.agreement_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=60)
    assert [r.result for r in results] == [CommandResult.OK, CommandResult.OK]
    return activity_id


async def test_create_and_walk_the_state_machine(
    autojump_clock: trio.testing.MockClock, setup: Setup, yagna: YagnaClient
) -> None:
    activity_id = await yagna.activity.create_activity(setup.agreement_id)
    state = await yagna.activity.get_state(activity_id)
    assert state.state == [ActivityStateName.INITIALIZED, None]
    assert await yagna.activity.get_activity_agreement(activity_id) == setup.agreement_id
    assert await yagna.activity.list_activities(setup.agreement_id) == [activity_id]
    assert setup.activity.activities_of(setup.agreement_id) == [activity_id]
    assert setup.activity.agreement_of(activity_id) == setup.agreement_id

    # Only deploy is allowed in Initialized.
    batch = await yagna.activity.exec(activity_id, [Start()])
    (result,) = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=5)
    assert result.result is CommandResult.ERROR
    assert result.is_batch_finished

    batch = await yagna.activity.exec(activity_id, [Deploy(env={"A": "1"}), Start(["x"])])
    await trio.sleep(1)
    # Deploying: the pending state is the next one.
    state = await yagna.activity.get_state(activity_id)
    assert state.state == [ActivityStateName.INITIALIZED, ActivityStateName.DEPLOYED]
    (running,) = await yagna.activity.get_running_command(activity_id)
    assert (running.batch_id, running.command) == (batch, "deploy")
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=60)
    assert [(r.index, r.result, r.is_batch_finished) for r in results] == [
        (0, CommandResult.OK, False),
        (1, CommandResult.OK, True),
    ]
    assert (await yagna.activity.get_state(activity_id)).state == [ActivityStateName.READY, None]
    assert setup.runtimes[0].deploy_params == {"env": {"A": "1"}}
    assert setup.runtimes[0].start_args == ["x"]
    assert await yagna.activity.get_running_command(activity_id) == []

    # Deploy and start again are refused once Ready.
    batch = await yagna.activity.exec(activity_id, [Deploy()])
    (result,) = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=5)
    assert result.result is CommandResult.ERROR

    # A run is "busy": [Ready, Ready].
    batch = await yagna.activity.exec(activity_id, [run("/bin/work", "20")])
    await trio.sleep(1)
    state = await yagna.activity.get_state(activity_id)
    assert state.state == [ActivityStateName.READY, ActivityStateName.READY]
    (running,) = await yagna.activity.get_running_command(activity_id)
    assert running.command == "run"
    assert running.params == ["/bin/work", "20"]
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=60)
    assert results[0].stdout == "done\n"

    # The object form answers an object.
    created = await yagna.activity.create_activity_with_credentials(
        setup.agreement_id, requestor_pub_key="ab"
    )
    assert created.activity_id != activity_id
    assert created.credentials is None
    assert set(await yagna.activity.list_activities(setup.agreement_id)) == {
        activity_id,
        created.activity_id,
    }
    assert {entry["id"] for entry in setup.activity.ledger()} == {activity_id, created.activity_id}


async def test_a_failing_command_stops_the_batch(
    autojump_clock: trio.testing.MockClock, setup: Setup, yagna: YagnaClient
) -> None:
    activity_id = await deployed(yagna, setup)
    batch = await yagna.activity.exec(
        activity_id,
        [run("/bin/echo", "a"), run("/bin/fail"), run("/bin/echo", "never"), Sign()],
    )
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    assert [(r.index, r.result, r.is_batch_finished) for r in results] == [
        (0, CommandResult.OK, False),
        (1, CommandResult.ERROR, True),
    ]
    assert results[0].stdout == "a\n"
    assert results[0].stderr is None
    assert results[0].message is None
    assert results[1].stderr == "boom\n"
    assert results[1].message == "ExeScript command exited with code 3"

    batch = await yagna.activity.exec(activity_id, [run("/bin/nope")])
    (result,) = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=5)
    assert result.result is CommandResult.ERROR
    assert result.message == "/bin/nope: command not found"

    transfer = Transfer("http://127.0.0.1:1/in.txt", "container:/golem/input/in.txt")
    batch = await yagna.activity.exec(activity_id, [transfer, Sign()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=5)
    assert [r.result for r in results] == [CommandResult.OK, CommandResult.OK]
    assert setup.runtimes[0].transfers == [(transfer.from_, transfer.to)]


async def test_a_batch_sent_while_one_runs_is_busy(
    autojump_clock: trio.testing.MockClock, setup: Setup, yagna: YagnaClient
) -> None:
    activity_id = await deployed(yagna, setup)
    first = await yagna.activity.exec(activity_id, [run("/bin/work", "10")])
    second = await yagna.activity.exec(activity_id, [run("/bin/echo", "hi")])
    (busy,) = await yagna.activity.get_exec_batch_results(activity_id, second)
    assert busy.result is CommandResult.ERROR
    assert busy.is_batch_finished
    assert busy.message is not None
    assert busy.message.startswith("Busy")
    (done,) = await yagna.activity.get_exec_batch_results(activity_id, first, wait=30)
    assert done.result is CommandResult.OK


async def test_polling_rules_of_the_daemon(
    autojump_clock: trio.testing.MockClock,
    setup: Setup,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
) -> None:
    activity_id = await deployed(yagna, setup)
    batch = await yagna.activity.exec(
        activity_id, [run("/bin/work", "5"), run("/bin/work", "5"), run("/bin/echo", "x")]
    )
    url = f"{ACT}/activity/{activity_id}/exec/{batch}"
    # No timeout: at once, with what is finished.
    reply = await raw.get(url)
    assert (reply.status_code, reply.json()) == (200, [])
    # Timeout without commandIndex: partial results.
    reply = await raw.get(url, params={"timeout": 7})
    assert [r["index"] for r in reply.json()] == [0]
    # With commandIndex, running out of time is a 408.
    reply = await raw.get(url, params={"timeout": 1, "commandIndex": 2})
    assert reply.status_code == 408
    assert (
        await yagna.activity.get_exec_batch_results(activity_id, batch, wait=1, command_index=2)
        == []
    )
    # The quirk: the awaited index is marked finished, output only for it.
    reply = await raw.get(url, params={"timeout": 10, "commandIndex": 1})
    body = reply.json()
    assert [(r["index"], r["isBatchFinished"]) for r in body] == [(0, False), (1, True)]
    assert body[0]["stdout"] is None
    assert body[1]["stdout"] == "done\n"
    assert set(body[0]) == {
        "index",
        "eventDate",
        "result",
        "stdout",
        "stderr",
        "message",
        "isBatchFinished",
    }
    reply = await raw.get(url, params={"timeout": 10})
    assert [(r["index"], r["isBatchFinished"]) for r in reply.json()] == [
        (0, False),
        (1, False),
        (2, True),
    ]
    assert reply.json()[0]["eventDate"].endswith("Z")
    reply = await raw.get(f"{ACT}/activity/{activity_id}/exec/{'0' * 32}")
    assert reply.status_code == 404


async def test_captures(
    autojump_clock: trio.testing.MockClock, setup: Setup, yagna: YagnaClient
) -> None:
    activity_id = await deployed(yagna, setup)
    text = "0123456789"
    bin_ = CaptureFormat.BIN
    batch = await yagna.activity.exec(
        activity_id,
        [
            run("/bin/echo", text, out=CaptureMode(head=4)),
            run("/bin/echo", text, out=CaptureMode(tail=4)),
            run("/bin/echo", text, out=CaptureMode(head_tail=4)),
            run("/bin/blob", out=CaptureMode(tail=3, format=bin_)),
            run("/bin/echo", text, out=CaptureMode(stream=True)),
            Run("/bin/echo", [text]),
        ],
    )
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=10)
    assert [r.stdout for r in results[:4]] == ["0123", "789\n", "019\n", b"\x07\x08\x09"]
    assert results[4].stdout == "0123456789\n"  # streamed, and kept for the result too
    assert results[5].stdout is None  # not captured


async def test_usage_grows_in_virtual_time(
    autojump_clock: trio.testing.MockClock, setup: Setup, yagna: YagnaClient
) -> None:
    activity_id = await yagna.activity.create_activity(setup.agreement_id)
    usage = await yagna.activity.get_usage(activity_id)
    assert usage.current_usage == [0.0, 0.0]
    assert usage.timestamp == int(setup.daemon.clock.now().timestamp())
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    await yagna.activity.get_exec_batch_results(activity_id, batch, wait=60)
    batch = await yagna.activity.exec(activity_id, [run("/bin/work", "100")])
    await yagna.activity.get_exec_batch_results(activity_id, batch, wait=200)
    await trio.sleep(50)
    usage = await yagna.activity.get_usage(activity_id)
    assert usage.current_usage is not None
    cpu, duration = usage.current_usage
    assert cpu == pytest.approx(100.0)
    assert duration == pytest.approx(152.0)

    await yagna.activity.destroy_activity(activity_id)
    await trio.sleep(100)
    usage = await yagna.activity.get_usage(activity_id)
    assert usage.current_usage is not None
    assert usage.current_usage[1] == pytest.approx(152.0)


async def test_destroy_and_kill(
    autojump_clock: trio.testing.MockClock,
    setup: Setup,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
) -> None:
    activity_id = await deployed(yagna, setup)
    batch = await yagna.activity.exec(activity_id, [run("/bin/work", "100")])
    await trio.sleep(1)
    reply = await raw.delete(f"{ACT}/activity/{activity_id}")
    assert (reply.status_code, reply.text) == (200, "null")
    state = await yagna.activity.get_state(activity_id)
    assert state.state == [ActivityStateName.TERMINATED, None]
    assert setup.runtimes[0].terminated
    # The interrupted batch ends with an error.
    (result,) = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=5)
    assert result.result is CommandResult.ERROR
    assert result.is_batch_finished
    # Destroying again is harmless; exec now fails as the exe-unit is gone.
    await yagna.activity.destroy_activity(activity_id)
    reply = await raw.post(
        f"{ACT}/activity/{activity_id}/exec", json={"text": json.dumps([{"sign": {}}])}
    )
    assert reply.status_code == 500
    assert "GSB error" in reply.json()["message"]

    # The terminate command ends the exe-unit too.
    ended = await deployed(yagna, setup)
    batch = await yagna.activity.exec(ended, [Terminate()])
    (result,) = await yagna.activity.get_exec_batch_results(ended, batch, wait=5)
    assert result.result is CommandResult.OK
    assert (await yagna.activity.get_state(ended)).current is ActivityStateName.TERMINATED
    assert setup.runtimes[1].terminated

    other = await deployed(yagna, setup)
    setup.activity.kill(other, "provider went away")
    await trio.sleep(1)
    state = await yagna.activity.get_state(other)
    assert state.current is ActivityStateName.TERMINATED
    assert state.reason == "provider went away"
    assert state.error_message == "provider went away"
    assert setup.runtimes[2].terminated
    ledger = {entry["id"]: entry for entry in setup.activity.ledger()}
    assert ledger[other]["state"] == "Terminated"
    assert ledger[other]["agreementId"] == setup.agreement_id


async def test_errors_are_shaped_as_the_daemon_shapes_them(
    autojump_clock: trio.testing.MockClock,
    setup: Setup,
    yagna: YagnaClient,
    raw: httpx2.AsyncClient,
) -> None:
    unknown = "f" * 32
    for method, path in (
        ("GET", f"/activity/{unknown}/state"),
        ("GET", f"/activity/{unknown}/usage"),
        ("GET", f"/activity/{unknown}/agreement"),
        ("DELETE", f"/activity/{unknown}"),
    ):
        reply = await raw.request(method, ACT + path)
        assert reply.status_code == 500, path
        assert reply.json()["message"].startswith("DAO error: Not found")

    # Both request forms; the reply mirrors the request.
    reply = await raw.post(f"{ACT}/activity", json=setup.agreement_id, params={"timeout": 3})
    assert reply.status_code == 200
    activity_id = reply.json()
    assert isinstance(activity_id, str)
    assert len(activity_id) == 32
    reply = await raw.post(f"{ACT}/activity", json={"agreementId": setup.agreement_id})
    assert reply.status_code == 200
    assert set(reply.json()) == {"activityId"}
    reply = await raw.post(f"{ACT}/activity", json="0" * 64)
    assert reply.status_code == 404
    reply = await raw.post(f"{ACT}/activity", json=5)
    assert reply.status_code == 400

    reply = await raw.post(
        f"{ACT}/activity",
        json=setup.agreement_id,
        headers={"Authorization": f"Bearer {setup.provider.app_key}"},
    )
    assert reply.status_code == 403
    reply = await raw.get(f"{ACT}/activity")
    assert reply.status_code == 400

    async def script(commands: Any) -> httpx2.Response:
        text = commands if isinstance(commands, str) else json.dumps(commands)
        return await raw.post(f"{ACT}/activity/{activity_id}/exec", json={"text": text})

    cases = [
        ([{"run": {"entryPoint": "/bin/echo"}}], "missing field `entry_point`"),
        ([{"launch": {}}], "unknown variant `launch`, expected one of `sign`, `deploy`"),
        ([{"run": {"entry_point": 5}}], "invalid type: integer `5`, expected a string"),
        (
            [{"run": {"entry_point": "x", "capture": {"stdout": {"atEnd": {"format": "hex"}}}}}],
            "unknown variant `hex`",
        ),
        ([{"transfer": {"from": "a"}}], "missing field `to`"),
        ([{"sign": {}, "start": {}}], "single key"),
        ({"sign": {}}, "invalid type: map, expected a sequence"),
        ("[{", "Unable to parse ExeScript"),
    ]
    for commands, expected in cases:
        reply = await script(commands)
        assert reply.status_code == 400, commands
        assert expected in reply.json()["message"], reply.json()
    reply = await raw.post(f"{ACT}/activity/{activity_id}/exec", json={"script": "[]"})
    assert (reply.status_code, reply.json()["message"]) == (
        400,
        "Json deserialize error: missing field `text`",
    )
    # The client's own commands all pass validation.
    batch = await yagna.activity.exec(
        activity_id, [Deploy(net=[{"id": "n", "ip": "10.0.0.0", "nodeIp": "10.0.0.2"}]), Start()]
    )
    assert len(batch) == 32


# --- event stream over a real socket ------------------------------------------------------------


@pytest.fixture
async def served(setup: Setup) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_asgi, setup.app, "127.0.0.1", 0)
        yield binds[0]
        nursery.cancel_scope.cancel()


async def test_event_stream(setup: Setup, served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_activity_routes, "PING_INTERVAL", 0.05)
    config = ApiConfig(app_key=setup.requestor.app_key, api_url=served)
    async with YagnaClient(config) as yagna:
        activity_id = await yagna.activity.create_activity(setup.agreement_id)
        # Speed the scripted exe-unit up for the real clock.
        runtime = setup.runtimes[0]
        runtime.deploy_s = runtime.start_s = 0.0
        batch = await yagna.activity.exec(
            activity_id,
            [
                Deploy(),
                Start(),
                Run("/bin/work", ["1"]),
                Run("/bin/echo", ["hi"], Capture(stdout=CaptureMode(stream=True))),
                Run("/bin/fail", [], Capture(stderr=CaptureMode(stream=True))),
            ],
        )
        events = []
        with trio.fail_after(10):
            async with yagna.activity.open_exec_stream(activity_id, batch) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event.kind, Finished) and event.kind.return_code != 0:
                        break
        kinds = [(e.index, type(e.kind).__name__) for e in events]
        # The stream may open after the first events: no replay, so compare the tail.
        assert kinds[-6:] == [
            (3, "Started"),
            (3, "StdOut"),
            (3, "Finished"),
            (4, "Started"),
            (4, "StdErr"),
            (4, "Finished"),
        ]
        (stdout,) = [e.kind for e in events if isinstance(e.kind, StdOut)]
        assert stdout.output == "hi\n"
        started = next(e.kind for e in events if e.index == 3 and isinstance(e.kind, Started))
        assert started.command == {
            "run": {
                "entry_point": "/bin/echo",
                "args": ["hi"],
                "capture": {"stdout": {"stream": {}}},
            }
        }
        finished = events[-1].kind
        assert isinstance(finished, Finished)
        assert finished.return_code == 3
        assert finished.message == "ExeScript command exited with code 3"
        assert all(e.batch_id == batch for e in events)

        # Raw framing, on a finished batch: only pings, and the stream stays open.
        url = f"{served}{ACT}/activity/{activity_id}/exec/{batch}"
        auth = {"Authorization": f"Bearer {setup.requestor.app_key}"}
        async with httpx2.AsyncClient() as raw:
            async with raw.stream("GET", url, headers={**auth, "Accept": "text/event-stream"}) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                pings = 0
                with trio.fail_after(5):
                    async for line in r.aiter_lines():
                        assert line in (":ping", "")
                        pings += line == ":ping"
                        if pings == 2:
                            break
            # Any other Accept value gets the JSON results.
            reply = await raw.get(url, headers={**auth, "Accept": "text/event-stream, */*"})
            assert reply.headers["content-type"] == "application/json"
            assert len(reply.json()) == 5

            # Raw frames of a running batch; then the client goes away mid-batch.
            batch = await yagna.activity.exec(
                activity_id,
                [
                    Run("/bin/echo", ["x"], Capture(stdout=CaptureMode(stream=True))),
                    Run("/bin/work", ["1.5"]),
                    Run("/bin/work", ["30"]),
                ],
            )
            url = f"{served}{ACT}/activity/{activity_id}/exec/{batch}"
            lines: list[str] = []
            async with raw.stream("GET", url, headers={**auth, "Accept": "text/event-stream"}) as r:
                with trio.fail_after(5):
                    async for line in r.aiter_lines():
                        lines.append(line)
                        if line.startswith("id:") and any('"index":2' in x for x in lines):
                            break
            state = setup.activity.activities[activity_id]
            # The server notices the client left and drops the stream.
            for _ in range(500):
                if not state.batches[batch].live_listeners():
                    break
                await trio.sleep(0.01)
            else:
                pytest.fail("the event stream outlived its client")
        frames = "\n".join(lines).split("\n\n")
        first = frames[0].split("\n")
        assert first[0] == "event: runtime"
        assert first[2] == "id: 0"
        data = json.loads(first[1].removeprefix("data: "))
        assert set(data) == {"batch_id", "index", "timestamp", "kind"}
        assert not data["timestamp"].endswith("Z")
        assert len(data["timestamp"].rpartition(".")[2]) == 9
        assert frames[1].split("\n")[2] == "id: 1"
        await yagna.activity.destroy_activity(activity_id)
