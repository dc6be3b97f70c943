"""Small events a :class:`WorkContext` reports through its ``emit`` callable."""

from __future__ import annotations

from pathlib import Path

import attrs

__all__ = ["CommandExecuted", "DownloadFinished", "ScriptFinished", "ScriptSent", "WorkEvent"]


@attrs.frozen
class ScriptSent:
    """A batch was accepted by the daemon; ``commands`` are the commands as text."""

    activity_id: str
    agreement_id: str
    batch_id: str
    commands: tuple[str, ...]


@attrs.frozen
class CommandExecuted:
    """One command of a batch finished (successfully or not)."""

    activity_id: str
    agreement_id: str
    index: int
    command: str
    success: bool
    exit_code: int | None
    stdout: str | None
    stderr: str | None


@attrs.frozen
class ScriptFinished:
    """A batch ended; ``ok`` is false when it failed, timed out or was cancelled.

    ``batch_id`` is ``None`` when the batch never reached the daemon."""

    activity_id: str
    agreement_id: str
    batch_id: str | None
    ok: bool


@attrs.frozen
class DownloadFinished:
    """A downloaded file was written to ``path`` on this machine."""

    activity_id: str
    path: Path


WorkEvent = ScriptSent | CommandExecuted | ScriptFinished | DownloadFinished
