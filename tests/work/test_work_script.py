"""Scripts on LocalNet with a scripted runtime: results, failures, timeouts, the old style."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from _work_support import open_work

from golem_trio.localnet import Reply, scripted_runtime_factory
from golem_trio.work import (
    ActivityGone,
    BatchTimeoutError,
    CommandExecuted,
    CommandExecutionError,
    CommandNotRun,
    Result,
    ScriptFinished,
    ScriptSent,
    TransferUnavailable,
)
from golem_trio.yagna import ServerError


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n")


def fail(args: Sequence[str]) -> Reply:
    return Reply(stdout="partial\n", stderr="boom\n", exit_code=3)


def slow(args: Sequence[str]) -> Reply:
    return Reply(stdout="slept\n", duration_s=float(args[0]))


def shell(args: Sequence[str]) -> Reply:
    # Echo back how the command was called, so tests can check the env wrapper.
    return Reply(stdout="\n".join(args))


RUNTIME = scripted_runtime_factory(
    {"/bin/echo": echo, "/bin/fail": fail, "/bin/slow": slow, "/bin/sh": shell}
)


async def test_results_come_back_in_order_with_stdout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        deployed = script.deploy()
        script.start()
        first = script.run("/bin/echo", "one")
        second = script.run("/bin/echo", "two", "2")
        with trio.fail_after(60):
            results = await script
        assert [r.index for r in results] == [0, 1, 2, 3]
        assert [r.command for r in results] == [
            "deploy",
            "start",
            "run /bin/echo one",
            "run /bin/echo two 2",
        ]
        assert all(r.success for r in results)
        assert results[2].stdout == "one\n"
        assert results[3].stdout == "two 2\n"
        assert results[3].exit_code == 0
        assert results[0].exit_code is None
        assert (await first).stdout == "one\n"
        assert await second == results[3]
        assert await deployed == results[0]
        assert script.results == results
        sent = [e for e in work.events if isinstance(e, ScriptSent)]
        executed = [e for e in work.events if isinstance(e, CommandExecuted)]
        finished = [e for e in work.events if isinstance(e, ScriptFinished)]
        assert [s.commands for s in sent] == [tuple(r.command for r in results)]
        assert [e.index for e in executed] == [0, 1, 2, 3]
        assert executed[2].stdout == "one\n"
        assert [f.ok for f in finished] == [True]
        assert finished[0].batch_id == sent[0].batch_id
        assert sent[0].activity_id == work.ctx.id


async def test_a_failing_command_raises_and_later_handles_do_not_hang(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        before = script.run("/bin/echo", "before")
        failing = script.run("/bin/fail", "--now")
        after = script.run("/bin/echo", "after")
        last = script.terminate()
        with trio.fail_after(60):
            with pytest.raises(CommandExecutionError) as caught:
                await script.execute()
            error = caught.value
            assert error.index == 3
            assert error.command == "run /bin/fail --now"
            assert error.exit_code == 3
            assert error.stderr == "boom\n"
            assert error.stdout == "partial\n"
            assert error.activity_id == work.ctx.activity_id
            assert "exit code 3" in str(error)
            assert (await before).stdout == "before\n"
            with pytest.raises(CommandExecutionError) as again:
                await failing
            assert again.value is error
            for handle in (after, last):
                with pytest.raises(CommandNotRun) as not_run:
                    await handle
                assert not_run.value.cause is error
        finished = [e for e in work.events if isinstance(e, ScriptFinished)]
        assert [f.ok for f in finished] == [False]
        with pytest.raises(RuntimeError, match="has not run successfully"):
            _ = script.results


async def test_a_batch_that_takes_too_long_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script(timeout=30)
        script.deploy()
        script.start()
        sleeping = script.run("/bin/slow", "600")
        started = trio.current_time()
        with trio.fail_after(120), pytest.raises(BatchTimeoutError) as caught:
            await script
        assert caught.value.timeout == 30
        assert 30 <= trio.current_time() - started < 31
        with pytest.raises(CommandNotRun) as not_run:
            await sleeping
        assert isinstance(not_run.value.cause, BatchTimeoutError)
        # A batch within its timeout is fine.
        quick = work.ctx.new_script(timeout=30)
        quick.run("/bin/echo", "hi")
        with trio.fail_after(700):
            # The earlier batch still runs on the provider: wait it out first.
            await trio.sleep(600)
            (result,) = await quick
        assert result.stdout == "hi\n"


async def test_old_style_pending_script_and_commit(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        ctx = work.ctx
        ctx.deploy()
        ctx.start()
        hello = ctx.run("/bin/echo", "hello")
        script = ctx.commit()
        assert script.commands == ("deploy", "start", "run /bin/echo hello")
        assert len(ctx.pending) == 0
        with trio.fail_after(60):
            results = await script
        assert results[-1].stdout == "hello\n"
        assert (await hello).stdout == "hello\n"
        ctx.run("/bin/echo", "again")
        with trio.fail_after(60):
            (again,) = await ctx.commit(timeout=10)
            assert again.stdout == "again\n"
            assert await ctx.commit() == []


async def test_an_empty_script_is_a_no_op(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        with trio.fail_after(10):
            assert await work.ctx.commit() == []
            assert await work.ctx.new_script().execute() == []
        assert work.events == []


async def test_a_script_runs_once(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        with trio.fail_after(60):
            await script
            with pytest.raises(RuntimeError, match="already executed"):
                await script
        with pytest.raises(RuntimeError, match="already executed"):
            script.start()


async def test_run_with_env_wraps_the_command_in_a_shell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        handle = script.run("/bin/echo", "x y", env={"GREETING": "it's me"})
        with trio.fail_after(60):
            await script
        result = await handle
        assert result.command == "run /bin/echo x y"
        flag, wrapper, entry, arg = result.stdout.split("\n") if result.stdout else []
        assert flag == "-c"
        assert wrapper == 'export GREETING=\'it\'"\'"\'s me\'; exec "$0" "$@"'
        assert (entry, arg) == ("/bin/echo", "x y")
        other = work.ctx.new_script()
        with pytest.raises(ValueError, match="not a valid variable name"):
            other.run("/bin/echo", env={"BAD-NAME": "1"})


async def test_transfers_need_a_storage(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        with pytest.raises(TransferUnavailable, match="no storage"):
            script.upload_bytes(b"x", "/golem/input/x")
        with pytest.raises(TransferUnavailable, match="download_file"):
            work.ctx.download_file("/golem/output/x", "x")
        with pytest.raises(TransferUnavailable):
            work.ctx.send_json({}, "/golem/input/x.json")
        assert len(script) == 0
        assert len(work.ctx.pending) == 0


async def test_an_activity_killed_mid_batch_is_gone(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        sleeping = script.run("/bin/slow", "600")
        after = script.run("/bin/echo", "never")

        async def kill() -> None:
            await trio.sleep(10)
            work.net.faults.kill_activity(work.ctx.activity_id)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill)
                with pytest.raises(ActivityGone) as caught:
                    await script
        assert "exe-unit died" in str(caught.value)
        with pytest.raises(ActivityGone):
            await sleeping
        with pytest.raises(CommandNotRun):
            await after
        # A new batch on the dead activity is refused the same way.
        dead = work.ctx.new_script()
        dead.run("/bin/echo", "x")
        with trio.fail_after(60), pytest.raises(ActivityGone):
            await dead
        state = await work.ctx.get_raw_state()
        assert not state.alive


async def test_a_daemon_error_propagates_and_resolves_the_handles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        # A 500: the daemon's own failure (a 503 would be sent again: nothing was done).
        work.net.faults.daemon_fault("exec", "daemon-5xx", value=500)
        script = work.ctx.new_script()
        handle = script.deploy()
        with trio.fail_after(60):
            with pytest.raises(ServerError):
                await script
            with pytest.raises(CommandNotRun) as not_run:
                await handle
        assert isinstance(not_run.value.cause, ServerError)
        finished = [e for e in work.events if isinstance(e, ScriptFinished)]
        assert [(f.batch_id, f.ok) for f in finished] == [(None, False)]


async def test_cancelling_execute_resolves_the_handles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        sleeping = script.run("/bin/slow", "600")
        with trio.move_on_after(20) as scope:
            await script
        assert scope.cancelled_caught
        with trio.fail_after(1), pytest.raises(CommandNotRun) as not_run:
            await sleeping
        assert isinstance(not_run.value.cause, trio.Cancelled)


async def test_a_handle_awaited_elsewhere_resolves_as_its_command_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        first = script.run("/bin/slow", "5")
        script.run("/bin/slow", "100")
        seen: list[tuple[float, Result]] = []

        async def watch() -> None:
            seen.append((trio.current_time(), await first))

        started = trio.current_time()
        with trio.fail_after(200):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await script
        ((when, result),) = seen
        assert result.stdout == "slept\n"
        assert when - started < 50


async def test_usage_and_state(autojump_clock: trio.testing.MockClock) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/slow", "30")
        with trio.fail_after(60):
            await script
        usage = await work.ctx.get_usage()
        assert usage.current_usage is not None
        assert max(usage.current_usage) >= 30
        assert (await work.ctx.get_raw_state()).alive


async def test_a_terminate_whose_results_answer_500_ends_on_the_activity_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once a ``terminate`` command ran, a real daemon answers the batch's results with 500
    (the exe-unit is gone). The script asks the activity's state instead of retrying the 500:
    one results request per poll, and the terminate counts as done."""
    async with open_work(RUNTIME) as work:
        setup = work.ctx.new_script()
        setup.deploy()
        setup.start()
        with trio.fail_after(60):
            await setup
        work.net.faults.daemon_fault("getExecBatchResults", value=500, count=50)
        script = work.ctx.new_script()
        last = script.terminate()
        with trio.fail_after(60):
            (result,) = await script
        assert result.success
        assert (await last).message == "terminated"
        fired = [f for f in work.net.faults.fired if f.target == "getExecBatchResults"]
        state = await work.yagna.activity.get_state(work.ctx.activity_id)
        assert not state.alive
        # Each poll is one request: the client does not repeat a 500 here (it would, five
        # times, for any other command; see the next test).
        assert 1 <= len(fired) <= 3, fired


