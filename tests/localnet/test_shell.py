"""LocalNet's scripted shell: what it answers, and that it agrees with a real ``/bin/sh`` on
everything it supports."""

from __future__ import annotations

import subprocess

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_trio.localnet import SHELL_COMMANDS, RuntimeContext, shell_runtime_factory
from golem_trio.localnet.providers import run_shell

CONTEXT = RuntimeContext(activity_id="a", agreement_id="g", requestor_id="r", provider_id="p")


def real_sh(script: str) -> tuple[str, int]:
    done = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout, done.returncode


words = st.text(alphabet="abcxyz019 ;&|'\"-.", min_size=0, max_size=8).map(
    lambda text: "'" + text.replace("'", "") + "'"
)
simple = st.one_of(
    st.just("true"),
    st.just("false"),
    st.builds(lambda ws: " ".join(["echo", *ws]), st.lists(words, max_size=3)),
    st.builds(lambda ws: " ".join(["/bin/echo", "-n", *ws]), st.lists(words, max_size=2)),
    st.builds(lambda code: f"exit {code}", st.integers(0, 300)),
    st.just("cat"),
    st.just("sleep 0"),
)
scripts = st.builds(
    lambda first, rest: first + "".join(op + command for op, command in rest),
    simple,
    st.lists(
        st.tuples(st.sampled_from(["; ", " && ", " || ", "\n", "\n\n  ", " # note\n"]), simple),
        max_size=5,
    ),
)


@settings(max_examples=150, deadline=None)
@given(scripts)
def test_it_agrees_with_a_real_shell(script: str) -> None:
    reply = run_shell("/bin/sh", ["-c", script])
    assert (reply.stdout, reply.exit_code) == real_sh(script)


@pytest.mark.parametrize(
    ("argv", "stdout", "exit_code"),
    [
        (["/bin/sh", "-c", "echo started; date +%%"], "started\n%\n", 0),
        (["sh", "-c", "echo 'a (b) $x'"], "a (b) $x\n", 0),
        (["/usr/bin/echo", "-n", "x"], "x", 0),
        (["bash", "-c", "false && echo no || echo yes"], "yes\n", 0),
        (["/bin/sh", "-c", "exit 7; echo never"], "", 7),
        (["/bin/true"], "", 0),
        (["/bin/false"], "", 1),
        (["cat"], "", 0),
    ],
)
def test_the_commands_it_knows(argv: list[str], stdout: str, exit_code: int) -> None:
    reply = run_shell(argv[0], argv[1:])
    assert (reply.stdout, reply.exit_code) == (stdout, exit_code)


@pytest.mark.parametrize(
    ("script", "what"),
    [
        ("echo a | cat", "'|'"),
        ("echo a > /golem/out", "'>'"),
        ("echo $HOME", "'$'"),
        ('echo "$HOME"', "'$'"),
        ("echo `date`", "'`'"),
        ("sleep 1 &", "'&'"),
        ("ls *", "'*'"),
    ],
)
def test_what_it_does_not_support_is_said(script: str, what: str) -> None:
    reply = run_shell("/bin/sh", ["-c", script])
    assert reply.exit_code == 2
    assert reply.stdout == ""
    assert f"sh: {what} is not supported by LocalNet's scripted shell" in str(reply.stderr)


def test_unknown_commands_and_bad_arguments() -> None:
    assert run_shell("/usr/bin/ls", []).exit_code == 127
    assert run_shell("/bin/sh", ["-c", "ls"]).stderr == "sh: ls: not found\n"
    assert run_shell("sleep", ["soon"]).exit_code == 1
    assert run_shell("cat", ["/golem/x"]).stderr == "cat: /golem/x: No such file or directory\n"
    assert run_shell("/bin/sh", ["-c", "echo 'open"]).exit_code == 2
    assert run_shell("/bin/sh", ["-c", "; && true"]).exit_code == 2
    assert run_shell("/bin/sh", ["-c", "; echo a"]).exit_code == real_sh("; echo a")[1] == 2
    assert run_shell("/bin/sh", ["-c", "echo a;"]).stdout == "a\n"


def test_every_command_is_known_bare_and_under_bin_and_usr_bin() -> None:
    for name in ("sh", "bash", "echo", "sleep", "date", "cat", "true", "false"):
        assert {name, f"/bin/{name}", f"/usr/bin/{name}"} <= set(SHELL_COMMANDS)


async def test_sleep_runs_on_trios_clock_and_counts_as_cpu(autojump_clock: trio.abc.Clock) -> None:
    runtime = shell_runtime_factory()(CONTEXT)
    await runtime.deploy({})
    start = trio.current_time()
    outcome = await runtime.run("/bin/sh", ["-c", "sleep 1.5; sleep 1m && echo done"], None)
    assert outcome.stdout == b"done\n"
    assert trio.current_time() - start == pytest.approx(61.5)
    cpu, duration = await runtime.usage()
    assert cpu == pytest.approx(61.5)
    assert duration == pytest.approx(61.5)
