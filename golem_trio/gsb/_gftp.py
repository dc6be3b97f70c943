"""gftp, the daemons' file transfer, spoken over the service bus: its addresses, URLs and
messages, and the provider's half (fetching a published file, delivering into a receipt).

One file is one bus service, ``/public/gftp/<name>``, bound on the daemon of the node that
offers it. Another node reaches it through its own daemon as ``/net/<node id>/gftp/<name>``
(on one daemon that address is routed to the local service too), and the URL handed to an
exe-unit is ``gftp://<node id>/<name>``. A published file's name is the SHA3-256 of its
content in lower-case hex; a receipt's name is a random string of 65 letters and digits.

The calls (each a serde ``Result``: ``{"Ok": value}`` or ``{"Err": error}``):

- ``GetMetadata`` (no fields) answers ``{"fileSize": n}``;
- ``GetChunk {offset, size}`` answers ``{"offset": offset, "content": bytes}``, shorter than
  ``size`` only at the end of the file;
- ``UploadChunk {chunk: {offset, content}}`` stores bytes in a receipt, answers ``null``;
- ``UploadFinished {hash}`` ends an upload; with a hash (SHA3-256 hex of the whole content)
  the receiver checks it and answers ``"IntegrityError"`` when it differs.

Errors are ``{"ReadError": text}``, ``{"WriteError": text}``, ``{"InternalError": text}`` or
the bare ``"IntegrityError"``. Exe-units ask for :data:`GFTP_CHUNK_SIZE` bytes at a time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final, TypeGuard

import attrs
import trio

from ._client import GsbBus
from ._errors import GsbError

__all__ = [
    "GFTP_CHUNK_SIZE",
    "GFTP_PREFIX",
    "GetChunk",
    "GetMetadata",
    "GftpChunk",
    "GftpError",
    "GftpIntegrityError",
    "GftpMessage",
    "GftpMetadata",
    "UploadChunk",
    "UploadFinished",
    "decode_gftp_request",
    "gftp_deliver",
    "gftp_digest",
    "gftp_err",
    "gftp_fetch",
    "gftp_remote_address",
    "gftp_service_id",
    "gftp_url",
    "parse_gftp_url",
]

#: Bytes per chunk, as a provider's exe-unit asks for them and sends them.
GFTP_CHUNK_SIZE: Final = 40 * 1024
#: Where a node binds its gftp services.
GFTP_PREFIX: Final = "/public/gftp"
#: Chunk requests a fetch keeps in flight (as many as a real exe-unit does).
FETCH_WINDOW: Final = 12

_NODE_ID = re.compile(r"0x[0-9a-fA-F]{40}")
_NAME = re.compile(r"[A-Za-z0-9]{1,128}")


class GftpError(GsbError):
    """A gftp service answered with an error, or broke the protocol.

    Attributes:
        url: the file's ``gftp://`` URL (or bus address).
        kind: the error's variant (``ReadError``, ``WriteError``, ``InternalError``,
            ``IntegrityError``) or ``protocol`` for a reply that is not one.
    """

    def __init__(self, url: str, kind: str, message: str) -> None:
        super().__init__(f"{url}: {kind}" + (f": {message}" if message else ""))
        self.url = url
        self.kind = kind
        self.message = message


class GftpIntegrityError(GftpError):
    """What arrived does not have the content's SHA3-256."""


def gftp_digest() -> hashlib._Hash:
    """A new SHA3-256 hasher: what names a published file and checks an upload."""
    return hashlib.sha3_256()


def gftp_service_id(name: str) -> str:
    """The bus service of file ``name`` on the node that offers it."""
    return f"{GFTP_PREFIX}/{name}"


def gftp_remote_address(node_id: str, name: str) -> str:
    """How another node calls file ``name`` of ``node_id``, through its own daemon."""
    return f"/net/{node_id}/gftp/{name}"


def gftp_url(node_id: str, name: str) -> str:
    """The URL an exe-unit is given for file ``name`` of ``node_id``."""
    return f"gftp://{node_id}/{name}"


def parse_gftp_url(url: str) -> tuple[str, str]:
    """``(node id, name)`` of a ``gftp://<node id>/<name>`` URL.

    Raises:
        GftpError: not such a URL (kind ``protocol``).
    """
    scheme, sep, rest = url.partition("://")
    node_id, slash, name = rest.partition("/")
    if (
        scheme != "gftp"
        or not sep
        or not slash
        or not _NODE_ID.fullmatch(node_id)
        or not _NAME.fullmatch(name)
    ):
        raise GftpError(url, "protocol", "expected gftp://<node id>/<name>")
    return node_id.lower(), name


