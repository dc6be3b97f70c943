"""Small events a :class:`WorkContext` reports through its ``emit`` callable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs

__all__ = [
    "CommandExecuted",
    "DownloadFinished",
    "ScriptFinished",
    "ScriptSent",
    "TransferProgress",
    "WorkEvent",
]


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


@attrs.frozen
class TransferProgress:
    """Bytes of one file went between this machine and the provider, through a storage that
    can tell (gftp): ``direction`` is ``"upload"`` (the provider fetched ``done`` bytes of the
    file at ``url``, of ``total``) or ``"download"`` (the provider sent ``done`` bytes so far;
    ``total`` is known once it finished). Reported about every MiB and once at the end, when
    ``done == total``."""

    activity_id: str
    agreement_id: str
    direction: Literal["upload", "download"]
    url: str
    done: int
    total: int | None


WorkEvent = ScriptSent | CommandExecuted | ScriptFinished | DownloadFinished | TransferProgress
