"""A scripted shell: the few commands most requestor apps start with, answered without a sandbox.

LocalNet serves real commands with the local runtime (:mod:`._local_runtime`), which needs
bubblewrap. Where it is missing, :func:`shell_runtime_factory` gives each activity a
:class:`~._runtime.ScriptedRuntime` that knows the commands an app's first steps usually run,
so a yapapi or golem-core example (``/bin/sh -c "echo started; date"``) works unchanged:

``sh -c SCRIPT`` (and ``bash -c``)
    A script of simple commands joined by ``;``, ``&&``, ``||`` or new lines, with shell
    quoting. Anything more (pipes, redirections, ``$`` expansions, background jobs, command
    substitution) is answered with exit code 2 and a message saying the scripted shell does not
    support it.
``echo [-n] WORD...``, ``sleep SECONDS`` (suffixes ``s``, ``m``, ``h``; the sleep runs on trio's
clock and counts as CPU time), ``date [+FORMAT]`` (UTC), ``cat`` (with no file: empty input;
files do not exist here), ``true``, ``false`` and, inside a script, ``exit [N]``.

Each is known under its bare name and under ``/bin/`` and ``/usr/bin/``. Any other command
answers exit code 127, ``command not found``.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Callable, Mapping, Sequence

import attrs

from ._runtime import Reply, RuntimeContext, ScriptedRuntime

__all__ = ["SHELL_COMMANDS", "run_shell", "shell_runtime_factory"]

#: Exit codes as a POSIX shell gives them.
_NOT_FOUND, _MISUSE = 127, 2
#: Characters with a meaning the scripted shell does not implement, outside quotes and inside
#: double quotes (where only ``$``, backquote and backslash are special).
_SPECIAL = frozenset("<>`$(){}*?[]~\\")
_SPECIAL_IN_DOUBLE = frozenset("`$\\")
_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@attrs.frozen
class _Outcome:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    duration_s: float = 0.0


class _Unsupported(Exception):
    """Shell syntax the scripted shell does not implement."""


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _echo(args: Sequence[str]) -> _Outcome:
    newline = "\n"
    if args and args[0] == "-n":
        args, newline = args[1:], ""
    return _Outcome(stdout=" ".join(args) + newline)


def _sleep(args: Sequence[str]) -> _Outcome:
    if not args:
        return _Outcome(stderr="sleep: missing operand\n", exit_code=1)
    total = 0.0
    for arg in args:
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smh]?)", arg)
        if match is None:
            return _Outcome(stderr=f"sleep: invalid time interval '{arg}'\n", exit_code=1)
        total += float(match[1]) * _SECONDS[match[2]]
    return _Outcome(duration_s=total)


def _date(args: Sequence[str]) -> _Outcome:
    now = dt.datetime.now(dt.UTC)
    if not args:
        return _Outcome(stdout=now.strftime("%a %b %e %H:%M:%S UTC %Y") + "\n")
    if len(args) == 1 and args[0].startswith("+"):
        return _Outcome(stdout=now.strftime(args[0][1:]) + "\n")
    message = f"date: the scripted shell supports only +FORMAT, not {shlex.join(args)}\n"
    return _Outcome(stderr=message, exit_code=1)


def _cat(args: Sequence[str]) -> _Outcome:
    missing = [arg for arg in args if arg != "-"]
    if not missing:
        return _Outcome()
    errors = "".join(f"cat: {name}: No such file or directory\n" for name in missing)
    return _Outcome(stderr=errors, exit_code=1)


_BUILTINS: dict[str, Callable[[Sequence[str]], _Outcome]] = {
    "echo": _echo,
    "sleep": _sleep,
    "date": _date,
    "cat": _cat,
    "true": lambda args: _Outcome(),
    "false": lambda args: _Outcome(exit_code=1),
}


def _unsupported(what: str) -> _Outcome:
    return _Outcome(
        stderr=(
            f"sh: {what} is not supported by LocalNet's scripted shell (only simple commands "
            f"joined by ; && ||); serve LocalNet with the local runtime for a real shell\n"
        ),
        exit_code=_MISUSE,
    )


def _tokens(script: str) -> list[tuple[str, bool]]:
    """``script`` as ``(text, is_operator)`` tokens: words with their quotes removed, and the
    operators ``;``, new line, ``&&`` and ``||``. :class:`_Unsupported` for
    the first piece of syntax the scripted shell does not implement; ValueError for an
    unclosed quote."""
    tokens: list[tuple[str, bool]] = []
    word: list[str] | None = None  # None: between words
    quote = ""
    at = 0
    while at < len(script):
        char = script[at]
        at += 1
        if quote:
            if char == quote:
                quote = ""
            elif quote == '"' and char in _SPECIAL_IN_DOUBLE:
                raise _Unsupported(repr(char))
            else:
                assert word is not None
                word.append(char)
            continue
        if char in " \t\n;&|#":
            if char == "#" and word is not None:
                word.append(char)  # a # inside a word is no comment
                continue
            if word is not None:
                tokens.append(("".join(word), False))
                word = None
            if char == "#":
                end = script.find("\n", at)
                at = len(script) if end < 0 else end
            elif char in ";\n":
                if script[at : at + 1] == ";" and char == ";":
                    raise _Unsupported("';;'")
                tokens.append((char, True))
            elif char in "&|":
                if script[at : at + 1] != char:
                    raise _Unsupported(repr(char))
                at += 1
                tokens.append((char * 2, True))
            continue
        if char in _SPECIAL:
            raise _Unsupported(repr(char))
        if word is None:
            word = []
        if char in "'\"":
            quote = char
        else:
            word.append(char)
    if quote:
        raise ValueError(f"no closing quotation ({quote})")
    if word is not None:
        tokens.append(("".join(word), False))
    return tokens


def _command(words: Sequence[str]) -> _Outcome:
    name = words[0].rsplit("/", 1)[-1] if words[0].startswith("/") else words[0]
    if name == "exit":
        code = 0
        if len(words) > 1:
            try:
                code = int(words[1]) & 0xFF
            except ValueError:
                return _Outcome(stderr=f"sh: exit: Illegal number: {words[1]}\n", exit_code=2)
        raise _Exit(code)
    if name in ("sh", "bash"):
        return _shell(words[1:])
    builtin = _BUILTINS.get(name)
    if builtin is None:
        return _Outcome(stderr=f"sh: {words[0]}: not found\n", exit_code=_NOT_FOUND)
    return builtin(words[1:])


def _script(script: str) -> _Outcome:
    """Run ``script``: simple commands joined by ``;``, ``&&`` and ``||``."""
    try:
        tokens = _tokens(script)
    except _Unsupported as exc:
        return _unsupported(str(exc))
    except ValueError as exc:  # unbalanced quotes
        return _Outcome(stderr=f"sh: syntax error: {exc}\n", exit_code=_MISUSE)
    stdout, stderr, duration, status = [], [], 0.0, 0
    words: list[str] = []
    skip = False  # the next command is skipped by && or ||
    for text, is_operator in [*tokens, ("\n", True)]:
        if not is_operator:
            words.append(text)
            continue
        if not words:
            if text != "\n":  # only empty lines may be empty
                return _Outcome(stderr=f"sh: syntax error near {text!r}\n", exit_code=_MISUSE)
            continue
        if not skip:
            try:
                outcome = _command(words)
            except _Exit as exc:
                status = exc.code
                break
            stdout.append(outcome.stdout)
            stderr.append(outcome.stderr)
            duration += outcome.duration_s
            status = outcome.exit_code
        words = []
        skip = (text == "&&" and status != 0) or (text == "||" and status == 0)
    return _Outcome("".join(stdout), "".join(stderr), status, duration)


def _shell(args: Sequence[str]) -> _Outcome:
    if len(args) >= 2 and args[0] == "-c":
        return _script(args[1])
    if not args:
        return _Outcome()  # no script and no input: nothing to do
    return _unsupported(f"sh {shlex.join(args)}")


def run_shell(entry_point: str, args: Sequence[str]) -> Reply:
    """What the scripted shell answers for ``entry_point`` with ``args``."""
    try:
        outcome = _command([entry_point, *args])
    except _Exit as exc:
        outcome = _Outcome(exit_code=exc.code)
    return Reply(outcome.stdout, outcome.stderr, outcome.exit_code, outcome.duration_s)


def _entry(name: str) -> Callable[[Sequence[str]], Reply]:
    return lambda args: run_shell(name, args)


#: Every entry point the scripted shell answers.
SHELL_COMMANDS: Mapping[str, Callable[[Sequence[str]], Reply]] = {
    f"{prefix}{name}": _entry(name)
    for name in ("sh", "bash", *_BUILTINS)
    for prefix in ("", "/bin/", "/usr/bin/")
}


def shell_runtime_factory(**delays: float) -> Callable[[RuntimeContext], ScriptedRuntime]:
    """A runtime factory giving each activity a :class:`~._runtime.ScriptedRuntime` that
    answers :data:`SHELL_COMMANDS`; ``delays`` as for :class:`~._runtime.ScriptedRuntime`."""

    def make(context: RuntimeContext) -> ScriptedRuntime:
        return ScriptedRuntime(SHELL_COMMANDS, **delays)

    return make
