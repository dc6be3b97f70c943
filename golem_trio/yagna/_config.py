"""Client configuration: where the daemon is, the app key, timeouts and the retry policy.

Small frozen value classes with module-level defaults, in the manner of httpx's ``Timeout`` and
``Limits``. :meth:`ApiConfig.from_env` reads the environment variables yagna's tools use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from ._errors import ConfigError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_GSB_URL",
    "DEFAULT_MAX_REPLY_SIZE",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "EVENT_WAIT",
    "ApiConfig",
    "RetryPolicy",
    "Timeouts",
]

DEFAULT_API_URL = "http://127.0.0.1:7465"
#: Where a yagna daemon's service bus listens unless ``GSB_URL`` says otherwise.
DEFAULT_GSB_URL = "tcp://127.0.0.1:7464"
#: The default cap on the size of one reply body (64 MiB).
DEFAULT_MAX_REPLY_SIZE = 64 * 1024 * 1024
#: How long (s) the engine's event feeds (offers, agreement, debit note and invoice events)
#: ask the daemon to hold a poll that has nothing to answer yet. An event ends the wait at
#: once, so this sets only what an idle engine spends: one request per feed per wait. A
#: stalled daemon is noticed on these polls after the wait plus ``long_poll_margin``.
EVENT_WAIT = 15.0


@attrs.frozen
class Timeouts:
    """How long a call may take before :class:`~golem_trio.yagna.DaemonTimeout` is raised.

    ``connect``, ``read``, ``write`` and ``pool`` are httpx's phases, in seconds, for control
    calls. Long polls ask the daemon to wait ``T`` seconds; their read timeout is ``T`` plus
    ``long_poll_margin``, so a stalled daemon is noticed soon after the wait it was asked for.
    ``stream_read`` bounds the silence between two chunks of an exec event stream (``None``:
    no bound, the caller's cancel scope decides, since a command may run quietly for hours).

    ``reply`` is the overall deadline of one attempt of a control call: from sending the
    request until the last byte of the reply (headers and body), however the reply trickles
    in; ``None`` for no overall deadline. A long poll's overall deadline is its wait plus
    ``long_poll_margin`` (plus ``connect``). Passing it raises
    :class:`~golem_trio.yagna.DaemonTimeout`. The exec event stream has none (see
    ``stream_read``).
    """

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 30.0
    long_poll_margin: float = 10.0
    stream_read: float | None = None
    reply: float | None = attrs.field(default=60.0)

    @reply.validator
    def _check_reply(self, _attribute: object, value: float | None) -> None:
        if value is not None and not value > 0:
            raise ValueError(f"reply must be > 0 seconds (or None), got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Retries with jittered exponential backoff, for operations that are safe to repeat.

    The n-th retry (from 0) waits ``uniform(0.5, 1) * min(max_delay, base_delay * 2**n)``.
    ``max_attempts`` counts the first try, so ``1`` disables retries.
    """

    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))

    def delay(self, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number ``retry``; ``jitter`` is uniform in [0, 1)."""
        return (0.5 + jitter / 2) * min(self.max_delay, self.base_delay * 2.0**retry)


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY = RetryPolicy()


def _root(url: str) -> str:
    return url.rstrip("/")


def _gsb_url_from_env() -> str:
    return os.environ.get("GSB_URL") or DEFAULT_GSB_URL


@attrs.frozen
class ApiConfig:
    """Where the daemon is and how to talk to it.

    ``app_key`` is sent as ``Authorization: Bearer``; it never appears in ``repr()``, logs or
    error messages. Each API's base URL defaults to ``api_url`` plus the daemon's standard
    prefix and can be overridden one by one (as ``YAGNA_MARKET_URL`` and friends do).
    ``max_reply_size`` caps the body of every reply, in bytes after decompression (default
    :data:`DEFAULT_MAX_REPLY_SIZE`); a larger reply raises
    :class:`~golem_trio.yagna.ReplyTooLarge` (the exec event stream is not capped as a whole).
    ``gsb_url`` is the daemon's service bus (``tcp://host:port`` or ``unix:/path``), where
    gftp transfers are served; by default ``GSB_URL``, else :data:`DEFAULT_GSB_URL`.
    """

    app_key: str = attrs.field(repr=False)
    api_url: str = attrs.field(default=DEFAULT_API_URL, converter=_root)
    market_url: str | None = None
    activity_url: str | None = None
    payment_url: str | None = None
    net_url: str | None = None
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    retry: RetryPolicy = DEFAULT_RETRY
    max_reply_size: int = attrs.field(
        default=DEFAULT_MAX_REPLY_SIZE, validator=attrs.validators.ge(1)
    )
    gsb_url: str = attrs.field(factory=_gsb_url_from_env)

    @app_key.validator
    def _check_app_key(self, _attribute: object, value: str) -> None:
        if not value:
            raise ConfigError("the app key is empty; set YAGNA_APPKEY or pass app_key=")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ApiConfig:
        """Build a configuration from ``YAGNA_APPKEY``, ``YAGNA_API_URL`` and the per-API
        ``YAGNA_MARKET_URL``, ``YAGNA_ACTIVITY_URL``, ``YAGNA_PAYMENT_URL``, ``YAGNA_NET_URL``
        and ``GSB_URL`` (the service bus).

        Keyword arguments override what the environment says. Raises :class:`ConfigError` if no
        app key is given either way.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("YAGNA_APPKEY"):
            values["app_key"] = env["YAGNA_APPKEY"]
        for name, var in (
            ("api_url", "YAGNA_API_URL"),
            ("market_url", "YAGNA_MARKET_URL"),
            ("activity_url", "YAGNA_ACTIVITY_URL"),
            ("payment_url", "YAGNA_PAYMENT_URL"),
            ("net_url", "YAGNA_NET_URL"),
            ("gsb_url", "GSB_URL"),
        ):
            if env.get(var):
                values[name] = env[var]
        values.setdefault("gsb_url", DEFAULT_GSB_URL)
        values.update(overrides)
        if "app_key" not in values:
            raise ConfigError("no app key: set YAGNA_APPKEY or pass app_key=")
        return cls(**values)  # type: ignore[arg-type]

    @property
    def market_base(self) -> str:
        """Base URL of the market API (``…/market-api/v1``)."""
        return _root(self.market_url or f"{self.api_url}/market-api/v1")

    @property
    def activity_base(self) -> str:
        """Base URL of the activity API (``…/activity-api/v1``)."""
        return _root(self.activity_url or f"{self.api_url}/activity-api/v1")

    @property
    def payment_base(self) -> str:
        """Base URL of the payment API (``…/payment-api/v1``)."""
        return _root(self.payment_url or f"{self.api_url}/payment-api/v1")

    @property
    def net_base(self) -> str:
        """Base URL of the net API in its v1 layout (``…/net-api/v1``)."""
        return _root(self.net_url or f"{self.api_url}/net-api/v1")

    @property
    def net_v2_base(self) -> str:
        """Base URL of the net API in its v2 layout (``…/net-api/v2``).

        Derived from :attr:`net_base` when that ends in ``/v1``, else from ``api_url``.
        """
        base = self.net_base
        if base.endswith("/v1"):
            return base[: -len("/v1")] + "/v2"
        return f"{self.api_url}/net-api/v2"