async def test_a_500_on_a_running_commands_results_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        echoed = script.run("/bin/echo", "still here")
        work.net.faults.daemon_fault("getExecBatchResults", value=500, count=3)
        with trio.fail_after(60):
            await script
        assert (await echoed).stdout == "still here\n"
        fired = [f for f in work.net.faults.fired if f.target == "getExecBatchResults"]
        assert len(fired) == 3


async def test_deploy_and_start_come_with_the_next_commands_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nothing waits on ``deploy`` or ``start`` alone: one result poll, for the ``run``, brings
    all three (results are cumulative)."""
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        deployed = script.deploy()
        script.start()
        script.run("/bin/echo", "one")
        before = work.net.requests_served["get_exec_batch_results"]
        with trio.fail_after(60):
            results = await script
        assert [r.command for r in results] == ["deploy", "start", "run /bin/echo one"]
        assert results[2].stdout == "one\n"
        assert await deployed == results[0]
        assert work.net.requests_served["get_exec_batch_results"] - before == 1


async def test_a_slow_deploy_falls_back_to_one_poll_per_command(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A poll that skipped ahead and got nothing within its wait is not repeated: the next
    polls ask for one command at a time, so a result that comes is taken as it comes."""
    slow_deploy = scripted_runtime_factory({"/bin/slow": slow}, deploy_s=12.0)
    async with open_work(slow_deploy) as work:
        script = work.ctx.new_script()
        deployed = script.deploy()
        script.start()
        slept = script.run("/bin/slow", "30")
        started = trio.current_time()
        seen: list[float] = []

        async def watch() -> None:
            await deployed
            seen.append(trio.current_time() - started)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await script
        assert (await slept).stdout == "slept\n"
        # The deploy resolved as it finished (12 s in), not with the run's result (42 s in).
        (when,) = seen
        assert 12.0 <= when < 13.0


async def test_a_failed_deploy_is_reported_by_the_poll_that_skipped_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_work(RUNTIME) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/echo", "ready")
        with trio.fail_after(60):
            await script
        # A second deploy on a deployed activity fails (only ``start`` may follow it).
        again = work.ctx.new_script()
        again.deploy()
        after = again.run("/bin/echo", "never")
        started = trio.current_time()
        with trio.fail_after(60), pytest.raises(CommandExecutionError) as caught:
            await again
        assert caught.value.index == 0
        assert trio.current_time() - started < 1.0
        with pytest.raises(CommandNotRun):
            await after
