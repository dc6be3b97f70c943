"""``golem_trio.work``: commands for one activity, run as batches.

:class:`WorkContext` is one activity; :class:`Script` an ordered batch of commands whose
:meth:`Script.execute` is the primitive every style builds on; :class:`Result` one command's
outcome; :func:`open_http_storage` (loopback HTTP, for LocalNet) or :func:`open_gftp_storage`
(gftp over the daemon's service bus, for the real network) serves the files that
``upload_*``/``download_*`` transfer.
See ``docs/work.md``.
"""

from golem_trio._exports import fixup_module_metadata

from ._context import WorkContext as WorkContext
from ._errors import ActivityGone as ActivityGone
from ._errors import BatchError as BatchError
from ._errors import BatchTimeoutError as BatchTimeoutError
from ._errors import CommandExecutionError as CommandExecutionError
from ._errors import CommandNotRun as CommandNotRun
from ._errors import DownloadTooLarge as DownloadTooLarge
from ._errors import TransferUnavailable as TransferUnavailable
from ._events import CommandExecuted as CommandExecuted
from ._events import DownloadFinished as DownloadFinished
from ._events import ScriptFinished as ScriptFinished
from ._events import ScriptSent as ScriptSent
from ._events import TransferProgress as TransferProgress
from ._events import WorkEvent as WorkEvent
from ._gftp import GftpStorage as GftpStorage
from ._gftp import PublishFailed as PublishFailed
from ._gftp import TransferStorage as TransferStorage
from ._gftp import open_gftp_storage as open_gftp_storage
from ._result import CommandHandle as CommandHandle
from ._result import Result as Result
from ._script import DEFAULT_DOWNLOAD_LIMIT as DEFAULT_DOWNLOAD_LIMIT
from ._script import DEFAULT_FILE_DOWNLOAD_LIMIT as DEFAULT_FILE_DOWNLOAD_LIMIT
from ._script import STREAM_OUTPUT_LIMIT as STREAM_OUTPUT_LIMIT
from ._script import Script as Script
from ._script import ScriptTarget as ScriptTarget
from ._storage import READ_TIMEOUT as READ_TIMEOUT
from ._storage import HttpStorage as HttpStorage
from ._storage import Receipt as Receipt
from ._storage import ReceiveFailed as ReceiveFailed
from ._storage import TransferCorrupted as TransferCorrupted
from ._storage import TransferTooLarge as TransferTooLarge
from ._storage import open_http_storage as open_http_storage

__all__ = [
    "DEFAULT_DOWNLOAD_LIMIT",
    "DEFAULT_FILE_DOWNLOAD_LIMIT",
    "READ_TIMEOUT",
    "STREAM_OUTPUT_LIMIT",
    "ActivityGone",
    "BatchError",
    "BatchTimeoutError",
    "CommandExecuted",
    "CommandExecutionError",
    "CommandHandle",
    "CommandNotRun",
    "DownloadFinished",
    "DownloadTooLarge",
    "GftpStorage",
    "HttpStorage",
    "PublishFailed",
    "Receipt",
    "ReceiveFailed",
    "Result",
    "Script",
    "ScriptFinished",
    "ScriptSent",
    "ScriptTarget",
    "TransferCorrupted",
    "TransferProgress",
    "TransferStorage",
    "TransferTooLarge",
    "TransferUnavailable",
    "WorkContext",
    "WorkEvent",
    "open_gftp_storage",
    "open_http_storage",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