# --- messages ---------------------------------------------------------------------------------


@attrs.frozen
class GetMetadata:
    """Ask for a published file's size."""

    ID: ClassVar[str] = "GetMetadata"

    def payload(self) -> Any:
        return {}


@attrs.frozen
class GftpMetadata:
    """The answer to :class:`GetMetadata`."""

    file_size: int

    def payload(self) -> Any:
        return {"fileSize": self.file_size}

    @classmethod
    def from_payload(cls, value: Any) -> GftpMetadata:
        size = value.get("fileSize") if isinstance(value, Mapping) else None
        if not _is_count(size):
            raise ValueError(f"not gftp metadata: {value!r}")
        return cls(size)


@attrs.frozen
class GetChunk:
    """Ask for ``size`` bytes at ``offset`` of a published file."""

    ID: ClassVar[str] = "GetChunk"
    offset: int
    size: int

    def payload(self) -> Any:
        return {"offset": self.offset, "size": self.size}


@attrs.frozen
class GftpChunk:
    """Bytes of a file at ``offset``: the answer to :class:`GetChunk`, and what an
    :class:`UploadChunk` carries."""

    offset: int
    content: bytes

    def payload(self) -> Any:
        return {"offset": self.offset, "content": self.content}

    @classmethod
    def from_payload(cls, value: Any) -> GftpChunk:
        if not isinstance(value, Mapping):
            raise ValueError(f"not a gftp chunk: {value!r}")
        offset, content = value.get("offset"), value.get("content")
        if not _is_count(offset) or not isinstance(content, bytes | bytearray):
            raise ValueError(f"not a gftp chunk: offset {offset!r}, content {type(content)}")
        return cls(offset, bytes(content))


@attrs.frozen
class UploadChunk:
    """Store ``chunk`` in a receipt."""

    ID: ClassVar[str] = "UploadChunk"
    chunk: GftpChunk

    def payload(self) -> Any:
        return {"chunk": self.chunk.payload()}


@attrs.frozen
class UploadFinished:
    """The upload is complete; ``hash`` (SHA3-256 hex of the whole content), when given, is
    checked by the receiver."""

    ID: ClassVar[str] = "UploadFinished"
    hash: str | None = None

    def payload(self) -> Any:
        return {"hash": self.hash}


GftpMessage = GetMetadata | GetChunk | UploadChunk | UploadFinished


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_gftp_request(component: str, payload: Any) -> GftpMessage:
    """The message a call to ``<service>/<component>`` carries.

    Raises:
        ValueError: an unknown component or a malformed payload.
    """
    if component == GetMetadata.ID:
        return GetMetadata()
    fields = payload if isinstance(payload, Mapping) else {}
    if component == GetChunk.ID:
        offset, size = fields.get("offset"), fields.get("size")
        if not _is_count(offset) or not _is_count(size):
            raise ValueError(f"GetChunk: offset and size must be counts, got {payload!r}")
        return GetChunk(offset, size)
    if component == UploadChunk.ID:
        return UploadChunk(GftpChunk.from_payload(fields.get("chunk")))
    if component == UploadFinished.ID:
        digest = fields.get("hash")
        if digest is not None and not isinstance(digest, str):
            raise ValueError(f"UploadFinished: hash must be text or null, got {digest!r}")
        return UploadFinished(digest)
    raise ValueError(f"not a gftp call: {component!r}")


def gftp_err(kind: str, message: str | None = None) -> Any:
    """A serde ``Err`` reply: ``{"Err": {kind: message}}``, or ``{"Err": kind}`` for a unit
    variant such as ``IntegrityError``."""
    return {"Err": kind if message is None else {kind: message}}


def _unwrap(url: str, reply: Any) -> Any:
    if reply is None:
        # Through /net, a call to a service nobody binds comes back as an empty reply.
        raise GftpError(url, "protocol", "an empty reply: the file is not offered (any more)")
    if isinstance(reply, Mapping) and "Ok" in reply:
        return reply["Ok"]
    if isinstance(reply, Mapping) and "Err" in reply:
        error = reply["Err"]
        if isinstance(error, str):
            kind, message = error, ""
        elif isinstance(error, Mapping) and len(error) == 1:
            ((kind, detail),) = error.items()
            kind, message = str(kind), str(detail)
        else:
            kind, message = "error", repr(error)
        if kind == "IntegrityError":
            raise GftpIntegrityError(url, kind, message)
        raise GftpError(url, kind, message)
    raise GftpError(url, "protocol", f"not a serde Result: {reply!r}")


# --- the provider's half ------------------------------------------------------------------------


