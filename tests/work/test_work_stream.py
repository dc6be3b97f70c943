"""Polling and following the event stream give the same results (served LocalNet, real
clock: the event stream needs real sockets)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
from _work_support import open_work

from golem_trio.localnet import Reply, scripted_runtime_factory
from golem_trio.work import CommandExecutionError, CommandNotRun, Result


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", stderr="note\n", duration_s=0.05)


def fail(args: Sequence[str]) -> Reply:
    return Reply(stdout="partial\n", stderr="boom\n", exit_code=3, duration_s=0.05)


# The deploy takes a moment, so the event stream is open before the commands that print.
RUNTIME = scripted_runtime_factory({"/bin/echo": echo, "/bin/fail": fail}, deploy_s=0.3)


async def run_both(*, stream_output: bool) -> tuple[list[Result], CommandExecutionError]:
    async with open_work(RUNTIME, serve=True, stream_output=stream_output) as work:
        script = work.ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/echo", "one")
        script.run("/bin/echo", "two")
        with trio.fail_after(30):
            results = await script
        failing = work.ctx.new_script()
        failing.run("/bin/fail")
        later = failing.run("/bin/echo", "never")
        with trio.fail_after(30):
            with pytest.raises(CommandExecutionError) as caught:
                await failing
            with pytest.raises(CommandNotRun):
                await later
        return results, caught.value


@pytest.mark.parametrize("stream_output", [False, True])
async def test_results_carry_output_and_exit_codes(stream_output: bool) -> None:
    results, error = await run_both(stream_output=stream_output)
    assert [r.stdout for r in results] == [None, None, "one\n", "two\n"]
    assert [r.stderr for r in results] == [None, None, "note\n", "note\n"]
    assert [r.exit_code for r in results] == [None, None, 0, 0]
    assert (error.exit_code, error.stdout, error.stderr) == (3, "partial\n", "boom\n")


async def test_polling_and_streaming_agree() -> None:
    polled, polled_error = await run_both(stream_output=False)
    streamed, streamed_error = await run_both(stream_output=True)
    assert streamed == polled
    assert str(streamed_error).split(" [")[0] == str(polled_error).split(" [")[0]
