"""VM payloads, as yapapi's ``vm`` module builds them: :func:`repo` and :func:`manifest`.

::

    from golem_trio.market import vm

    payload = await vm.repo(
        image_hash="8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488",
        min_mem_gib=0.5,
        min_storage_gib=2.0,
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import trio

from ._payload import (
    GVMKIT_SQUASH,
    ImageResolver,
    ManifestPayload,
    PayloadError,
    VmPayload,
    _check_hash,
    _check_url,
    encode_blob,
    encode_manifest,
    get_resolver,
)

__all__ = [
    "VM_CAPS_INET",
    "VM_CAPS_MANIFEST_SUPPORT",
    "VM_CAPS_VPN",
    "VmCaps",
    "manifest",
    "repo",
]

#: The VM runtime can join a VPN (needed by services on a network).
VM_CAPS_VPN: Final = "vpn"
#: The VM runtime can reach the internet (with a manifest allowing it).
VM_CAPS_INET: Final = "inet"
#: The VM runtime understands computation payload manifests.
VM_CAPS_MANIFEST_SUPPORT: Final = "manifest-support"

VmCaps = Literal["vpn", "inet", "manifest-support"]


async def repo(
    *,
    image_hash: str | None = None,
    image_tag: str | None = None,
    image_url: str | None = None,
    min_mem_gib: float = 0.5,
    min_storage_gib: float = 2.0,
    min_cpu_threads: int = 1,
    capabilities: Iterable[VmCaps | str] = (),
    resolver: ImageResolver | None = None,
) -> VmPayload:
    """A VM payload for an image given by hash, by tag, or by hash and URL.

    - ``image_hash`` alone: the URL comes from ``resolver`` (default: the
      :data:`~golem_trio.market.current_resolver`, else the Golem registry).
    - ``image_tag`` alone: hash and URL both come from the resolver.
    - ``image_hash`` and ``image_url``: used as given, with no lookup at all.

    Raises :class:`~golem_trio.market.PayloadError` on bad input, and the resolver's
    :class:`~golem_trio.market.RegistryError` subclasses when the image cannot be resolved.
    """
    if image_tag is not None and (image_hash is not None or image_url is not None):
        raise PayloadError("image_tag cannot be combined with image_hash or image_url")
    if image_url is not None:
        if image_hash is None:
            raise PayloadError("image_url needs image_hash (providers check the image by it)")
        resolved_hash, resolved_url = _check_hash(image_hash), _check_url(image_url, "image_url")
        await trio.lowlevel.checkpoint()
    elif image_hash is not None or image_tag is not None:
        # Validate the request before any lookup, so bad input never reaches the network.
        if image_hash is not None:
            image_hash = _check_hash(image_hash)
        _validate_resources(min_mem_gib, min_storage_gib, min_cpu_threads, capabilities)
        chosen = resolver if resolver is not None else get_resolver()
        image = await chosen.resolve(image_hash=image_hash, image_tag=image_tag)
        resolved_hash, resolved_url = image.image_hash, image.image_url
    else:
        raise PayloadError("give image_hash, image_tag, or image_hash with image_url")
    return VmPayload(
        image_hash=resolved_hash,
        image_url=resolved_url,
        package_format=GVMKIT_SQUASH,
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=capabilities,
    )


def _validate_resources(
    min_mem_gib: float, min_storage_gib: float, min_cpu_threads: int, capabilities: Iterable[str]
) -> None:
    # Build (and drop) a payload with a dummy hash: the same checks as the real one.
    VmPayload(
        image_hash="0" * 56,
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=capabilities,
    )


async def manifest(
    manifest: str | bytes | Mapping[str, Any],
    *,
    manifest_sig: str | bytes | None = None,
    manifest_sig_algorithm: str | None = None,
    manifest_cert: str | bytes | None = None,
    node_descriptor: Mapping[str, Any] | None = None,
    min_mem_gib: float = 0.5,
    min_storage_gib: float = 2.0,
    min_cpu_threads: int = 1,
    capabilities: Iterable[VmCaps | str] = (),
) -> ManifestPayload:
    """A VM payload described by a computation payload manifest.

    ``manifest`` is a mapping, JSON text or bytes (encoded to base64 here) or base64 text
    already (yapapi's form). ``manifest_sig`` and ``manifest_cert`` are raw bytes (encoded
    here), PEM text (certificate; encoded here) or base64 text. ``node_descriptor`` is the
    partner scheme's signed node descriptor. ``manifest-support`` is always required; add
    ``inet`` for outbound internet. Nothing is looked up: no I/O.
    """
    payload = ManifestPayload(
        manifest=encode_manifest(manifest),
        manifest_sig=None if manifest_sig is None else encode_blob(manifest_sig, "manifest_sig"),
        manifest_sig_algorithm=manifest_sig_algorithm,
        manifest_cert=(
            None if manifest_cert is None else encode_blob(manifest_cert, "manifest_cert")
        ),
        node_descriptor=None if node_descriptor is None else dict(node_descriptor),
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=capabilities,
    )
    await trio.lowlevel.checkpoint()
    return payload
