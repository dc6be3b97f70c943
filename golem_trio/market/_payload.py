"""Payloads: what a demand asks providers to run, as flat properties and constraint clauses.

A :class:`Payload` contributes ``properties()`` (flat dotted keys, as the market API takes them)
and ``constraints()`` (clauses in the daemon's LDAP-like filter syntax, each one parenthesised),
which the demand builder ANDs together with its own.

VM images are named by their sha3 hash. Turning a hash or a tag into the URL a provider downloads
is an :class:`ImageResolver`'s job: :class:`RegistryResolver` asks an image registry over HTTP,
:class:`StaticResolver` derives the URL locally and never does I/O (for targets that already
know their images, such as LocalNet). :data:`current_resolver` holds the resolver used when none
is passed explicitly.
"""

from __future__ import annotations

import abc
import base64
import binascii
import contextlib
import contextvars
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs
import httpx2
import trio

from .._errors import GolemError

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "DEFAULT_STATIC_URL_TEMPLATE",
    "REGISTRY_URL_ENV",
    "BadRegistryReply",
    "CustomPayload",
    "ImageNotFound",
    "ImageResolver",
    "ManifestPayload",
    "Payload",
    "PayloadError",
    "RegistryError",
    "RegistryResolver",
    "RegistryUnavailable",
    "ResolvedImage",
    "StaticResolver",
    "VmPayload",
    "current_resolver",
    "get_resolver",
    "use_resolver",
]

logger = logging.getLogger(__name__)

#: The public Golem image registry.
DEFAULT_REGISTRY_URL: Final = "https://registry.golem.network"
#: Environment variable overriding :data:`DEFAULT_REGISTRY_URL`.
REGISTRY_URL_ENV: Final = "GOLEM_REGISTRY_URL"
#: The URL :class:`StaticResolver` gives an image unless told otherwise (``.invalid`` never
#: resolves, so nothing can be downloaded from it by accident).
DEFAULT_STATIC_URL_TEMPLATE: Final = "http://localnet.invalid/images/{hash}.gvmi"

# Property and constraint names.
TASK_PACKAGE: Final = "golem.srv.comp.task_package"
PACKAGE_FORMAT: Final = "golem.srv.comp.vm.package_format"
MANIFEST: Final = "golem.srv.comp.payload"
MANIFEST_SIG: Final = "golem.srv.comp.payload.sig"
MANIFEST_SIG_ALGORITHM: Final = "golem.srv.comp.payload.sig.algorithm"
MANIFEST_CERT: Final = "golem.srv.comp.payload.cert"
NODE_DESCRIPTOR: Final = "golem.!exp.gap-31.v0.node.descriptor"
INF_MEM: Final = "golem.inf.mem.gib"
INF_STORAGE: Final = "golem.inf.storage.gib"
INF_THREADS: Final = "golem.inf.cpu.threads"
RUNTIME_NAME: Final = "golem.runtime.name"
RUNTIME_CAPABILITIES: Final = "golem.runtime.capabilities"
RUNTIME_VM: Final = "vm"
GVMKIT_SQUASH: Final = "gvmkit-squash"
CAP_MANIFEST_SUPPORT: Final = "manifest-support"

_HASH_RE = re.compile(r"[0-9a-fA-F]{56}|[0-9a-fA-F]{64}")
# Characters that would change the meaning of a constraint clause if put in a name or value.
_CONSTRAINT_SPECIALS = frozenset("()&|!=<>*\\ \t\r\n")


# --- errors ---------------------------------------------------------------------------------------


class PayloadError(GolemError, ValueError):
    """A payload cannot be built from what was given (a bad hash, a negative memory size...)."""


class RegistryError(PayloadError):
    """An image could not be resolved to a download URL."""


class ImageNotFound(RegistryError):
    """The registry does not know the image (hash or tag)."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, timed out or failed (5xx, unexpected status)."""


class BadRegistryReply(RegistryError):
    """The registry answered, but not with the image description expected."""


# --- validation -----------------------------------------------------------------------------------


def _check_hash(value: str) -> str:
    if not isinstance(value, str) or _HASH_RE.fullmatch(value) is None:
        raise PayloadError(
            f"image_hash must be 56 (sha3-224) or 64 (sha3-256) hex characters, got {value!r}"
        )
    return value.lower()


