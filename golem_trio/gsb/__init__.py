"""``golem_trio.gsb``: a trio client of the Golem Service Bus (GSB), the message bus inside a
yagna daemon.

The bus speaks ``ya-sb-proto`` over a unix socket (``unix:/path``) or TCP
(``tcp://host:port``, yagna's default being ``tcp://127.0.0.1:7464``): length-prefixed
protobuf packets (``_wire.py``) carrying serde-style flexbuffers payloads. The SDK uses it to
serve files to providers with gftp (:class:`golem_trio.work.GftpStorage`); LocalNet's
real-daemon backend uses it for its exe-units. It imports nothing from the SDK but its root
error, so both sides can share it.

gftp, the daemons' file transfer, is spoken here too (``_gftp.py``): the addresses, URLs and
messages (:class:`GetMetadata`, :class:`GetChunk`, :class:`UploadChunk`,
:class:`UploadFinished`), and the provider's half, :func:`gftp_fetch` and
:func:`gftp_deliver`. The requestor's half, serving files, is
:class:`golem_trio.work.GftpStorage`.

Usage::

    async with open_gsb("unix:/tmp/yagna/yagna.sock", name="my-service") as bus:
        ids = await bus.call("/local/identity/List", {})
        bus.serve("/public/my-service", handler)
        await bus.register("/public/my-service")

A handler is ``handler(component, caller, payload)``. Either it is a coroutine function whose
result is the reply payload, or it returns an async iterator whose items are sent as partial
replies (a streamed reply), followed by an empty final reply.
"""

from golem_trio._exports import fixup_module_metadata

from ._client import CLIENT_VERSION as CLIENT_VERSION
from ._client import CLOSE_BOUND as CLOSE_BOUND
from ._client import GsbBus as GsbBus
from ._client import Handler as Handler
from ._client import open_gsb as open_gsb
from ._errors import GsbCallError as GsbCallError
from ._errors import GsbClosed as GsbClosed
from ._errors import GsbError as GsbError
from ._errors import GsbProtocolError as GsbProtocolError
from ._errors import GsbRegisterError as GsbRegisterError
from ._gftp import GFTP_CHUNK_SIZE as GFTP_CHUNK_SIZE
from ._gftp import GFTP_PREFIX as GFTP_PREFIX
from ._gftp import GetChunk as GetChunk
from ._gftp import GetMetadata as GetMetadata
from ._gftp import GftpChunk as GftpChunk
from ._gftp import GftpError as GftpError
from ._gftp import GftpIntegrityError as GftpIntegrityError
from ._gftp import GftpMessage as GftpMessage
from ._gftp import GftpMetadata as GftpMetadata
from ._gftp import UploadChunk as UploadChunk
from ._gftp import UploadFinished as UploadFinished
from ._gftp import decode_gftp_request as decode_gftp_request
from ._gftp import gftp_deliver as gftp_deliver
from ._gftp import gftp_digest as gftp_digest
from ._gftp import gftp_err as gftp_err
from ._gftp import gftp_fetch as gftp_fetch
from ._gftp import gftp_remote_address as gftp_remote_address
from ._gftp import gftp_service_id as gftp_service_id
from ._gftp import gftp_url as gftp_url
from ._gftp import parse_gftp_url as parse_gftp_url
from ._wire import MAX_FRAME as MAX_FRAME
from ._wire import CallReply as CallReply
from ._wire import CallRequest as CallRequest
from ._wire import Hello as Hello
from ._wire import Packet as Packet
from ._wire import Ping as Ping
from ._wire import Pong as Pong
from ._wire import RegisterReply as RegisterReply
from ._wire import RegisterRequest as RegisterRequest
from ._wire import ReplyType as ReplyType
from ._wire import UnknownPacket as UnknownPacket
from ._wire import UnregisterReply as UnregisterReply
from ._wire import UnregisterRequest as UnregisterRequest
from ._wire import decode_packet as decode_packet
from ._wire import decode_payload as decode_payload
from ._wire import decode_varint as decode_varint
from ._wire import encode_frame as encode_frame
from ._wire import encode_packet as encode_packet
from ._wire import encode_payload as encode_payload
from ._wire import encode_varint as encode_varint
from ._wire import read_frames as read_frames

__all__ = [
    "CLIENT_VERSION",
    "CLOSE_BOUND",
    "GFTP_CHUNK_SIZE",
    "GFTP_PREFIX",
    "MAX_FRAME",
    "CallReply",
    "CallRequest",
    "GetChunk",
    "GetMetadata",
    "GftpChunk",
    "GftpError",
    "GftpIntegrityError",
    "GftpMessage",
    "GftpMetadata",
    "GsbBus",
    "GsbCallError",
    "GsbClosed",
    "GsbError",
    "GsbProtocolError",
    "GsbRegisterError",
    "Handler",
    "Hello",
    "Packet",
    "Ping",
    "Pong",
    "RegisterReply",
    "RegisterRequest",
    "ReplyType",
    "UnknownPacket",
    "UnregisterReply",
    "UnregisterRequest",
    "UploadChunk",
    "UploadFinished",
    "decode_gftp_request",
    "decode_packet",
    "decode_payload",
    "decode_varint",
    "encode_frame",
    "encode_packet",
    "encode_payload",
    "encode_varint",
    "gftp_deliver",
    "gftp_digest",
    "gftp_err",
    "gftp_fetch",
    "gftp_remote_address",
    "gftp_service_id",
    "gftp_url",
    "open_gsb",
    "parse_gftp_url",
    "read_frames",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