async def gftp_fetch(
    bus: GsbBus,
    url: str,
    sink: Callable[[bytes], Awaitable[object]],
    *,
    max_bytes: int | None = None,
    window: int = FETCH_WINDOW,
    chunk_size: int = GFTP_CHUNK_SIZE,
) -> int:
    """Fetch the file at ``url`` through ``bus`` as a provider's exe-unit does
    (``GetMetadata``, then ``GetChunk`` calls, ``window`` of them in flight) and hand its
    content to ``sink`` in order, chunk by chunk. The name in the URL is the content's
    SHA3-256, and it is checked once everything arrived. Returns the number of bytes.

    The caller owns what ``sink`` wrote: when this raises, it should throw that away.

    Raises:
        GftpError: the service answered an error, a chunk of the wrong offset or length, or
            the file is larger than ``max_bytes``.
        GftpIntegrityError: the content does not match the name.
        GsbError: the bus refused a call (no such service: 400) or broke.

    Cancellation: a checkpoint; if cancelled, the calls in flight are abandoned.
    """
    node_id, name = parse_gftp_url(url)
    address = gftp_remote_address(node_id, name)
    meta = GftpMetadata.from_payload(
        _unwrap(url, await bus.call(f"{address}/{GetMetadata.ID}", GetMetadata().payload()))
    )
    size = meta.file_size
    if max_bytes is not None and size > max_bytes:
        raise GftpError(url, "protocol", f"{size} bytes, more than the limit of {max_bytes}")
    digest = gftp_digest()
    offsets = range(0, size, chunk_size)
    results: dict[int, trio.MemoryReceiveChannel[bytes | Exception]] = {}

    async def get(offset: int, send: trio.MemorySendChannel[bytes | Exception]) -> None:
        async with send:
            outcome: bytes | Exception
            try:
                reply = await bus.call(
                    f"{address}/{GetChunk.ID}", GetChunk(offset, chunk_size).payload()
                )
                chunk = GftpChunk.from_payload(_unwrap(url, reply))
            except ValueError as exc:
                outcome = GftpError(url, "protocol", str(exc))
            except GsbError as exc:
                outcome = exc
            else:
                expected = min(chunk_size, size - offset)
                outcome = chunk.content
                if chunk.offset != offset or len(chunk.content) != expected:
                    outcome = GftpError(
                        url,
                        "protocol",
                        f"asked for {expected} bytes at {offset}, got "
                        f"{len(chunk.content)} at {chunk.offset}",
                    )
            await send.send(outcome)

    async with trio.open_nursery() as nursery:
        pending = iter(offsets)

        def launch() -> None:
            offset = next(pending, None)
            if offset is None:
                return
            send, receive = trio.open_memory_channel[bytes | Exception](1)
            results[offset] = receive
            nursery.start_soon(get, offset, send)

        for _ in range(max(window, 1)):
            launch()
        for offset in offsets:
            with results.pop(offset) as receive:
                item = await receive.receive()
            if isinstance(item, Exception):
                raise item
            launch()
            digest.update(item)
            await sink(item)
    if digest.hexdigest() != name.lower():
        raise GftpIntegrityError(
            url, "IntegrityError", f"the content's SHA3-256 is {digest.hexdigest()}"
        )
    return size


async def gftp_deliver(
    bus: GsbBus,
    url: str,
    read: Callable[[int], Awaitable[bytes]],
    *,
    chunk_size: int = GFTP_CHUNK_SIZE,
) -> int:
    """Upload into the receipt at ``url`` through ``bus`` what ``read(n)`` gives (at most
    ``n`` bytes a call, ``b""`` at the end), as a provider's exe-unit does: ``UploadChunk``
    calls one after the other, each of at most ``chunk_size`` bytes, then ``UploadFinished``
    with the content's SHA3-256. Returns the number of bytes sent.

    Raises:
        GftpError: the receipt answered an error (too large, aborted, ...).
        GftpIntegrityError: the receipt found a different hash.
        GsbError: the bus refused a call (no such service: 400) or broke.

    Cancellation: a checkpoint; if cancelled, the receipt holds part of the content and
    never sees ``UploadFinished``.
    """
    node_id, name = parse_gftp_url(url)
    address = gftp_remote_address(node_id, name)
    digest = gftp_digest()
    offset = 0
    while piece := await read(chunk_size):
        message = UploadChunk(GftpChunk(offset, piece))
        _unwrap(url, await bus.call(f"{address}/{UploadChunk.ID}", message.payload()))
        digest.update(piece)
        offset += len(piece)
    finished = UploadFinished(digest.hexdigest())
    _unwrap(url, await bus.call(f"{address}/{UploadFinished.ID}", finished.payload()))
    return offset
