"""File transfer storage: a small HTTP server on loopback that the exe-unit GETs uploads from
and PUTs downloads to.

Every published file, published blob and receipt has its own URL with a random, unguessable
token (``secrets.token_urlsafe(32)``): a GET of a published token serves its content, a PUT to a
receipt's token stores the body (at most ``limit`` bytes; more is answered with 413). A receipt
takes one PUT: another one, while the first runs or after it, is answered with 409. Anything
else is a 404 (or 405). The exe-unit's uploads send a ``Content-Length`` and a streamed body;
both a known and an unknown length are accepted. A body that stalls for ``read_timeout``
seconds, or a client that disconnects, fails the receipt with one line in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from .._errors import GolemError

__all__ = [
    "READ_TIMEOUT",
    "HttpStorage",
    "Receipt",
    "ReceiveFailed",
    "TransferCorrupted",
    "TransferTooLarge",
    "open_http_storage",
]

logger = logging.getLogger("golem_trio.work.storage")

#: Seconds a stopping server waits for requests in flight.
GRACEFUL_TIMEOUT = 0.5
#: Default of ``open_http_storage(read_timeout=...)``: seconds a PUT's body may stall (no
#: bytes arriving) before the transfer is given up.
READ_TIMEOUT = 30.0


class ReceiveFailed(GolemError):
    """A PUT to a :class:`Receipt` was refused (too large, or the body broke off, stalled or
    was aborted by :meth:`HttpStorage.forget`)."""


class TransferTooLarge(ReceiveFailed):
    """A PUT to a :class:`Receipt` was larger than its ``limit`` (answered with 413; nothing
    of it is kept). ``limit`` is the cap in bytes."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class TransferCorrupted(ReceiveFailed):
    """What arrived for a :class:`Receipt` does not have the hash the sender announced
    (gftp checks it); nothing of it is kept."""


@attrs.define(eq=False)
class Receipt:
    """Where the exe-unit PUTs one file: ``url``. The body is kept in memory (``data``) or,
    when ``path`` is given, written to ``path`` (through a temporary file beside it, renamed
    when complete). ``limit`` caps its size (``None``: no cap)."""

    url: str
    token: str = attrs.field(repr=False)
    limit: int | None = None
    path: Path | None = None
    data: bytes | None = None
    size: int = 0
    error: str | None = None
    #: Whether the PUT was refused for its size (:class:`TransferTooLarge`).
    too_large: bool = False
    #: Whether the content failed its hash check (:class:`TransferCorrupted`).
    corrupted: bool = False
    _done: trio.Event = attrs.field(factory=trio.Event, repr=False)
    #: Set when a PUT started: a receipt takes one (another is answered with 409).
    _claimed: bool = attrs.field(default=False, repr=False)
    #: The scope of the PUT in flight, which :meth:`HttpStorage.forget` cancels.
    _scope: trio.CancelScope | None = attrs.field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """Whether a PUT arrived and ended (completely or with an error)."""
        return self._done.is_set()

    async def wait(self) -> bytes | None:
        """Wait for the PUT; returns the body when kept in memory, ``None`` when written to
        ``path``. Raises :class:`ReceiveFailed` if it was refused.

        Cancellation: a checkpoint; cancelling only stops the waiting.
        """
        await self._done.wait()
        if self.error is not None:
            if self.too_large and self.limit is not None:
                raise TransferTooLarge(self.error, self.limit)
            if self.corrupted:
                raise TransferCorrupted(self.error)
            raise ReceiveFailed(self.error)
        return self.data if self.path is None else None

    def _finish(
        self, error: str | None = None, *, too_large: bool = False, corrupted: bool = False
    ) -> None:
        if self._done.is_set():
            return
        self.error = error
        self.too_large = too_large
        self.corrupted = corrupted
        self._done.set()


