"""The work context: one activity, the commands sent to it, and what it reports."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..yagna import ActivityState, ActivityUsage, YagnaClient
from ._gftp import TransferStorage
from ._result import CommandHandle
from ._script import DEFAULT_DOWNLOAD_LIMIT, DEFAULT_FILE_DOWNLOAD_LIMIT, Script

__all__ = ["WorkContext"]

logger = logging.getLogger("golem_trio.work")


class WorkContext:
    """One activity on one provider, as a handler sees it.

    Three styles drive it, all on :meth:`Script.execute`:

    * trio-native: build a script and await it (or its handles)::

          script = ctx.new_script(timeout=60)
          stats = script.run("/golem/run/x.py", "--stats")
          await script
          print((await stats).stdout)

    * yapapi's Script style in a generator handler: ``yield script``.
    * yapapi's old style: ``ctx.run(...)`` and the other command methods append to the
      context's pending script, ``ctx.commit()`` hands it over (and starts a new one).

    ``storage`` (an :class:`HttpStorage` or a :class:`GftpStorage`) serves and receives
    transferred files (without it, transfer methods raise :class:`TransferUnavailable`);
    ``emit`` receives the events of :mod:`golem_trio.work` (``ScriptSent``,
    ``CommandExecuted``, ``ScriptFinished``, ``DownloadFinished``, ``TransferProgress``);
    ``stream_output`` follows each batch's event stream too; ``deploy_args`` are the defaults
    of every ``deploy``; ``implicit_init`` deploys and starts the activity before the first
    script that does not (the engine sets it, so a service's ``start`` need not deploy).
    """

    def __init__(
        self,
        yagna: YagnaClient,
        *,
        activity_id: str,
        agreement_id: str,
        provider_id: str,
        provider_name: str | None = None,
        storage: TransferStorage | None = None,
        emit: Callable[[object], None] | None = None,
        stream_output: bool = False,
        deploy_args: Mapping[str, Any] | None = None,
        implicit_init: bool = False,
    ) -> None:
        self.yagna = yagna
        #: Deploy and start the activity before the first script that does not deploy it.
        self.implicit_init = implicit_init
        self._deployed = False
        self._activity_id = activity_id
        self._agreement_id = agreement_id
        self._provider_id = provider_id
        self._provider_name = provider_name
        self.storage = storage
        self._emit_to = emit
        self.stream_output = stream_output
        self.deploy_args: Mapping[str, Any] = dict(deploy_args or {})
        self._pending = self.new_script()

    async def _before(self, script: Script) -> None:
        """Called by :meth:`Script.execute` before it sends a batch: with ``implicit_init``,
        the first script that does not deploy is preceded by ``deploy`` and ``start``."""
        if not self.implicit_init or self._deployed:
            await trio.lowlevel.checkpoint()
            return
        self._deployed = True
        if script.deploys:
            await trio.lowlevel.checkpoint()
            return
        init = self.new_script()
        init.deploy()
        init.start()
        try:
            await init.execute()
        except BaseException:
            self._deployed = False
            raise

    def __repr__(self) -> str:
        who = self._provider_name or self._provider_id
        return f"<WorkContext activity={self._activity_id} provider={who}>"

    @property
    def id(self) -> str:
        """The activity id (yapapi's name)."""
        return self._activity_id

    @property
    def activity_id(self) -> str:
        return self._activity_id

    @property
    def agreement_id(self) -> str:
        return self._agreement_id

    @property
    def provider_id(self) -> str:
        return self._provider_id

    @property
    def provider_name(self) -> str | None:
        return self._provider_name

    def _where(self) -> dict[str, str | None]:
        return {
            "activity_id": self._activity_id,
            "agreement_id": self._agreement_id,
            "provider_id": self._provider_id,
            "provider_name": self._provider_name,
        }

    def _emit(self, event: object) -> None:
        if self._emit_to is None:
            return
        try:
            self._emit_to(event)
        except Exception:
            # A broken consumer must not break the batch it is told about.
            logger.exception(
                "event consumer failed on %s",
                type(event).__name__,
                extra={"activity_id": self._activity_id, "agreement_id": self._agreement_id},
            )

    # --- scripts ------------------------------------------------------------------------------

    def new_script(self, timeout: float | None = None, wait_for_results: bool = True) -> Script:
        """A new, empty :class:`Script` for this activity."""
        return Script(self, timeout=timeout, wait_for_results=wait_for_results)

    def commit(self, timeout: float | None = None) -> Script:
        """Hand over the pending script (what ``ctx.run(...)`` and friends built) and start a
        new one. An empty pending script is allowed: it runs as a no-op returning ``[]``."""
        script = self._pending
        if timeout is not None:
            if not timeout > 0:
                raise ValueError("timeout must be positive (or None)")
            script.timeout = timeout
        self._pending = self.new_script()
        return script

    @property
    def pending(self) -> Script:
        """The script ``ctx.run(...)`` and the other command methods append to."""
        return self._pending

    # yapapi's old style: each appends to the pending script.

    def deploy(self, **kwargs: Any) -> CommandHandle:
        """See :meth:`Script.deploy`."""
        return self._pending.deploy(**kwargs)

    def start(self, *args: str) -> CommandHandle:
        """See :meth:`Script.start`."""
        return self._pending.start(*args)

    def run(self, cmd: str, *args: str, env: Mapping[str, str] | None = None) -> CommandHandle:
        """See :meth:`Script.run`."""
        return self._pending.run(cmd, *args, env=env)

    def upload_file(self, src_path: str | os.PathLike[str], dst: str) -> CommandHandle:
        """See :meth:`Script.upload_file`."""
        return self._pending.upload_file(src_path, dst)

    def upload_bytes(self, data: bytes, dst: str) -> CommandHandle:
        """See :meth:`Script.upload_bytes`."""
        return self._pending.upload_bytes(data, dst)

    def upload_json(self, obj: Any, dst: str) -> CommandHandle:
        """See :meth:`Script.upload_json`."""
        return self._pending.upload_json(obj, dst)

    send_file = upload_file
    send_bytes = upload_bytes
    send_json = upload_json

    def download_file(
        self,
        src: str,
        dst_path: str | os.PathLike[str],
        limit: int | None = DEFAULT_FILE_DOWNLOAD_LIMIT,
    ) -> CommandHandle:
        """See :meth:`Script.download_file`."""
        return self._pending.download_file(src, dst_path, limit)

    def download_bytes(self, src: str, limit: int = DEFAULT_DOWNLOAD_LIMIT) -> CommandHandle:
        """See :meth:`Script.download_bytes`."""
        return self._pending.download_bytes(src, limit)

    def download_json(self, src: str, limit: int = DEFAULT_DOWNLOAD_LIMIT) -> CommandHandle:
        """See :meth:`Script.download_json`."""
        return self._pending.download_json(src, limit)

    def terminate(self) -> CommandHandle:
        """See :meth:`Script.terminate`."""
        return self._pending.terminate()

    # --- the activity -------------------------------------------------------------------------

    async def get_raw_state(self) -> ActivityState:
        """The activity's state as the daemon reports it.

        Cancellation: a checkpoint; a query only, nothing to undo.
        """
        return await self.yagna.activity.get_state(self._activity_id)

    async def get_usage(self) -> ActivityUsage:
        """The activity's usage counters (in the order of the offer's usage vector).

        Cancellation: a checkpoint; a query only, nothing to undo.
        """
        return await self.yagna.activity.get_usage(self._activity_id)
