"""WorkContext: identity, deploy arguments, events, handles and results."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing
from _work_support import open_work

from golem_trio.localnet import Reply, scripted_runtime_factory
from golem_trio.work import (
    CommandExecuted,
    CommandExecutionError,
    Result,
    ScriptFinished,
    WorkContext,
    _script,
    open_http_storage,
)

RUNTIME = scripted_runtime_factory(
    {
        "/bin/echo": lambda args: Reply(stdout=" ".join(args)),
        "/bin/false": lambda args: Reply(stderr="no\n", exit_code=1),
    }
)


@attrs.frozen
class ProgressArgs:
    update_interval: str | None = "300ms"
    update_step: int | None = None


async def test_context_identity_and_deploy_arguments(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        base = work.ctx
        ctx = WorkContext(
            base.yagna,
            activity_id=base.activity_id,
            agreement_id=base.agreement_id,
            provider_id=base.provider_id,
            provider_name=base.provider_name,
            deploy_args={"hostname": "default", "env": {"A": "1"}},
        )
        assert ctx.id == ctx.activity_id == base.activity_id
        assert ctx.provider_name == "p0"
        assert base.activity_id in repr(ctx)
        net = [{"id": "n1", "ip": "192.168.0.0", "mask": "255.255.255.0", "nodeIp": "192.168.0.2"}]
        ctx.deploy(net=net, hostname="web", progress_args=ProgressArgs())
        ctx.start("--fast")
        with pytest.raises(TypeError, match="unknown arguments: nope"):
            ctx.deploy(nope=1)
        with trio.fail_after(60):
            await ctx.commit()
        runtime = work.net.activity.activities[ctx.activity_id].runtime
        params = runtime.deploy_params  # type: ignore[attr-defined]
        assert params["net"] == net
        assert params["hostname"] == "web"
        assert params["env"] == {"A": "1"}
        assert params["progress"] == {"update_interval": "300ms"}
        assert runtime.start_args == ["--fast"]  # type: ignore[attr-defined]


async def test_handles_and_results(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        handle = script.run("/bin/echo", "x")
        assert not handle.done
        with pytest.raises(RuntimeError, match="not finished"):
            handle.result()
        with trio.fail_after(60):
            await script
        assert handle.done
        assert handle.result().stdout == "x"
        assert "ok" in repr(handle)
    result = Result(0, "download /x", True, None, None, None, None, data=b'{"a": [1]}')
    assert result.json == {"a": [1]}
    with pytest.raises(ValueError, match="no downloaded data"):
        _ = attrs.evolve(result, data=None).json


async def test_a_failing_event_consumer_does_not_break_the_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[object] = []

    def consumer(event: object) -> None:
        seen.append(event)
        raise ValueError("broken consumer")

    async with open_work(RUNTIME, emit=consumer) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/false")
        with trio.fail_after(60), pytest.raises(CommandExecutionError) as caught:
            await script
        assert caught.value.exit_code == 1
        assert caught.value.stderr == "no\n"
        executed = [e for e in seen if isinstance(e, CommandExecuted)]
        assert [(e.index, e.success) for e in executed] == [(0, True), (1, True), (2, False)]
        assert [e.ok for e in seen if isinstance(e, ScriptFinished)] == [False]


async def test_a_download_that_never_arrives_fails_its_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scripted runtime only records transfers: nothing is PUT, so the download must not
    # pretend to have succeeded.
    monkeypatch.setattr(_script, "DOWNLOAD_GRACE", 0.5)
    async with open_http_storage() as storage:
        async with open_work(RUNTIME, storage=storage) as work:
            script = work.ctx.new_script()
            script.deploy()
            script.start()
            handle = script.download_bytes("/golem/output/x")
            with trio.fail_after(60), pytest.raises(CommandExecutionError, match="did not arrive"):
                await script
            with pytest.raises(CommandExecutionError):
                await handle
            runtime = work.net.activity.activities[work.ctx.activity_id].runtime
            ((source, destination),) = runtime.transfers  # type: ignore[attr-defined]
            assert source == "container:/golem/output/x"
            assert destination.startswith(storage.base_url + "/")


def test_scripts_refuse_bad_timeouts() -> None:
    ctx = WorkContext(None, activity_id="a", agreement_id="g", provider_id="p")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        ctx.new_script(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        ctx.commit(timeout=-1)
    script = ctx.new_script()
    assert script.commands == ()


async def test_implicit_init_deploys_before_the_first_script_that_does_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        work.ctx.implicit_init = True
        with trio.fail_after(60):
            script = work.ctx.new_script()
            handle = script.run("/bin/echo", "a")
            await script
            first = await handle
        assert first.stdout == "a"
        # Deployed once: a later script goes straight to its command.
        script = work.ctx.new_script()
        script.run("/bin/echo", "b")
        with trio.fail_after(60):
            await script
    sent = [e.commands for e in work.events if type(e).__name__ == "ScriptSent"]
    assert sent == [("deploy", "start"), ("run /bin/echo a",), ("run /bin/echo b",)]


async def test_implicit_init_leaves_a_deploying_script_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        work.ctx.implicit_init = True
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/echo", "c")
        with trio.fail_after(60):
            await script
    sent = [e.commands for e in work.events if type(e).__name__ == "ScriptSent"]
    assert sent == [("deploy", "start", "run /bin/echo c")]