class HttpStorage:
    """A running transfer server; get one from :func:`open_http_storage`.

    ``base_url`` is where it listens (``http://127.0.0.1:<port>``).
    """

    def __init__(self, read_timeout: float = READ_TIMEOUT) -> None:
        if not read_timeout > 0:
            raise ValueError(f"read_timeout must be > 0, got {read_timeout!r}")
        #: Seconds a PUT's body may stall before the transfer is given up.
        self.read_timeout = read_timeout
        self.base_url = ""
        self._files: dict[str, Path] = {}
        self._blobs: dict[str, bytes] = {}
        self._receipts: dict[str, Receipt] = {}
        self.app = Starlette(routes=[Route("/{token}", self._serve, methods=["GET", "PUT"])])

    def __repr__(self) -> str:
        return f"<HttpStorage {self.base_url or 'not serving'}>"

    def _url(self, token: str) -> str:
        return f"{self.base_url}/{token}"

    @staticmethod
    def _token_of(url: str) -> str:
        return url.rstrip("/").rsplit("/", 1)[-1]

    def publish_file(self, path: str | os.PathLike[str]) -> str:
        """Serve the file at ``path`` (read when fetched); its URL."""
        token = secrets.token_urlsafe(32)
        self._files[token] = Path(path)
        return self._url(token)

    def publish_bytes(self, data: bytes) -> str:
        """Serve ``data``; its URL."""
        token = secrets.token_urlsafe(32)
        self._blobs[token] = bytes(data)
        return self._url(token)

    def unpublish(self, url: str) -> None:
        """Stop serving a published URL (unknown URLs are ignored)."""
        token = self._token_of(url)
        self._files.pop(token, None)
        self._blobs.pop(token, None)

    def receive(
        self, limit: int | None = None, *, path: str | os.PathLike[str] | None = None
    ) -> Receipt:
        """A new PUT target for one file of at most ``limit`` bytes; written to ``path`` if
        given, else kept in memory. Forget it with :meth:`forget` once done."""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        token = secrets.token_urlsafe(32)
        receipt = Receipt(self._url(token), token, limit, None if path is None else Path(path))
        self._receipts[token] = receipt
        return receipt

    def forget(self, receipt: Receipt) -> None:
        """Stop accepting PUTs for ``receipt``. A PUT in flight is aborted (its partial file
        removed) and the receipt fails, unless it had completed."""
        self._receipts.pop(receipt.token, None)
        if receipt._scope is not None:
            receipt._scope.cancel()
        if receipt._claimed:
            receipt._finish("the transfer was aborted (the receipt was forgotten)")

    async def _serve(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "GET":
            await trio.lowlevel.checkpoint()
            blob = self._blobs.get(token)
            if blob is not None:
                return Response(blob, media_type="application/octet-stream")
            file = self._files.get(token)
            if file is not None:
                if not await trio.Path(file).is_file():
                    return Response("not found\n", status_code=404)
                return FileResponse(file, media_type="application/octet-stream")
            return Response("not found\n", status_code=404)
        receipt = self._receipts.get(token)
        if receipt is None:
            await trio.lowlevel.checkpoint()
            return Response("not found\n", status_code=404)
        if receipt.done or receipt._claimed:
            await trio.lowlevel.checkpoint()
            return Response("already received\n", status_code=409)
        # Claimed before the first checkpoint: a second PUT, concurrent or later, gets 409.
        receipt._claimed = True
        with trio.CancelScope() as scope:
            receipt._scope = scope
            try:
                return await self._receive(request, receipt)
            finally:
                receipt._scope = None
        # Cancelled by forget(): the transfer is aborted, and the client told so.
        receipt._finish("the transfer was aborted (the receipt was forgotten)")
        return Response("aborted\n", status_code=410)

    async def _receive(self, request: Request, receipt: Receipt) -> Response:
        limit = receipt.limit
        declared = request.headers.get("content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > (limit or 0)
        if limit is not None and too_large:
            await trio.lowlevel.checkpoint()
            receipt._finish(f"{declared} bytes, more than the limit of {limit}", too_large=True)
            return Response("too large\n", status_code=413)
        if receipt.path is None:
            return await self._receive_to_memory(request, receipt)
        return await self._receive_to_file(request, receipt, receipt.path)

    async def _read(self, stream: AsyncIterator[bytes], receipt: Receipt) -> bytes | None:
        """The body's next chunk (``None`` at its end); raises :class:`_BrokenOff`, after failing
        ``receipt`` and logging one line, when the client disconnects or the body stalls for
        ``read_timeout`` seconds."""
        problem = f"no bytes for {self.read_timeout:g} s"
        with trio.move_on_after(self.read_timeout):
            await trio.lowlevel.checkpoint()
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return None
            except ClientDisconnect:
                problem = "the client disconnected"
        receipt._finish(f"the upload broke off: {problem}")
        logger.warning("a transfer to %s broke off: %s", self.base_url, problem)
        raise _BrokenOff(problem)

    async def _pump(
        self, request: Request, receipt: Receipt, sink: Callable[[bytes], Awaitable[object]]
    ) -> int | Response:
        """Hand the PUT's body to ``sink`` chunk by chunk: its size, or the answer that ends
        it early (413 past the receipt's limit, which finishes the receipt; 400 when the body
        broke off)."""
        await trio.lowlevel.checkpoint()
        size = 0
        try:
            async with contextlib.aclosing(request.stream()) as stream:
                while (chunk := await self._read(stream, receipt)) is not None:
                    size += len(chunk)
                    if receipt.limit is not None and size > receipt.limit:
                        receipt._finish(
                            f"more than the limit of {receipt.limit} bytes", too_large=True
                        )
                        return Response("too large\n", status_code=413)
                    await sink(chunk)
        except _BrokenOff:  # the client sees no answer anyway
            return Response("broken off\n", status_code=400)
        return size

    async def _receive_to_memory(self, request: Request, receipt: Receipt) -> Response:
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            await trio.lowlevel.checkpoint()
            chunks.append(chunk)

        size = await self._pump(request, receipt, keep)
        if isinstance(size, Response):
            return size
        receipt.data = b"".join(chunks)
        receipt.size = size
        receipt._finish()
        return Response(status_code=204)

    async def _receive_to_file(self, request: Request, receipt: Receipt, path: Path) -> Response:
        partial = path.with_name(f".{path.name}.{receipt.token[:8]}.part")
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        ok = False
        file = await trio.open_file(partial, "wb")
        try:
            size = await self._pump(request, receipt, file.write)
            if isinstance(size, Response):
                return size
            ok = True
        except Exception as exc:
            receipt._finish(f"the download could not be written: {exc}")
            raise
        finally:
            with trio.move_on_after(5, shield=True):
                await file.aclose()
                if ok:
                    await trio.Path(partial).replace(path)
                else:
                    await trio.Path(partial).unlink(missing_ok=True)
        receipt.size = size
        receipt._finish()
        return Response(status_code=204)


class _BrokenOff(Exception):
    """A PUT's body broke off (the client disconnected, or it stalled)."""


@asynccontextmanager
async def open_http_storage(
    host: str = "127.0.0.1", port: int = 0, *, read_timeout: float = READ_TIMEOUT
) -> AsyncIterator[HttpStorage]:
    """Serve an :class:`HttpStorage` on ``host:port`` (``0``: any free port) with hypercorn's
    trio worker, for the block's duration. A PUT whose body stalls for ``read_timeout``
    seconds (default :data:`READ_TIMEOUT`) is given up.

    Keep it on loopback unless the exe-units are elsewhere: anyone who can reach the port and
    knows a token can fetch or store that one file.

    Cancellation: exiting the block (normally or by cancellation) stops the server; transfers
    in flight are cut off.
    """
    storage = HttpStorage(read_timeout)
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logger
    config.graceful_timeout = GRACEFUL_TIMEOUT
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(hypercorn_serve, storage.app, config)
        storage.base_url = str(binds[0]).rstrip("/")
        logger.debug("transfer storage serves at %s", storage.base_url)
        try:
            yield storage
        finally:
            nursery.cancel_scope.cancel()
