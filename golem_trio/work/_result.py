"""Per-command results and the handles that await them."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import attrs
import trio

__all__ = ["CommandHandle", "Result"]


@attrs.frozen
class Result:
    """The outcome of one command of a batch.

    ``command`` is the command as text (``run /golem/run/x.py --stats``); ``exit_code`` is the
    exit code of a ``run`` (``None`` for other commands, or where the daemon did not say);
    ``stdout``/``stderr`` the captured output; ``message`` what the provider said; ``data`` the
    bytes of a ``download_bytes``/``download_json``.
    """

    index: int
    command: str
    success: bool
    exit_code: int | None
    stdout: str | None
    stderr: str | None
    message: str | None
    data: bytes | None = None

    @property
    def json(self) -> Any:
        """``data`` decoded as JSON (for ``download_json``); ``ValueError`` if there is none
        or it is not JSON."""
        if self.data is None:
            raise ValueError(f"command {self.index} ({self.command}) has no downloaded data")
        return json.loads(self.data)


class CommandHandle:
    """One command of a :class:`Script`: ``await handle`` gives its :class:`Result` once the
    batch ran it, or raises what stopped it (:class:`CommandExecutionError` for the command
    that failed, :class:`CommandNotRun` for the commands after it or when the batch could not
    finish). A handle always resolves once :meth:`Script.execute` returns or raises.

    Awaiting a handle is a checkpoint; cancelling it only stops the waiting.
    """

    def __init__(self, index: int, command: str) -> None:
        self.index = index
        self.command = command
        self._event = trio.Event()
        self._result: Result | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("failed" if self._error else "ok")
        return f"<CommandHandle {self.index} {self.command!r} {state}>"

    @property
    def done(self) -> bool:
        """Whether the handle has resolved."""
        return self._event.is_set()

    def result(self) -> Result:
        """The result now: raises what the command raised, or ``RuntimeError`` if the command
        has not finished yet."""
        if not self._event.is_set():
            raise RuntimeError(f"command {self.index} ({self.command}) has not finished yet")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def wait(self) -> Result:
        """Wait for the command's result (see the class docstring)."""
        await self._event.wait()
        return self.result()

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()

    def _resolve(self, result: Result) -> None:
        if not self._event.is_set():
            self._result = result
            self._event.set()

    def _fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()
