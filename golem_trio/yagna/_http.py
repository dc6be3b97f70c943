"""The HTTP layer under every API class: auth, timeouts, retries, errors and decoding.

Two connection pools: control calls and long polls (event polls, approval waits, exec streams)
never share one, so a control call never queues behind a poll that holds a connection for
seconds.

Which operations are retried (``safe=True``) is decided per operation in the API modules; the
rule is that repeating the request cannot do anything the first one did not already do:
reads (all ``GET``), waits, idempotent writes (``PUT`` of an allocation, accepting a document,
which the daemon treats as idempotent), and removals (``DELETE``, terminate), where a repeat
that finds the object already gone (404/410) means the first attempt went through, so it
counts as success. Creating things (demands, counter-proposals, agreements, activities,
allocations, networks, exec batches) and one-shot transitions (confirm, cancel, reject) are
never repeated: a lost reply there must surface to the caller, who knows what to do. The one
exception is a request the daemon certainly never handled: the connection could not be made
(refused, no route), or a 503 came back (the daemon answers 500 for its own failures, so a 503
is a proxy or a daemon not ready yet). Those are resent, for every operation, within the
same retry policy.

Connection failures and 5xx answers are retried with jittered exponential backoff; a 408 is
retried only on long polls. Timeouts are never retried, so no call outlives its configured
timeout by more than the time of the attempts before it.

Every attempt has an overall deadline, from sending the request to the reply's last byte
(``Timeouts.reply`` for control calls, the wait plus ``long_poll_margin`` and ``connect`` for
long polls), so a reply that trickles in byte by byte still ends in time
(:class:`DaemonTimeout`); and every reply body is capped (``ApiConfig.max_reply_size``,
:class:`ReplyTooLarge`), checked against ``Content-Length`` first and then as it is read.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from typing import Any, Final, overload
from urllib.parse import quote, urlencode, urlsplit

import httpx2
import trio

from ._config import ApiConfig
from ._convert import decode
from ._errors import (
    DaemonTimeout,
    DaemonUnreachable,
    DecodeError,
    ReplyTooLarge,
    error_for_status,
    remember_secret,
)
from ._transport import BodyTooLarge, Call, DeadlinePassed, Http11Transport

__all__ = ["NO_BODY", "HttpLayer"]

logger = logging.getLogger("golem_trio.yagna")


class _NoBody:
    def __repr__(self) -> str:
        return "NO_BODY"


#: Marks a request with no body (distinct from a JSON ``null`` body).
NO_BODY: Final = _NoBody()

#: Seconds that closing a reply cut short may take (shielded).
_CLOSE_BOUND = 1.0

#: Connections of the control pool, and so control requests in flight at once.
_CONTROL_CONNECTIONS = 32

#: Idle connections the long-poll pool keeps.
_LONG_POLL_IDLE = 64

_MAX_ERROR_TEXT = 2000


#: Characters left as they are in a path: httpx's choice (the WHATWG path percent-encode set's
#: complement in printable ASCII), so both transports send the same target.
_PATH_SAFE = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>?`{}')


def _query_value(value: Any) -> str:
    """A query parameter's text, as httpx writes it (``true``/``false`` for booleans)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _pool_transport(
    config: ApiConfig, *, connections: int | None, idle: int
) -> httpx2.AsyncBaseTransport | Http11Transport:
    """A pool's transport when none is given: ours for a plain-HTTP daemon, httpx's for
    anything else (at most ``connections`` at once, ``idle`` kept alive)."""
    if _plain_http(config):
        return Http11Transport(max_idle=idle)
    return httpx2.AsyncHTTPTransport(
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=idle),
        trust_env=False,
    )


def _plain_http(config: ApiConfig) -> bool:
    """Whether every API of ``config`` is reached over ``http://`` (what our own transport
    speaks; anything else goes through httpx's)."""
    urls = (config.api_url, config.market_url, config.activity_url, config.payment_url)
    return all(url is None or url.startswith("http://") for url in (*urls, config.net_url))


