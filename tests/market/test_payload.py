"""Payloads: properties, constraints, image resolution and input validation (no network)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
import trio

from golem_trio.market import (
    DEFAULT_REGISTRY_URL,
    BadRegistryReply,
    CustomPayload,
    ImageNotFound,
    ImageResolver,
    ManifestPayload,
    Payload,
    PayloadError,
    RegistryError,
    RegistryResolver,
    RegistryUnavailable,
    ResolvedImage,
    StaticResolver,
    VmPayload,
    current_resolver,
    get_resolver,
    use_resolver,
    vm,
)

SEED_HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
SHA256_HASH = "ab" * 32
REGISTRY = "http://registry.test"
IMAGE_URL = "http://girepo.test/docker-hello-latest.gvmi"

Handler = Callable[[httpx2.Request], httpx2.Response]


class RecordingResolver:
    """An ImageResolver that records its calls and answers from a fixed URL."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str | None]] = []

    async def resolve(
        self, *, image_hash: str | None = None, image_tag: str | None = None
    ) -> ResolvedImage:
        self.calls.append((image_hash, image_tag))
        await trio.lowlevel.checkpoint()
        return ResolvedImage(image_hash or SEED_HASH, "http://recorded.test/image.gvmi")


def registry(handler: Handler, **kwargs: Any) -> RegistryResolver:
    return RegistryResolver(base_url=REGISTRY, transport=httpx2.MockTransport(handler), **kwargs)


def info_reply(image_hash: str = SEED_HASH) -> dict[str, Any]:
    return {
        "sha3": image_hash,
        "http": f"http://registry.test/download/{image_hash}",
        "https": f"https://registry.test/download/{image_hash}",
        "size": 12345,
    }


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a name, connect, or open an HTTP client fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network I/O attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(trio.socket, "socket", refuse)
    monkeypatch.setattr(trio.socket, "getaddrinfo", refuse)
    monkeypatch.setattr(trio, "open_tcp_stream", refuse)
    monkeypatch.setattr(httpx2.AsyncClient, "__init__", refuse)


# --- properties and constraints (docs/daemon-notes.md §3.1) --------------------------------------


def test_vm_payload_properties_and_constraints() -> None:
    payload = VmPayload(image_hash=SEED_HASH, image_url=IMAGE_URL)
    assert isinstance(payload, Payload)
    assert payload.properties() == {
        "golem.srv.comp.task_package": f"hash:sha3:{SEED_HASH}:{IMAGE_URL}",
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
    }
    # The payload part of yapapi's demand example, in its order.
    assert payload.constraints() == [
        "(golem.inf.mem.gib>=0.5)",
        "(golem.inf.storage.gib>=2.0)",
        "(golem.inf.cpu.threads>=1)",
        "(golem.runtime.name=vm)",
    ]


def test_vm_payload_capabilities_and_resources() -> None:
    payload = VmPayload(
        image_hash=SEED_HASH.upper(),
        min_mem_gib=4,
        min_storage_gib=10.5,
        min_cpu_threads=2,
        capabilities=["vpn", "inet", "vpn"],
    )
    assert payload.image_hash == SEED_HASH
    assert payload.min_mem_gib == 4.0
    assert payload.capabilities == ("vpn", "inet")
    assert payload.constraints() == [
        "(golem.inf.mem.gib>=4.0)",
        "(golem.inf.storage.gib>=10.5)",
        "(golem.inf.cpu.threads>=2)",
        "(golem.runtime.capabilities=vpn)",
        "(golem.runtime.capabilities=inet)",
        "(golem.runtime.name=vm)",
    ]


def test_vm_payload_without_url_names_only_the_hash() -> None:
    payload = VmPayload(image_hash=SEED_HASH)
    assert payload.properties()["golem.srv.comp.task_package"] == f"hash:sha3:{SEED_HASH}"


def test_payloads_are_frozen() -> None:
    payload = VmPayload(image_hash=SEED_HASH)
    with pytest.raises(AttributeError):
        payload.min_mem_gib = 1.0  # type: ignore[misc]


async def test_manifest_payload_from_mapping() -> None:
    doc = {"version": "0.1.0", "payload": [{"hash": f"sha3:{SEED_HASH}"}]}
    payload = await vm.manifest(doc, capabilities=[vm.VM_CAPS_INET])
    assert isinstance(payload, ManifestPayload)
    props = payload.properties()
    assert json.loads(base64.b64decode(props["golem.srv.comp.payload"])) == doc
    assert props["golem.srv.comp.vm.package_format"] == "gvmkit-squash"
    assert set(props) == {"golem.srv.comp.payload", "golem.srv.comp.vm.package_format"}
    assert payload.constraints() == [
        "(golem.inf.mem.gib>=0.5)",
        "(golem.inf.storage.gib>=2.0)",
        "(golem.inf.cpu.threads>=1)",
        "(golem.runtime.capabilities=manifest-support)",
        "(golem.runtime.capabilities=inet)",
        "(golem.runtime.name=vm)",
    ]