def _check_url(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be a string, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or value != value.strip():
        raise PayloadError(f"{what} must be an absolute http(s) URL, got {value!r}")
    if any(c.isspace() for c in value):
        raise PayloadError(f"{what} must not contain whitespace, got {value!r}")
    return value


def _check_positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PayloadError(f"{what} must be positive, got {value!r}")
    return float(value)


def _check_threads(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"min_cpu_threads must be an integer, got {value!r}")
    if value < 1:
        raise PayloadError(f"min_cpu_threads must be at least 1, got {value!r}")
    return value


def _check_capabilities(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise PayloadError(f"capabilities must be a list of names, not the string {values!r}")
    seen: list[str] = []
    for cap in values:
        if not isinstance(cap, str) or not cap or _CONSTRAINT_SPECIALS & set(cap):
            raise PayloadError(f"invalid capability name {cap!r}")
        if cap not in seen:
            seen.append(cap)
    return tuple(seen)


def _check_clause(clause: str) -> str:
    """A constraint clause: one parenthesised filter with balanced parentheses."""
    if not isinstance(clause, str):
        raise PayloadError(f"a constraint must be a string, got {clause!r}")
    text = clause.strip()
    depth = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0 or (depth == 0 and i != len(text) - 1):
                break
    else:
        if text.startswith("(") and depth == 0:
            return text
    raise PayloadError(f"a constraint must be one parenthesised clause, got {clause!r}")


def _format_number(value: float) -> str:
    return repr(value)


def _resource_constraints(
    mem: float, storage: float, threads: int, capabilities: Sequence[str], runtime: str
) -> list[str]:
    return [
        f"({INF_MEM}>={_format_number(mem)})",
        f"({INF_STORAGE}>={_format_number(storage)})",
        f"({INF_THREADS}>={threads})",
        *(f"({RUNTIME_CAPABILITIES}={cap})" for cap in capabilities),
        f"({RUNTIME_NAME}={runtime})",
    ]


# --- payloads -------------------------------------------------------------------------------------


@attrs.frozen
class Payload(abc.ABC):
    """What a demand asks providers to run.

    Subclasses declare the demand properties and constraint clauses it contributes.
    """

    @abc.abstractmethod
    def properties(self) -> dict[str, Any]:
        """Demand properties as flat dotted keys with JSON values."""

    @abc.abstractmethod
    def constraints(self) -> list[str]:
        """Constraint clauses, each one parenthesised, meant to be ANDed together."""


def _copy_properties(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"properties must be a mapping, got {value!r}")
    props = dict(value)
    for key in props:
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise PayloadError(f"invalid property name {key!r}")
    try:
        json.dumps(props, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"property values must be JSON values: {exc}") from None
    return props


def _copy_clauses(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(_check_clause(c) for c in value)


@attrs.frozen
class CustomPayload(Payload):
    """A payload for any runtime: declared properties and constraint clauses, used as given.

    A single clause may be passed as a string. :meth:`for_runtime` adds the
    ``(golem.runtime.name=<name>)`` clause.
    """

    _properties: dict[str, Any] = attrs.field(
        factory=dict, converter=_copy_properties, alias="properties"
    )
    _constraints: tuple[str, ...] = attrs.field(
        default=(), converter=_copy_clauses, alias="constraints"
    )

    @classmethod
    def for_runtime(
        cls,
        runtime: str,
        *,
        properties: Mapping[str, Any] | None = None,
        constraints: Iterable[str] = (),
    ) -> CustomPayload:
        """A payload requiring providers to offer the runtime named ``runtime``."""
        if not isinstance(runtime, str) or not runtime or _CONSTRAINT_SPECIALS & set(runtime):
            raise PayloadError(f"invalid runtime name {runtime!r}")
        clauses = [constraints] if isinstance(constraints, str) else list(constraints)
        return cls(properties or {}, [f"({RUNTIME_NAME}={runtime})", *clauses])

    def properties(self) -> dict[str, Any]:
        return dict(self._properties)

    def constraints(self) -> list[str]:
        return list(self._constraints)


@attrs.frozen(kw_only=True)
class VmPayload(Payload):
    """A VM image (``gvmkit-squash``) and the resources it needs.

    ``image_url`` is where providers download the image; ``None`` leaves only the hash in
    ``golem.srv.comp.task_package`` (``hash:sha3:<hash>``), for targets that know images by
    hash. Inputs are validated on construction and raise :class:`PayloadError`.
    """

    image_hash: str = attrs.field(converter=_check_hash)
    image_url: str | None = attrs.field(default=None)
    package_format: str = GVMKIT_SQUASH
    min_mem_gib: float = attrs.field(default=0.5)
    min_storage_gib: float = attrs.field(default=2.0)
    min_cpu_threads: int = attrs.field(default=1)
    capabilities: tuple[str, ...] = attrs.field(default=(), converter=_check_capabilities)

    def __attrs_post_init__(self) -> None:
        # Validate here rather than with converters, so that the declared types stay exact.
        if self.image_url is not None:
            _check_url(self.image_url, "image_url")
        if not isinstance(self.package_format, str) or not self.package_format:
            raise PayloadError(f"invalid package_format {self.package_format!r}")
        object.__setattr__(self, "min_mem_gib", _check_positive(self.min_mem_gib, "min_mem_gib"))
        object.__setattr__(
            self, "min_storage_gib", _check_positive(self.min_storage_gib, "min_storage_gib")
        )
        _check_threads(self.min_cpu_threads)

    @property
    def task_package(self) -> str:
        """The ``golem.srv.comp.task_package`` value: ``hash:sha3:<hash>[:<url>]``."""
        if self.image_url is None:
            return f"hash:sha3:{self.image_hash}"
        return f"hash:sha3:{self.image_hash}:{self.image_url}"

    def properties(self) -> dict[str, Any]:
        return {TASK_PACKAGE: self.task_package, PACKAGE_FORMAT: self.package_format}

    def constraints(self) -> list[str]:
        return _resource_constraints(
            self.min_mem_gib,
            self.min_storage_gib,
            self.min_cpu_threads,
            self.capabilities,
            RUNTIME_VM,
        )


def _is_base64_json_object(text: str) -> bool:
    try:
        decoded = base64.b64decode(text, validate=True)
        return isinstance(json.loads(decoded), dict)
    except (binascii.Error, ValueError):
        return False


def encode_manifest(manifest: str | bytes | Mapping[str, Any]) -> str:
    """The base64 text of a manifest given as a mapping, JSON text/bytes, or base64 already.

    Text or bytes that parse as a JSON object are encoded; otherwise they must be the base64 of
    a JSON object (yapapi's form) and are used as they are.
    """
    if isinstance(manifest, Mapping):
        try:
            raw = json.dumps(dict(manifest), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"the manifest is not JSON-serialisable: {exc}") from None
        return base64.b64encode(raw).decode("ascii")
    if isinstance(manifest, bytes | bytearray):
        try:
            text = bytes(manifest).decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("manifest bytes must be UTF-8 JSON or base64 text") from None
    elif isinstance(manifest, str):
        text = manifest
    else:
        raise PayloadError(f"a manifest must be a str, bytes or mapping, got {manifest!r}")
    text = text.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise PayloadError(f"the manifest is not valid JSON: {exc}") from None
        if isinstance(parsed, dict):
            return base64.b64encode(text.encode()).decode("ascii")
    if _is_base64_json_object(text):
        return text
    raise PayloadError("a manifest must be a JSON object or the base64 of one")


def encode_blob(value: str | bytes, what: str) -> str:
    """Base64 text of a signature or certificate: bytes are encoded, PEM text is encoded, any
    other text must be base64 already."""
    if isinstance(value, bytes | bytearray):
        if not value:
            raise PayloadError(f"{what} is empty")
        return base64.b64encode(bytes(value)).decode("ascii")
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be str or bytes, got {value!r}")
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return base64.b64encode(text.encode()).decode("ascii")
    try:
        if not text or not base64.b64decode(text, validate=True):
            raise PayloadError(f"{what} is empty")
    except binascii.Error:
        raise PayloadError(f"{what} must be bytes, PEM text or base64 text") from None
    return text


@attrs.frozen(kw_only=True)
class ManifestPayload(Payload):
    """A VM described by a computation payload manifest (outbound internet and the like).

    ``manifest``, ``manifest_sig`` and ``manifest_cert`` are base64 text (see
    :func:`golem_trio.market.vm.manifest`, which encodes what it is given). The
    ``manifest-support`` capability is always required.
    """

    manifest: str
    manifest_sig: str | None = None
    manifest_sig_algorithm: str | None = None
    manifest_cert: str | None = None
    node_descriptor: dict[str, Any] | None = None
    package_format: str = GVMKIT_SQUASH
    min_mem_gib: float = 0.5
    min_storage_gib: float = 2.0
    min_cpu_threads: int = 1
    capabilities: tuple[str, ...] = attrs.field(default=(), converter=_check_capabilities)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.manifest, str) or not _is_base64_json_object(self.manifest):
            raise PayloadError("manifest must be the base64 of a JSON object")
        if self.manifest_sig is None and (
            self.manifest_sig_algorithm is not None or self.manifest_cert is not None
        ):
            raise PayloadError("manifest_sig_algorithm and manifest_cert need manifest_sig")
        if self.manifest_sig_algorithm is not None and (
            not isinstance(self.manifest_sig_algorithm, str) or not self.manifest_sig_algorithm
        ):
            raise PayloadError(f"invalid manifest_sig_algorithm {self.manifest_sig_algorithm!r}")
        if self.node_descriptor is not None:
            _copy_properties(self.node_descriptor)
        object.__setattr__(self, "min_mem_gib", _check_positive(self.min_mem_gib, "min_mem_gib"))
        object.__setattr__(
            self, "min_storage_gib", _check_positive(self.min_storage_gib, "min_storage_gib")
        )
        _check_threads(self.min_cpu_threads)
        if CAP_MANIFEST_SUPPORT not in self.capabilities:
            object.__setattr__(self, "capabilities", (CAP_MANIFEST_SUPPORT, *self.capabilities))

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {MANIFEST: self.manifest}
        if self.manifest_sig is not None:
            props[MANIFEST_SIG] = self.manifest_sig
        if self.manifest_sig_algorithm is not None:
            props[MANIFEST_SIG_ALGORITHM] = self.manifest_sig_algorithm
        if self.manifest_cert is not None:
            props[MANIFEST_CERT] = self.manifest_cert
        if self.node_descriptor is not None:
            props[NODE_DESCRIPTOR] = dict(self.node_descriptor)
        props[PACKAGE_FORMAT] = self.package_format
        return props

    def constraints(self) -> list[str]:
        return _resource_constraints(
            self.min_mem_gib,
            self.min_storage_gib,
            self.min_cpu_threads,
            self.capabilities,
            RUNTIME_VM,
        )


# --- image resolution -----------------------------------------------------------------------------


@attrs.frozen
class ResolvedImage:
    """An image's hash and the URL providers download it from."""

    image_hash: str = attrs.field(converter=_check_hash)
    image_url: str


@runtime_checkable
class ImageResolver(Protocol):
    """Turns an image hash or tag into a :class:`ResolvedImage`.

    Exactly one of ``image_hash`` and ``image_tag`` is given. Raises :class:`ImageNotFound`,
    :class:`RegistryUnavailable` or another :class:`RegistryError`.
    """

    async def resolve(
        self, *, image_hash: str | None = None, image_tag: str | None = None
    ) -> ResolvedImage: ...


def _one_of(image_hash: str | None, image_tag: str | None) -> None:
    if (image_hash is None) == (image_tag is None):
        raise PayloadError("give exactly one of image_hash and image_tag")


def _default_registry_url() -> str:
    return os.environ.get(REGISTRY_URL_ENV) or DEFAULT_REGISTRY_URL


@attrs.frozen(kw_only=True)
class RegistryResolver:
    """Resolves images with the Golem registry's ``GET /v1/image/info?hash=|tag=`` lookup.

    ``base_url`` defaults to ``$GOLEM_REGISTRY_URL`` or :data:`DEFAULT_REGISTRY_URL`, read when
    the resolver is created. ``use_https`` picks the reply's ``https`` URL instead of ``http``.
    ``transport`` replaces httpx's network transport (tests pass ``httpx2.MockTransport``).
    """

    base_url: str = attrs.field(factory=_default_registry_url)
    use_https: bool = False
    timeout: float = 10.0
    transport: httpx2.AsyncBaseTransport | None = attrs.field(default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _check_url(self.base_url, "registry URL")
        _check_positive(self.timeout, "timeout")

    async def resolve(
        self, *, image_hash: str | None = None, image_tag: str | None = None
    ) -> ResolvedImage:
        _one_of(image_hash, image_tag)
        if image_hash is not None:
            image_hash = _check_hash(image_hash)
            params = {"hash": image_hash}
            what = f"image hash {image_hash}"
        else:
            if not isinstance(image_tag, str) or not image_tag.strip():
                raise PayloadError(f"invalid image_tag {image_tag!r}")
            params = {"tag": image_tag}
            what = f"image tag {image_tag!r}"
        url = self.base_url.rstrip("/") + "/v1/image/info"
        logger.debug("resolving %s at %s", what, url)
        try:
            async with httpx2.AsyncClient(
                transport=self.transport, timeout=self.timeout, follow_redirects=True
            ) as client:
                response = await client.get(url, params=params)
        except httpx2.HTTPError as exc:
            raise RegistryUnavailable(
                f"registry {self.base_url} unreachable resolving {what}: {exc!r}"
            ) from exc
        if response.status_code == 404:
            raise ImageNotFound(f"registry {self.base_url} does not know {what}")
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"registry {self.base_url} answered {response.status_code} resolving {what}"
            )
        return self._decode(response, what, image_hash)

    def _decode(
        self, response: httpx2.Response, what: str, image_hash: str | None
    ) -> ResolvedImage:
        try:
            body = response.json()
        except ValueError:
            raise BadRegistryReply(f"registry reply for {what} is not JSON") from None
        key = "https" if self.use_https else "http"
        if not isinstance(body, dict):
            raise BadRegistryReply(f"registry reply for {what} is not a JSON object")
        sha3, image_url = body.get("sha3"), body.get(key)
        if not isinstance(sha3, str) or _HASH_RE.fullmatch(sha3) is None:
            raise BadRegistryReply(f"registry reply for {what} has no valid 'sha3': {sha3!r}")
        if image_hash is not None and sha3.lower() != image_hash:
            raise BadRegistryReply(f"registry reply for {what} names another image: {sha3}")
        try:
            if not isinstance(image_url, str):
                raise PayloadError("not a string")
            _check_url(image_url, "URL")
        except PayloadError:
            raise BadRegistryReply(
                f"registry reply for {what} has no valid {key!r} URL: {image_url!r}"
            ) from None
        return ResolvedImage(sha3, image_url)


def _check_template(template: str) -> str:
    try:
        url = template.format(hash="0" * 56)
    except (KeyError, IndexError, ValueError) as exc:
        raise PayloadError(f"bad URL template {template!r}: {exc!r}") from None
    _check_url(url, "URL template")
    return template


def _copy_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {str(tag): _check_hash(h) for tag, h in dict(tags).items()}


@attrs.frozen(kw_only=True)
class StaticResolver:
    """Resolves images without any I/O: the URL is ``url_template.format(hash=<hash>)``.

    ``tags`` maps the tags it knows to hashes; an unknown tag raises :class:`ImageNotFound`.
    """

    url_template: str = attrs.field(default=DEFAULT_STATIC_URL_TEMPLATE, converter=_check_template)
    tags: dict[str, str] = attrs.field(factory=dict, converter=_copy_tags)

    def url_for(self, image_hash: str) -> str:
        """The URL of the image ``image_hash``."""
        return self.url_template.format(hash=_check_hash(image_hash))

    async def resolve(
        self, *, image_hash: str | None = None, image_tag: str | None = None
    ) -> ResolvedImage:
        _one_of(image_hash, image_tag)
        if image_tag is not None:
            found = self.tags.get(image_tag)
            if found is None:
                raise ImageNotFound(f"unknown image tag {image_tag!r}")
            image_hash = found
        assert image_hash is not None
        image_hash = _check_hash(image_hash)
        await trio.lowlevel.checkpoint()
        return ResolvedImage(image_hash, self.url_for(image_hash))


#: The resolver :func:`golem_trio.market.vm.repo` uses when none is passed; ``None`` means a
#: :class:`RegistryResolver` with default settings. Set it (see :func:`use_resolver`) to keep
#: image lookups away from the network, as a target that knows its images does.
current_resolver: contextvars.ContextVar[ImageResolver | None] = contextvars.ContextVar(
    "golem_trio.market.current_resolver", default=None
)


def get_resolver() -> ImageResolver:
    """The resolver in effect: :data:`current_resolver`, or a default :class:`RegistryResolver`."""
    resolver = current_resolver.get()
    return resolver if resolver is not None else RegistryResolver()


@contextlib.contextmanager
def use_resolver(resolver: ImageResolver) -> Iterator[ImageResolver]:
    """Make ``resolver`` the :data:`current_resolver` for the ``with`` block (and the tasks
    started in it)."""
    token = current_resolver.set(resolver)
    try:
        yield resolver
    finally:
        current_resolver.reset(token)