def _error_message(response: httpx2.Response) -> str | None:
    """What the daemon said: JSON ``message``, RFC 7807 ``detail``/``title``, or plain text."""
    return _error_text(response.content, response.encoding or "utf-8")


def _error_text(content: bytes, encoding: str = "utf-8") -> str | None:
    """What the daemon said in ``content`` (see :func:`_error_message`)."""
    text = content.decode(encoding, "replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_ERROR_TEXT]
    if isinstance(data, Mapping):
        for key in ("message", "detail", "title"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:_MAX_ERROR_TEXT]
        if "message" in data and data["message"] is None:
            return None
    if isinstance(data, str):
        return data[:_MAX_ERROR_TEXT]
    return text[:_MAX_ERROR_TEXT]


class HttpLayer:
    """Owns the HTTP clients; shared by the API classes of one :class:`YagnaClient`."""

    def __init__(
        self,
        config: ApiConfig,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        long_poll_transport: httpx2.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        remember_secret(config.app_key)
        t = config.timeouts
        headers = {
            "Authorization": f"Bearer {config.app_key}",
            "Accept": "application/json",
        }
        timeout = httpx2.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        # Calls (control and long polls) go straight to a transport: the one given (tests), else
        # one of our own making (see ``_pool_transport``). httpx's clients stay for what needs
        # their whole machinery: event streams and websockets.
        given_poll = long_poll_transport if long_poll_transport is not None else transport
        self._control_transport = (
            transport
            if transport is not None
            else _pool_transport(
                config, connections=_CONTROL_CONNECTIONS, idle=_CONTROL_CONNECTIONS
            )
        )
        self._poll_transport = (
            given_poll
            if given_poll is not None
            else _pool_transport(config, connections=None, idle=_LONG_POLL_IDLE)
        )
        # The transports made here (given ones belong to whoever gave them).
        self._owned = [
            made
            for made, given in (
                (self._control_transport, transport),
                (self._poll_transport, given_poll),
            )
            if given is None
        ]
        self._control = httpx2.AsyncClient(
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx2.Limits(
                max_connections=_CONTROL_CONNECTIONS,
                max_keepalive_connections=_CONTROL_CONNECTIONS,
            ),
            trust_env=False,
        )
        self._long = httpx2.AsyncClient(
            headers=headers,
            timeout=timeout,
            transport=long_poll_transport if long_poll_transport is not None else transport,
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=_LONG_POLL_IDLE),
            trust_env=False,
        )
        self._headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        self._control_timeout = timeout.as_dict()
        # Control requests past the pool's connections wait here, in trio's FIFO: a pool's
        # own queue may be scanned on every release (httpx's is), so hundreds of waiters
        # there (a large cluster starting) would cost time quadratic in their number.
        self._control_slots = trio.CapacityLimiter(_CONTROL_CONNECTIONS)
        self._rng = rng if rng is not None else random.Random()

    async def aclose(self) -> None:
        """Close both connection pools (shielded and bounded, so it completes even when the
        caller is being cancelled)."""
        with trio.move_on_after(5.0, shield=True):
            await self._control.aclose()
            await self._long.aclose()
            for owned in self._owned:
                await owned.aclose()

    @overload
    def redact(self, text: str) -> str: ...
    @overload
    def redact(self, text: None) -> None: ...
    def redact(self, text: str | None) -> str | None:
        """``text`` with the app key blanked out (a daemon may echo what it was sent)."""
        if text is None or self.config.app_key not in text:
            return text
        return text.replace(self.config.app_key, "***")

    def long_poll_timeout(self, wait: float) -> httpx2.Timeout:
        t = self.config.timeouts
        return httpx2.Timeout(
            connect=t.connect, read=wait + t.long_poll_margin, write=t.write, pool=t.pool
        )

    def stream_timeout(self) -> httpx2.Timeout:
        t = self.config.timeouts
        return httpx2.Timeout(connect=t.connect, read=t.stream_read, write=t.write, pool=t.pool)

    def client(self, *, long_poll: bool) -> httpx2.AsyncClient:
        return self._long if long_poll else self._control

    def deadline(self, long_poll: float | None) -> float:
        """Seconds one attempt may take in all, from sending the request to the reply's last
        byte (``inf``: no overall deadline)."""
        t = self.config.timeouts
        if long_poll is not None:
            return long_poll + t.long_poll_margin + t.connect
        return math.inf if t.reply is None else t.reply

    async def _exchange(
        self,
        transport: httpx2.AsyncBaseTransport,
        operation: str,
        method: str,
        path: str,
        request: httpx2.Request,
        deadline: float,
    ) -> tuple[int, bytes]:
        """Send ``request`` and read its whole reply within ``deadline`` seconds, at most
        ``max_reply_size`` bytes of body; the reply's status and body.

        Raises :class:`DaemonTimeout` (the transport's phases or the deadline),
        :class:`ReplyTooLarge`, and httpx's transport errors as they are. Cancellation: a
        checkpoint; a reply cut short is closed (shielded, bounded).
        """
        cap = self.config.max_reply_size
        response: httpx2.Response | None = None
        read = False
        with trio.move_on_after(deadline) as scope:
            try:
                response = await transport.handle_async_request(request)
                response.request = request
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > cap:
                    raise ReplyTooLarge(
                        operation,
                        f"{method} {path}: reply of {announced} bytes, more than {cap}",
                        limit=cap,
                        size=int(announced),
                    )
                chunks: list[bytes] = []
                size = 0
                # The body as sent: no ``Accept-Encoding`` is asked for, so none is decoded.
                async for part in response.stream:  # type: ignore[union-attr]
                    size += len(part)
                    if size > cap:
                        raise ReplyTooLarge(
                            operation,
                            f"{method} {path}: reply larger than {cap} bytes",
                            limit=cap,
                            size=size,
                        )
                    chunks.append(part)
                # What ``aread()`` would have stored; the reply is read, as a non-streamed one.
                response._content = b"".join(chunks)
                read = True
            finally:
                if response is not None:
                    if read:
                        await response.aclose()
                    else:
                        with trio.move_on_after(_CLOSE_BOUND, shield=True):
                            await response.aclose()
        if scope.cancelled_caught:
            raise DaemonTimeout(
                operation, f"{method} {path}: the reply did not arrive in full within {deadline} s"
            )
        assert response is not None
        return response.status_code, response.content

    async def _fetch(
        self,
        transport: Http11Transport,
        operation: str,
        method: str,
        path: str,
        call: Call,
        deadline: float,
    ) -> tuple[int, bytes]:
        """:meth:`_exchange` through our own transport, without httpx's objects."""
        cap = self.config.max_reply_size
        try:
            return await transport.fetch(call, cap, deadline)
        except BodyTooLarge as exc:
            if exc.announced:
                message = f"{method} {path}: reply of {exc.size} bytes, more than {cap}"
            else:
                message = f"{method} {path}: reply larger than {cap} bytes"
            raise ReplyTooLarge(operation, message, limit=cap, size=exc.size) from None
        except DeadlinePassed:
            raise DaemonTimeout(
                operation, f"{method} {path}: the reply did not arrive in full within {deadline} s"
            ) from None

    def _headers_and_body(
        self, body: Any, headers: Mapping[str, str] | None
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """A call's headers (the layer's own, each replaced by a given one of the same name,
        then the given ones) and its JSON body (``None``: no body), for either transport."""
        all_headers = list(self._headers)
        if headers:
            names = {key.lower() for key in headers}
            all_headers = [(k, v) for k, v in all_headers if k.decode().lower() not in names]
            all_headers.extend((k.encode(), v.encode()) for k, v in headers.items())
        if body is NO_BODY:
            return all_headers, None
        all_headers.append((b"Content-Type", b"application/json"))
        return all_headers, json.dumps(body, separators=(",", ":")).encode()

    def _call(
        self,
        method: str,
        url: str,
        body: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        long_poll: float | None,
    ) -> tuple[Call, str]:
        """A call's request for our own transport, and its path (for messages): the same
        bytes :meth:`_request` would send."""
        parts = urlsplit(url)
        path = parts.path or "/"
        target = quote(path, safe=_PATH_SAFE)
        if parts.query:
            target += "?" + parts.query
        if params:
            query = urlencode([(k, _query_value(v)) for k, v in params.items() if v is not None])
            if query:
                target += ("&" if parts.query else "?") + query
        given, content = self._headers_and_body(body, headers)
        all_headers = [(b"Host", parts.netloc.encode("ascii")), *given]
        if content is not None:
            all_headers.append((b"Content-Length", str(len(content)).encode()))
        elif method in ("POST", "PUT", "PATCH"):
            all_headers.append((b"Content-Length", b"0"))
        t = self.config.timeouts
        read = t.read if long_poll is None else long_poll + t.long_poll_margin
        call = Call(
            method=method.encode("ascii"),
            origin=(parts.hostname or "", parts.port or 80),
            target=target.encode("ascii"),
            headers=all_headers,
            content=content or b"",
            connect=t.connect,
            write=t.write,
            read=read,
        )
        return call, path

    def _request(
        self,
        method: str,
        url: str,
        body: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        long_poll: float | None,
    ) -> httpx2.Request:
        """A call's request, as :meth:`build` makes it, without a client's machinery."""
        all_headers, content = self._headers_and_body(body, headers)
        clean_params = {k: v for k, v in params.items() if v is not None} if params else None
        if long_poll is None:
            timeout = self._control_timeout
        else:
            timeout = self.long_poll_timeout(long_poll).as_dict()
        return httpx2.Request(
            method,
            url,
            params=clean_params or None,
            headers=all_headers,
            content=content,
            extensions={"timeout": timeout},
        )

    def build(
        self,
        method: str,
        url: str,
        *,
        body: Any = NO_BODY,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        long_poll: float | None = None,
        stream: bool = False,
    ) -> httpx2.Request:
        """Build a request (used for sending and by tests that check requests)."""
        all_headers = dict(headers or {})
        content: bytes | None = None
        if body is not NO_BODY:
            content = json.dumps(body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        client = self.client(long_poll=long_poll is not None or stream)
        if stream:
            timeout = self.stream_timeout()
        elif long_poll is not None:
            timeout = self.long_poll_timeout(long_poll)
        else:
            timeout = client.timeout
        return client.build_request(
            method,
            url,
            content=content,
            params=clean_params or None,
            headers=all_headers,
            timeout=timeout,
        )

    async def call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        body: Any = NO_BODY,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        safe: bool = False,
        long_poll: float | None = None,
        gone_ok: bool = False,
        retry_408: bool = False,
    ) -> bytes:
        """Send one operation's request, retrying per the rules above; the body of its 2xx
        reply.

        ``long_poll`` is the wait (s) the daemon was asked for: the read timeout grows by it and
        the request goes on the long-poll pool. ``retry_408`` retries a 408 (event long polls
        only: for approval waits and activity creation a 408 is the answer).

        Raises :class:`ApiError` (a subclass per status) for other statuses,
        :class:`DaemonUnreachable` and :class:`DaemonTimeout` for transport failures (and
        :class:`DaemonTimeout` when an attempt's reply is not in full by its overall
        deadline), :class:`ReplyTooLarge` for a reply body past ``max_reply_size``.

        Cancellation: a checkpoint. If cancelled, the request may or may not have reached the
        daemon.
        """
        transport = self._control_transport if long_poll is None else self._poll_transport
        policy = self.config.retry
        attempt = 0
        while True:
            started = time.monotonic()
            if isinstance(transport, Http11Transport):
                call, path = self._call(method, url, body, params, headers, long_poll)
                exchange = functools.partial(
                    self._fetch, transport, operation, method, path, call, self.deadline(long_poll)
                )
            else:
                request = self._request(method, url, body, params, headers, long_poll)
                path = request.url.path
                exchange = functools.partial(
                    self._exchange,
                    transport,
                    operation,
                    method,
                    path,
                    request,
                    self.deadline(long_poll),
                )
            try:
                held = await self._hold_slot(long_poll is None, operation, method, path)
                try:
                    status, content = await exchange()
                finally:
                    if held:
                        self._control_slots.release()
            except httpx2.TimeoutException as exc:
                raise DaemonTimeout(
                    operation, f"{method} {path}: no answer in time ({type(exc).__name__})"
                ) from exc
            except httpx2.TransportError as exc:
                failure = self.redact(f"{type(exc).__name__}: {exc}")
                undelivered = isinstance(exc, httpx2.ConnectError)
                if not (safe or undelivered) or attempt + 1 >= policy.max_attempts:
                    raise DaemonUnreachable(operation, f"{method} {path}: {failure}") from exc
                await self._backoff(operation, method, path, attempt, failure)
                attempt += 1
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s %s -> %d in %.3fs",
                    operation,
                    method,
                    path,
                    status,
                    time.monotonic() - started,
                    extra={"operation": operation, "status": status},
                )
            if 200 <= status < 300 or (gone_ok and attempt > 0 and status in (404, 410)):
                # (A repeated removal that finds the object gone: an earlier attempt went
                # through before its reply got lost.)
                return content
            retryable = (safe and (status >= 500 or (retry_408 and status == 408))) or status == 503
            if not retryable or attempt + 1 >= policy.max_attempts:
                raise error_for_status(status)(
                    operation,
                    status=status,
                    message=self.redact(_error_text(content)),
                    method=method,
                    path=path,
                )
            await self._backoff(operation, method, path, attempt, f"status {status}")
            attempt += 1

    async def _hold_slot(self, control: bool, operation: str, method: str, path: str) -> bool:
        """Take one of the control pool's connections for a request; whether one was taken
        (long polls take none), to release once the reply is read. Waiting is bounded by the
        pool timeout, as httpx bounds its own wait (:class:`DaemonTimeout`).

        Cancellation: a checkpoint; if cancelled, nothing was taken."""
        if not control:
            await trio.lowlevel.checkpoint()
            return False
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            # A free connection is taken without a timer (most calls: a cancel scope per
            # call is a cost that shows at hundreds of instances).
            self._control_slots.acquire_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        wait = self.config.timeouts.pool
        with trio.move_on_after(wait) as waiting:
            await self._control_slots.acquire()
        if waiting.cancelled_caught:
            raise DaemonTimeout(operation, f"{method} {path}: no connection free within {wait} s")
        return True

    async def _backoff(
        self, operation: str, method: str, path: str, attempt: int, failure: str
    ) -> None:
        delay = self.config.retry.delay(attempt, self._rng.random())
        logger.info(
            "%s %s %s failed (%s); retry %d in %.2fs",
            operation,
            method,
            path,
            failure,
            attempt + 1,
            delay,
            extra={"operation": operation},
        )
        await trio.sleep(delay)

    async def call_json(
        self,
        operation: str,
        method: str,
        url: str,
        result: Any,
        **kwargs: Any,
    ) -> Any:
        """:meth:`call`, then decode the JSON reply into ``result`` (a type)."""
        content = await self.call(operation, method, url, **kwargs)
        return decode(operation, parse_json(operation, content), result)


def parse_json(operation: str, content: bytes) -> Any:
    """The JSON body of a reply (``None`` for an empty one); :class:`DecodeError` if it is not
    JSON."""
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except ValueError as exc:
        snippet = content[:80].decode("utf-8", "replace")
        raise DecodeError(operation, f"reply is not JSON: {snippet!r}") from exc
    except RecursionError as exc:
        raise DecodeError(operation, "reply JSON is nested too deeply") from exc