async def test_manifest_payload_signed() -> None:
    text = '{"version": "0.1.0"}'
    b64 = base64.b64encode(text.encode()).decode()
    cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    payload = await vm.manifest(
        b64,  # yapapi users pass base64 text: kept as it is
        manifest_sig=b"\x01\x02\x03",
        manifest_sig_algorithm="sha256",
        manifest_cert=cert_pem,
        capabilities=["inet", "manifest-support"],
        min_mem_gib=1,
        min_cpu_threads=2,
    )
    props = payload.properties()
    assert props["golem.srv.comp.payload"] == b64
    assert props["golem.srv.comp.payload.sig"] == base64.b64encode(b"\x01\x02\x03").decode()
    assert props["golem.srv.comp.payload.sig.algorithm"] == "sha256"
    assert base64.b64decode(props["golem.srv.comp.payload.cert"]).decode() == cert_pem
    assert payload.capabilities == ("inet", "manifest-support")
    assert "(golem.inf.mem.gib>=1.0)" in payload.constraints()
    assert "(golem.inf.cpu.threads>=2)" in payload.constraints()
    # JSON text and bytes give the same encoding as base64 text does.
    assert (await vm.manifest(text)).manifest == b64
    assert (await vm.manifest(text.encode())).manifest == b64


async def test_manifest_payload_partner_scheme() -> None:
    descriptor = {"nodeId": "0xabc", "validUntil": "2030-01-01T00:00:00Z"}
    payload = await vm.manifest({"version": "0.1.0"}, node_descriptor=descriptor)
    assert payload.properties()["golem.!exp.gap-31.v0.node.descriptor"] == descriptor


def test_custom_payload() -> None:
    payload = CustomPayload(
        properties={"golem.srv.app.eth.network": "holesky"},
        constraints=["(golem.runtime.name=ai)", " (golem.inf.mem.gib>=8) "],
    )
    assert payload.properties() == {"golem.srv.app.eth.network": "holesky"}
    assert payload.constraints() == ["(golem.runtime.name=ai)", "(golem.inf.mem.gib>=8)"]
    # Copies: changing what was returned leaves the payload as it was.
    payload.properties()["x"] = 1
    payload.constraints().append("(y=1)")
    assert payload.properties() == {"golem.srv.app.eth.network": "holesky"}
    assert len(payload.constraints()) == 2

    runtime = CustomPayload.for_runtime(
        "my-runtime", properties={"a.b": [1, 2]}, constraints="(golem.inf.cpu.threads>=4)"
    )
    assert runtime.properties() == {"a.b": [1, 2]}
    assert runtime.constraints() == [
        "(golem.runtime.name=my-runtime)",
        "(golem.inf.cpu.threads>=4)",
    ]
    assert CustomPayload().properties() == {}
    assert CustomPayload(constraints="(&(a=1)(b=2))").constraints() == ["(&(a=1)(b=2))"]


# --- vm.repo --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
async def test_seed_repo_call_with_static_resolver() -> None:
    with use_resolver(StaticResolver()):
        payload = await vm.repo(image_hash=SEED_HASH, min_mem_gib=0.5, min_storage_gib=2.0)
    assert payload.image_hash == SEED_HASH
    assert payload.image_url == f"http://localnet.invalid/images/{SEED_HASH}.gvmi"
    assert payload.properties()["golem.srv.comp.task_package"] == (
        f"hash:sha3:{SEED_HASH}:http://localnet.invalid/images/{SEED_HASH}.gvmi"
    )
    assert payload.constraints() == [
        "(golem.inf.mem.gib>=0.5)",
        "(golem.inf.storage.gib>=2.0)",
        "(golem.inf.cpu.threads>=1)",
        "(golem.runtime.name=vm)",
    ]
    assert current_resolver.get() is None


@pytest.mark.usefixtures("no_network")
async def test_static_resolver_template_and_tags() -> None:
    resolver = StaticResolver(
        url_template="http://127.0.0.1:8000/img/{hash}", tags={"golem/alpine:latest": SEED_HASH}
    )
    assert isinstance(resolver, ImageResolver)
    image = await resolver.resolve(image_tag="golem/alpine:latest")
    assert image == ResolvedImage(SEED_HASH, f"http://127.0.0.1:8000/img/{SEED_HASH}")
    payload = await vm.repo(image_tag="golem/alpine:latest", resolver=resolver)
    assert payload.image_hash == SEED_HASH
    with pytest.raises(ImageNotFound):
        await resolver.resolve(image_tag="unknown:1")
    with pytest.raises(PayloadError):
        StaticResolver(url_template="ftp://x/{hash}")
    with pytest.raises(PayloadError):
        StaticResolver(url_template="http://x/{nope}")


