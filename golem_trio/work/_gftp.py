"""File transfer storage over gftp: the requestor's daemon serves the files on its service bus.

A provider on the network cannot reach a loopback HTTP server, but it can reach the requestor's
node through the daemons. :class:`GftpStorage` binds one bus service per file on the
requestor daemon's GSB (``/public/gftp/<name>``) and hands out ``gftp://<node id>/<name>``
URLs; the provider's exe-unit calls them through its own daemon (``/net/<node id>/gftp/...``).
See :mod:`golem_trio.gsb` for the messages.

- A published file (or blob) is named by the SHA3-256 of its content, computed when it is
  published, by reading the file in blocks. Chunks are read from disk when asked for, at most
  :data:`MAX_CHUNK` bytes each and :data:`SERVE_LIMIT` at once, through blocks of
  :data:`READ_AHEAD` bytes (:data:`CACHED_BLOCKS` kept per file), so memory stays bounded
  whatever the file's size. Publishing the same content twice binds it once and keeps it
  until both are unpublished.
- A receipt is named by 65 random letters and digits. Its ``UploadChunk`` calls are written
  at their offsets (consecutive ones gathered up to :data:`WRITE_BEHIND` bytes) into a
  temporary file beside the target (or into memory), at most
  ``limit`` bytes (more fails the receipt with :class:`TransferTooLarge`); the first caller
  owns the receipt and any other is refused. ``UploadFinished`` with a hash checks it
  (a mismatch fails the receipt with :class:`TransferCorrupted`); then the file is renamed
  into place. A receipt whose sender goes quiet for ``read_timeout`` seconds fails. No
  partial file remains after a failure, an abort or a cancellation.
- Every service is unbound as soon as it is no longer needed: when a receipt finished (well
  or not), when it is forgotten, when a file is unpublished, and when the storage closes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import string
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from .._errors import GolemError
from ..gsb import (
    GetChunk,
    GetMetadata,
    GftpChunk,
    GftpMetadata,
    GsbBus,
    GsbError,
    UploadChunk,
    UploadFinished,
    decode_gftp_request,
    gftp_digest,
    gftp_err,
    gftp_service_id,
    gftp_url,
    open_gsb,
    parse_gftp_url,
)
from ._errors import TransferUnavailable
from ._storage import READ_TIMEOUT, HttpStorage, Receipt

__all__ = [
    "MAX_CHUNK",
    "PROGRESS_STEP",
    "SERVE_LIMIT",
    "GftpStorage",
    "Progress",
    "PublishFailed",
    "TransferStorage",
    "open_gftp_storage",
]

logger = logging.getLogger("golem_trio.work.storage")

#: Largest chunk a ``GetChunk`` may ask for (exe-units ask for 40 KiB).
MAX_CHUNK: Final = 4 * 1024 * 1024
#: Chunk reads served at once, for all files together.
SERVE_LIMIT: Final = 16
#: Bytes between two progress reports of one file.
PROGRESS_STEP: Final = 1024 * 1024
#: Seconds unbinding a service may take (shielded) when a transfer ends.
UNBIND_BOUND: Final = 5.0
#: Bytes read at once while hashing a file to publish.
HASH_BLOCK: Final = 1024 * 1024
#: Bytes read from disk at once for the chunks of a published file (one thread hop serves
#: many 40 KiB chunks), and how many such blocks each file keeps.
READ_AHEAD: Final = 1024 * 1024
CACHED_BLOCKS: Final = 2
#: Bytes of consecutive chunks gathered before they are written to disk at once.
WRITE_BEHIND: Final = 1024 * 1024

_RECEIPT_ALPHABET = string.ascii_letters + string.digits

#: ``progress(done, total)``: bytes moved so far, and the size once known.
Progress = Callable[[int, int | None], None]


class PublishFailed(GolemError):
    """A file could not be offered over gftp: the daemon's bus refused its service (another
    program on the daemon offers the same content), or the bus is gone."""


def _hash_fd(fd: int) -> tuple[int, str]:
    digest = gftp_digest()
    offset = 0
    while block := os.pread(fd, HASH_BLOCK, offset):
        digest.update(block)
        offset += len(block)
    return offset, digest.hexdigest()


def _hash_bytes(data: bytes | bytearray) -> str:
    digest = hashlib.sha3_256()
    digest.update(data)
    return digest.hexdigest()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _report(progress: list[Progress], done: int, total: int | None) -> None:
    for callback in progress:
        try:
            callback(done, total)
        except Exception:
            logger.exception("a transfer progress callback failed")


@attrs.define(eq=False)
class _Published:
    """One bound file or blob: its name (the content's hash), size and source."""

    name: str
    size: int
    path: Path | None
    data: bytes | None
    fd: int | None
    users: int = 1
    served: int = 0
    reported: int = 0
    readers: int = 0
    closed: bool = False
    progress: list[Progress] = attrs.field(factory=list)
    #: The last blocks read from the file, by offset (at most :data:`CACHED_BLOCKS`).
    cache: dict[int, bytes] = attrs.field(factory=dict)
    lock: trio.Lock = attrs.field(factory=trio.Lock)

    def release_fd(self) -> None:
        if self.fd is not None and self.closed and self.readers == 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


@attrs.define(eq=False)
class _Upload:
    """One receipt's state while chunks arrive."""

    receipt: Receipt
    progress: Progress | None
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    caller: str | None = None
    buffer: bytearray | None = None
    part: Path | None = None
    fd: int | None = None
    #: Consecutive chunks not written yet, starting at ``pending_at``.
    pending: bytearray = attrs.field(factory=bytearray)
    pending_at: int = 0
    digest: Any = attrs.field(factory=gftp_digest)
    in_order: bool = True
    size: int = 0
    reported: int = 0
    last_seen: float = 0.0
    bound: bool = True


class GftpStorage:
    """A storage serving files over gftp; get one from :func:`open_gftp_storage`.

    It offers what :class:`~golem_trio.work.HttpStorage` offers, but every method is a
    coroutine (publishing reads and hashes the file, and binding talks to the bus):
    :meth:`publish_file`, :meth:`publish_bytes`, :meth:`unpublish`, :meth:`receive` and
    :meth:`forget`, with the same :class:`~golem_trio.work.Receipt`. ``node_id`` is the
    requestor's node, which the URLs name.
    """

    def __init__(
        self,
        bus: GsbBus,
        node_id: str,
        nursery: trio.Nursery,
        *,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        if not read_timeout > 0:
            raise ValueError(f"read_timeout must be > 0, got {read_timeout!r}")
        self.bus = bus
        self.node_id = node_id.lower()
        self.read_timeout = read_timeout
        self._nursery = nursery
        self._published: dict[str, _Published] = {}
        self._uploads: dict[str, _Upload] = {}
        self._bound: set[str] = set()
        self._reads = trio.Semaphore(SERVE_LIMIT)
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<GftpStorage node={self.node_id} bound={len(self._bound)}>"

    @property
    def bound(self) -> frozenset[str]:
        """The bus services bound now (``/public/gftp/<name>``)."""
        return frozenset(self._bound)

    # --- binding ----------------------------------------------------------------------------

    async def _bind(self, name: str, handler: Any) -> None:
        service = gftp_service_id(name)
        self.bus.serve(service, handler)
        try:
            await self.bus.register(service)
        except GsbError as exc:
            self.bus.unserve(service)
            raise PublishFailed(f"{service}: {exc}") from exc
        except BaseException:
            # Cancelled after the request went out, the router may have bound it anyway.
            self._bound.add(service)
            with trio.move_on_after(UNBIND_BOUND, shield=True):
                await self._unbind(name)
            raise
        self._bound.add(service)

    async def _unbind(self, name: str) -> None:
        """Unbind ``name``'s service: shielded and bounded, errors logged."""
        service = gftp_service_id(name)
        self.bus.unserve(service)
        if service not in self._bound:
            await trio.lowlevel.checkpoint()
            return
        self._bound.discard(service)
        with trio.move_on_after(UNBIND_BOUND, shield=True):
            await trio.lowlevel.checkpoint()
            try:
                await self.bus.unregister(service)
            except GsbError as exc:
                logger.debug("unbinding %s: %s", service, exc)
        await trio.lowlevel.checkpoint()

    # --- publishing -------------------------------------------------------------------------

    async def publish_file(
        self, path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> str:
        """Offer the file at ``path`` (hashed now, read when fetched); its ``gftp://`` URL.
        ``progress(done, total)`` hears how much the provider fetched.

        Raises:
            OSError: the file cannot be read.
            PublishFailed: the bus refused the service.

        Cancellation: a checkpoint; if cancelled, the file is not offered.
        """
        flags = os.O_RDONLY | os.O_CLOEXEC
        fd = await trio.to_thread.run_sync(os.open, os.fspath(path), flags)
        try:
            size, name = await trio.to_thread.run_sync(_hash_fd, fd)
            entry = _Published(name, size, Path(path), None, fd)
            return await self._publish(entry, progress)
        finally:
            if fd not in {e.fd for e in self._published.values()}:
                os.close(fd)

    async def publish_bytes(self, data: bytes, *, progress: Progress | None = None) -> str:
        """Offer ``data``; its ``gftp://`` URL. See :meth:`publish_file`.

        Cancellation: a checkpoint; if cancelled, the data is not offered.
        """
        data = bytes(data)
        if len(data) > HASH_BLOCK:
            name = await trio.to_thread.run_sync(_hash_bytes, data)
        else:
            await trio.lowlevel.checkpoint()
            name = _hash_bytes(data)
        return await self._publish(_Published(name, len(data), None, data, None), progress)

    async def _publish(self, entry: _Published, progress: Progress | None) -> str:
        async with self._lock:
            known = self._published.get(entry.name)
            if known is not None:
                known.users += 1
            else:
                await self._bind(entry.name, self._file_handler(entry))
                self._published[entry.name] = entry
                known = entry
            if progress is not None:
                known.progress.append(progress)
        return gftp_url(self.node_id, entry.name)

    async def unpublish(self, url: str) -> None:
        """Stop offering a published URL once every publisher of its content let it go
        (unknown URLs are ignored). The service is unbound, shielded and bounded.

        Cancellation: runs to the end (bounded) even when cancelled.
        """
        try:
            _node, name = parse_gftp_url(url)
        except GsbError:
            await trio.lowlevel.checkpoint()
            return
        entry = self._published.get(name)
        if entry is None:
            await trio.lowlevel.checkpoint()
            return
        entry.users -= 1
        if entry.users > 0:
            await trio.lowlevel.checkpoint()
            return
        del self._published[name]
        entry.closed = True
        entry.release_fd()
        await self._unbind(name)

    def _file_handler(self, entry: _Published) -> Any:
        async def handle(component: str, caller: str, payload: Any) -> Any:
            await trio.lowlevel.checkpoint()
            try:
                message = decode_gftp_request(component, payload)
            except ValueError as exc:
                return gftp_err("ReadError", str(exc))
            if isinstance(message, GetMetadata):
                return {"Ok": GftpMetadata(entry.size).payload()}
            if not isinstance(message, GetChunk):
                return gftp_err("WriteError", f"{component}: this file is published, not open")
            return await self._chunk(entry, message)

        return handle

    async def _chunk(self, entry: _Published, message: GetChunk) -> Any:
        if message.offset > entry.size:
            await trio.lowlevel.checkpoint()
            return gftp_err("ReadError", f"offset {message.offset} past the end ({entry.size})")
        if message.size > MAX_CHUNK:
            await trio.lowlevel.checkpoint()
            return gftp_err("ReadError", f"chunks are at most {MAX_CHUNK} bytes")
        length = min(message.size, entry.size - message.offset)
        if entry.data is not None:
            await trio.lowlevel.checkpoint()
            content = entry.data[message.offset : message.offset + length]
        else:
            if entry.closed or entry.fd is None:
                await trio.lowlevel.checkpoint()
                return gftp_err("ReadError", "the file is no longer published")
            entry.readers += 1
            try:
                content = await self._read(entry, entry.fd, message.offset, length)
            except OSError as exc:
                await trio.lowlevel.checkpoint()
                return gftp_err("ReadError", f"reading {length} bytes at {message.offset}: {exc}")
            finally:
                entry.readers -= 1
                entry.release_fd()
            if len(content) != length:
                return gftp_err("ReadError", "the file is shorter than when it was published")
        entry.served = min(entry.size, entry.served + len(content))
        if entry.served >= entry.size or entry.served - entry.reported >= PROGRESS_STEP:
            entry.reported = entry.served
            _report(entry.progress, entry.served, entry.size)
        return {"Ok": GftpChunk(message.offset, content).payload()}

    async def _read(self, entry: _Published, fd: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the file: small reads from blocks read ahead."""
        if length > READ_AHEAD:
            async with self._reads:
                data: bytes = await trio.to_thread.run_sync(os.pread, fd, length, offset)
            return data
        await trio.lowlevel.checkpoint()
        pieces: list[bytes] = []
        position, end = offset, offset + length
        while position < end:
            start = position - position % READ_AHEAD
            block = await self._block(entry, fd, start)
            piece = block[position - start : end - start]
            if not piece:
                break  # the file got shorter
            pieces.append(piece)
            position += len(piece)
        return b"".join(pieces)

    async def _block(self, entry: _Published, fd: int, start: int) -> bytes:
        async with entry.lock:
            block = entry.cache.get(start)
            if block is None:
                async with self._reads:
                    block = await trio.to_thread.run_sync(os.pread, fd, READ_AHEAD, start)
                entry.cache[start] = block
                while len(entry.cache) > CACHED_BLOCKS:
                    del entry.cache[next(iter(entry.cache))]
            return block

    # --- receiving --------------------------------------------------------------------------

    async def receive(
        self,
        limit: int | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
    ) -> Receipt:
        """A new gftp target for one file of at most ``limit`` bytes; written to ``path`` if
        given (through a temporary file beside it), else kept in memory. Forget it with
        :meth:`forget` once done. ``progress(done, total)`` hears how much arrived.

        Raises:
            PublishFailed: the bus refused the service.

        Cancellation: a checkpoint; if cancelled, nothing is bound.
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        name = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(65))
        target = None if path is None else Path(path)
        receipt = Receipt(gftp_url(self.node_id, name), name, limit, target)
        upload = _Upload(receipt, progress)
        if target is None:
            upload.buffer = bytearray()
        await self._bind(name, self._upload_handler(upload))
        self._uploads[name] = upload
        return receipt

    async def forget(self, receipt: Receipt) -> None:
        """Stop accepting chunks for ``receipt`` and unbind it. An upload in flight is
        aborted (its partial file removed) and the receipt fails, unless it had completed.

        Cancellation: runs to the end (bounded) even when cancelled.
        """
        upload = self._uploads.pop(receipt.token, None)
        if upload is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(UNBIND_BOUND, shield=True):
            async with upload.lock:
                await self._drop(upload)
                if receipt._claimed:
                    receipt._finish("the transfer was aborted (the receipt was forgotten)")
        await self._unbind(receipt.token)

    async def _drop(self, upload: _Upload) -> None:
        """Throw away what arrived (the partial file, the buffer). Call with the lock."""
        fd, upload.fd = upload.fd, None
        part, upload.part = upload.part, None
        upload.buffer = None
        upload.pending = bytearray()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if part is not None:
            with trio.move_on_after(UNBIND_BOUND, shield=True):
                await trio.Path(part).unlink(missing_ok=True)
        else:
            await trio.lowlevel.checkpoint()

    async def _fail(
        self, upload: _Upload, error: str, *, too_large: bool = False, corrupted: bool = False
    ) -> None:
        """Fail the receipt, drop what arrived and unbind (in the background). Call with the
        lock."""
        # What arrived is gone before anyone waiting hears of the failure.
        await self._drop(upload)
        upload.receipt._finish(error, too_large=too_large, corrupted=corrupted)
        logger.warning("a gftp transfer into %s failed: %s", upload.receipt.url, error)
        self._unbind_later(upload)

    def _unbind_later(self, upload: _Upload) -> None:
        # After the reply to the call being handled went out.
        if upload.bound:
            upload.bound = False
            self._nursery.start_soon(self._unbind, upload.receipt.token)

    def _upload_handler(self, upload: _Upload) -> Any:
        async def handle(component: str, caller: str, payload: Any) -> Any:
            try:
                message = decode_gftp_request(component, payload)
            except ValueError as exc:
                await trio.lowlevel.checkpoint()
                return gftp_err("WriteError", str(exc))
            async with upload.lock:
                receipt = upload.receipt
                if receipt.done or upload.receipt.token not in self._uploads:
                    return gftp_err("WriteError", "this upload has ended")
                if isinstance(message, GetMetadata | GetChunk):
                    return gftp_err("ReadError", f"{component}: this is an upload target")
                if upload.caller is None:
                    upload.caller = caller
                    receipt._claimed = True
                    upload.last_seen = trio.current_time()
                    self._nursery.start_soon(self._watch, upload)
                elif caller != upload.caller:
                    return gftp_err("WriteError", "another node is uploading here")
                upload.last_seen = trio.current_time()
                if isinstance(message, UploadChunk):
                    return await self._store(upload, message.chunk)
                return await self._finish(upload, message)

        return handle

    async def _store(self, upload: _Upload, chunk: GftpChunk) -> Any:
        receipt = upload.receipt
        end = chunk.offset + len(chunk.content)
        if receipt.limit is not None and end > receipt.limit:
            await self._fail(
                upload, f"more than the limit of {receipt.limit} bytes", too_large=True
            )
            return gftp_err("WriteError", f"more than the limit of {receipt.limit} bytes")
        try:
            if upload.buffer is not None:
                await trio.lowlevel.checkpoint()
                if chunk.offset > len(upload.buffer):
                    upload.buffer.extend(bytes(chunk.offset - len(upload.buffer)))
                upload.buffer[chunk.offset : end] = chunk.content
            else:
                await self._write(upload, chunk)
        except OSError as exc:
            await self._fail(upload, f"the download could not be written: {exc}")
            return gftp_err("WriteError", str(exc))
        if chunk.offset == upload.size and upload.in_order:
            upload.digest.update(chunk.content)
        else:
            upload.in_order = False
        upload.size = max(upload.size, end)
        if upload.size - upload.reported >= PROGRESS_STEP and upload.progress is not None:
            upload.reported = upload.size
            _report([upload.progress], upload.size, None)
        return {"Ok": None}

    async def _write(self, upload: _Upload, chunk: GftpChunk) -> None:
        target = upload.receipt.path
        assert target is not None
        if upload.fd is None:
            part = target.with_name(f".{target.name}.{upload.receipt.token[:8]}.part")
            await trio.Path(target.parent).mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
            upload.fd = await trio.to_thread.run_sync(os.open, part, flags, 0o644)
            upload.part = part
        if upload.pending and chunk.offset == upload.pending_at + len(upload.pending):
            await trio.lowlevel.checkpoint()
            upload.pending += chunk.content
        else:
            await self._flush(upload)
            upload.pending_at = chunk.offset
            upload.pending = bytearray(chunk.content)
        if len(upload.pending) >= WRITE_BEHIND:
            await self._flush(upload)

    async def _flush(self, upload: _Upload) -> None:
        """Write the gathered chunks to the partial file."""
        if not upload.pending or upload.fd is None:
            await trio.lowlevel.checkpoint()
            return
        data, upload.pending = bytes(upload.pending), bytearray()
        await trio.to_thread.run_sync(_write_at, upload.fd, data, upload.pending_at)

    async def _finish(self, upload: _Upload, message: UploadFinished) -> Any:
        receipt = upload.receipt
        try:
            await self._flush(upload)
        except OSError as exc:
            await self._fail(upload, f"the download could not be written: {exc}")
            return gftp_err("WriteError", str(exc))
        if upload.in_order:
            actual = upload.digest.hexdigest()
        elif upload.buffer is not None:
            actual = await trio.to_thread.run_sync(_hash_bytes, upload.buffer)
        else:
            assert upload.fd is not None
            _size, actual = await trio.to_thread.run_sync(_hash_fd, upload.fd)
        if message.hash is not None and message.hash.lower() != actual:
            await self._fail(
                upload,
                f"the content's SHA3-256 is {actual}, the sender announced {message.hash}",
                corrupted=True,
            )
            return gftp_err("IntegrityError")
        try:
            if upload.buffer is not None:
                receipt.data = bytes(upload.buffer)
                upload.buffer = None
            else:
                await self._complete_file(upload)
        except OSError as exc:
            await self._fail(upload, f"the download could not be written: {exc}")
            return gftp_err("WriteError", str(exc))
        receipt.size = upload.size
        receipt._finish()
        if upload.progress is not None:
            _report([upload.progress], upload.size, upload.size)
        self._unbind_later(upload)
        return {"Ok": None}

    async def _complete_file(self, upload: _Upload) -> None:
        target = upload.receipt.path
        assert target is not None
        if upload.fd is None:  # nothing arrived: an empty file
            await trio.Path(target.parent).mkdir(parents=True, exist_ok=True)
            await trio.Path(target).write_bytes(b"")
            return
        fd, upload.fd = upload.fd, None
        part, upload.part = upload.part, None
        assert part is not None
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
        try:
            await trio.Path(part).replace(target)
        except OSError:
            with trio.move_on_after(UNBIND_BOUND, shield=True):
                await trio.Path(part).unlink(missing_ok=True)
            raise

    async def _watch(self, upload: _Upload) -> None:
        """Fail the receipt if its sender stays quiet for ``read_timeout`` seconds."""
        await trio.lowlevel.checkpoint()
        while not upload.receipt.done and upload.receipt.token in self._uploads:
            deadline = upload.last_seen + self.read_timeout
            if trio.current_time() < deadline:
                await trio.sleep_until(deadline)
                continue
            async with upload.lock:
                if not upload.receipt.done and upload.receipt.token in self._uploads:
                    problem = f"no chunk for {self.read_timeout:g} s"
                    await self._fail(upload, f"the upload broke off: {problem}")
            return

    async def aclose(self) -> None:
        """Unbind every service, abort the uploads in flight and drop their partial files.

        Cancellation: runs to the end (bounded) even when cancelled.
        """
        for upload in list(self._uploads.values()):
            await self.forget(upload.receipt)
        for entry in list(self._published.values()):
            entry.users = 1
            await self.unpublish(gftp_url(self.node_id, entry.name))
        for service in list(self._bound):
            await self._unbind(service.rsplit("/", 1)[-1])
        await trio.lowlevel.checkpoint()


#: What serves a :class:`~golem_trio.work.WorkContext`'s transfers: loopback HTTP or gftp.
TransferStorage = HttpStorage | GftpStorage


#: Seconds the check of the daemon's bus may take.
CHECK_BOUND: Final = 10.0


async def _check_bus(gsb_url: str, node_id: str) -> None:
    """Make sure the bus at ``gsb_url`` answers and belongs to the daemon that holds
    ``node_id`` (another daemon's bus would offer the files under the wrong node)."""
    try:
        with trio.fail_after(CHECK_BOUND):
            async with open_gsb(gsb_url, name=f"golem-trio-check-{uuid.uuid4().hex[:8]}") as bus:
                reply = await bus.call("/local/identity/List", {})
    except (OSError, GsbError, trio.TooSlowError) as exc:
        what = str(exc) or type(exc).__name__
        raise TransferUnavailable(
            f"the daemon's service bus at {gsb_url} does not answer: {what}"
        ) from exc
    listed = reply.get("Ok") if isinstance(reply, dict) else None
    ids = {
        str(entry.get("nodeId", "")).lower()
        for entry in (listed if isinstance(listed, list) else [])
        if isinstance(entry, dict)
    }
    if node_id.lower() not in ids:
        raise TransferUnavailable(
            f"the service bus at {gsb_url} belongs to another daemon (it does not hold "
            f"{node_id}); set GSB_URL or ApiConfig(gsb_url=...) to the daemon's own"
        )


@asynccontextmanager
async def open_gftp_storage(
    gsb_url: str, node_id: str, *, read_timeout: float = READ_TIMEOUT
) -> AsyncIterator[GftpStorage]:
    """Connect to the requestor daemon's service bus at ``gsb_url`` and serve a
    :class:`GftpStorage` for node ``node_id`` for the block's duration. A receipt whose
    sender stays quiet for ``read_timeout`` seconds fails.

    Raises:
        TransferUnavailable: the bus does not answer, or it is another daemon's (one that
            does not hold ``node_id``); checked before anything is bound.

    Cancellation: exiting the block (normally or by cancellation) unbinds every service,
    shielded and bounded, and drops partial files; transfers in flight are cut off.
    """
    await _check_bus(gsb_url, node_id)
    async with open_gsb(gsb_url, name=f"golem-trio-gftp-{uuid.uuid4().hex[:12]}") as bus:
        async with trio.open_nursery() as nursery:
            storage = GftpStorage(bus, node_id, nursery, read_timeout=read_timeout)
            try:
                yield storage
            finally:
                with trio.CancelScope(shield=True):
                    await storage.aclose()
                nursery.cancel_scope.cancel()