@pytest.mark.usefixtures("no_network")
async def test_repo_with_url_does_no_lookup() -> None:
    resolver = RecordingResolver()
    payload = await vm.repo(
        image_hash=SEED_HASH, image_url=IMAGE_URL, capabilities=["vpn"], resolver=resolver
    )
    assert resolver.calls == []
    assert payload.image_url == IMAGE_URL
    assert "(golem.runtime.capabilities=vpn)" in payload.constraints()


async def test_explicit_resolver_wins_over_current() -> None:
    explicit, ambient = RecordingResolver(), RecordingResolver()
    with use_resolver(ambient):
        assert get_resolver() is ambient
        await vm.repo(image_hash=SHA256_HASH, resolver=explicit)
        await vm.repo(image_tag="x:1")
    assert explicit.calls == [(SHA256_HASH, None)]
    assert ambient.calls == [(None, "x:1")]


def test_default_resolver_is_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOLEM_REGISTRY_URL", raising=False)
    default = get_resolver()
    assert isinstance(default, RegistryResolver)
    assert default.base_url == DEFAULT_REGISTRY_URL == "https://registry.golem.network"
    monkeypatch.setenv("GOLEM_REGISTRY_URL", "http://127.0.0.1:9999")
    assert RegistryResolver().base_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give image_hash"),
        ({"image_hash": "abc"}, "56"),
        ({"image_hash": "z" * 56}, "56"),
        ({"image_hash": SEED_HASH + "0"}, "56"),
        ({"image_tag": "a:1", "image_hash": SEED_HASH}, "image_tag"),
        ({"image_tag": "a:1", "image_url": IMAGE_URL}, "image_tag"),
        ({"image_url": IMAGE_URL}, "needs image_hash"),
        ({"image_hash": SEED_HASH, "image_url": "girepo/x.gvmi"}, "http"),
        ({"image_hash": SEED_HASH, "image_url": "http://a b/x"}, "whitespace"),
        ({"image_hash": SEED_HASH, "min_mem_gib": 0}, "min_mem_gib"),
        ({"image_hash": SEED_HASH, "min_mem_gib": -1.0}, "min_mem_gib"),
        ({"image_hash": SEED_HASH, "min_mem_gib": float("nan")}, "min_mem_gib"),
        ({"image_hash": SEED_HASH, "min_storage_gib": 0.0}, "min_storage_gib"),
        ({"image_hash": SEED_HASH, "min_storage_gib": "2"}, "min_storage_gib"),
        ({"image_hash": SEED_HASH, "min_cpu_threads": 0}, "min_cpu_threads"),
        ({"image_hash": SEED_HASH, "min_cpu_threads": 1.5}, "min_cpu_threads"),
        ({"image_hash": SEED_HASH, "capabilities": "vpn"}, "capabilities"),
        ({"image_hash": SEED_HASH, "capabilities": ["vp)n"]}, "capability"),
        ({"image_hash": SEED_HASH, "capabilities": [""]}, "capability"),
    ],
)
async def test_repo_input_errors(kwargs: dict[str, Any], message: str) -> None:
    resolver = RecordingResolver()
    with pytest.raises(PayloadError, match=message):
        await vm.repo(resolver=resolver, **kwargs)
    assert resolver.calls == []  # bad input never reaches a lookup


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"manifest": "not base64!"}, "JSON object"),
        ({"manifest": "{not json"}, "not valid JSON"),
        ({"manifest": base64.b64encode(b"[1]").decode()}, "JSON object"),
        ({"manifest": {"a": float("nan")}}, "JSON"),
        ({"manifest": b"\xff\xfe"}, "UTF-8"),
        ({"manifest": {}, "manifest_sig_algorithm": "sha256"}, "need manifest_sig"),
        ({"manifest": {}, "manifest_cert": b"x"}, "need manifest_sig"),
        ({"manifest": {}, "manifest_sig": "@@@"}, "manifest_sig"),
        ({"manifest": {}, "manifest_sig": b""}, "manifest_sig"),
        ({"manifest": {}, "manifest_sig": "AQID", "manifest_sig_algorithm": ""}, "algorithm"),
        ({"manifest": {}, "min_storage_gib": -2}, "min_storage_gib"),
        ({"manifest": {}, "min_cpu_threads": 0}, "min_cpu_threads"),
        ({"manifest": {}, "node_descriptor": {"a": object()}}, "JSON"),
    ],
)
async def test_manifest_input_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        await vm.manifest(**kwargs)


def test_custom_payload_input_errors() -> None:
    with pytest.raises(PayloadError, match="parenthesised"):
        CustomPayload(constraints=["golem.runtime.name=vm"])
    with pytest.raises(PayloadError, match="parenthesised"):
        CustomPayload(constraints=["(a=1)(b=2)"])
    with pytest.raises(PayloadError, match="parenthesised"):
        CustomPayload(constraints=["((a=1)"])
    with pytest.raises(PayloadError, match="JSON"):
        CustomPayload(properties={"a": {1, 2}})
    with pytest.raises(PayloadError, match="property name"):
        CustomPayload(properties={"": 1})
    with pytest.raises(PayloadError, match="runtime"):
        CustomPayload.for_runtime("vm)(x=1")


def test_error_hierarchy() -> None:
    assert issubclass(PayloadError, ValueError)
    for cls in (ImageNotFound, RegistryUnavailable, BadRegistryReply):
        assert issubclass(cls, RegistryError)
        assert issubclass(cls, PayloadError)


# --- the registry resolver ------------------------------------------------------------------------


async def test_registry_found_by_hash() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=info_reply())

    payload = await vm.repo(image_hash=SEED_HASH, resolver=registry(handler))
    assert [(r.method, r.url.path, dict(r.url.params)) for r in seen] == [
        ("GET", "/v1/image/info", {"hash": SEED_HASH})
    ]
    assert seen[0].url.host == "registry.test"
    assert (
        payload.task_package == f"hash:sha3:{SEED_HASH}:http://registry.test/download/{SEED_HASH}"
    )


async def test_registry_found_by_tag_over_https() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert dict(request.url.params) == {"tag": "golem/alpine:latest"}
        return httpx2.Response(200, json=info_reply(SEED_HASH.upper()))

    resolver = registry(handler, use_https=True)
    image = await resolver.resolve(image_tag="golem/alpine:latest")
    assert image == ResolvedImage(SEED_HASH, f"https://registry.test/download/{SEED_HASH.upper()}")


async def test_registry_base_url_with_path_prefix() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/mirror/v1/image/info"
        return httpx2.Response(200, json=info_reply())

    resolver = RegistryResolver(
        base_url="http://registry.test/mirror/", transport=httpx2.MockTransport(handler)
    )
    assert (await resolver.resolve(image_hash=SEED_HASH)).image_hash == SEED_HASH


async def test_registry_not_found() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, json={"message": "image not found"})

    with pytest.raises(ImageNotFound, match=SEED_HASH):
        await vm.repo(image_hash=SEED_HASH, resolver=registry(handler))
    with pytest.raises(ImageNotFound, match="nope:1"):
        await vm.repo(image_tag="nope:1", resolver=registry(handler))


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401])
async def test_registry_error_status(status: int) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, text="oops")

    with pytest.raises(RegistryUnavailable, match=str(status)):
        await vm.repo(image_hash=SEED_HASH, resolver=registry(handler))


@pytest.mark.parametrize(
    "error",
    [httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow"), httpx2.RemoteProtocolError("x")],
)
async def test_registry_down(error: Exception) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise error

    with pytest.raises(RegistryUnavailable, match="unreachable") as info:
        await vm.repo(image_hash=SEED_HASH, resolver=registry(handler))
    assert info.value.__cause__ is error


async def test_registry_unreachable_on_loopback() -> None:
    # A real connection attempt, to a loopback port nothing listens on.
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    resolver = RegistryResolver(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    with pytest.raises(RegistryUnavailable):
        await resolver.resolve(image_hash=SEED_HASH)


@pytest.mark.parametrize(
    "reply",
    [
        httpx2.Response(200, text="<html>hello</html>"),
        httpx2.Response(200, json=[info_reply()]),
        httpx2.Response(200, json={"http": "http://registry.test/x"}),
        httpx2.Response(200, json={**info_reply(), "sha3": "xyz"}),
        httpx2.Response(200, json={**info_reply(), "sha3": SHA256_HASH}),
        httpx2.Response(200, json={**info_reply(), "http": None}),
        httpx2.Response(200, json={**info_reply(), "http": "not a url"}),
        httpx2.Response(200, json={**info_reply(), "http": 42}),
    ],
)
async def test_registry_malformed_reply(reply: httpx2.Response) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return reply

    with pytest.raises(BadRegistryReply):
        await vm.repo(image_hash=SEED_HASH, resolver=registry(handler))


async def test_registry_resolver_input_errors() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("no request expected")

    resolver = registry(handler)
    with pytest.raises(PayloadError, match="exactly one"):
        await resolver.resolve()
    with pytest.raises(PayloadError, match="exactly one"):
        await resolver.resolve(image_hash=SEED_HASH, image_tag="a:1")
    with pytest.raises(PayloadError, match="56"):
        await resolver.resolve(image_hash="nothex")
    with pytest.raises(PayloadError, match="image_tag"):
        await resolver.resolve(image_tag=" ")
    with pytest.raises(PayloadError, match="registry URL"):
        RegistryResolver(base_url="registry.golem.network")
