"""Image manifests: folders that say which image they are, found and registered in bulk.

An image folder (see :mod:`._local_runtime`) may hold a manifest, ``golem-image.json``::

    {
        "stands_for": "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488",
        "name": "simple-service",
        "description": "observations simulator and statistics",
        "vpn_ports": [80]
    }

Every key is optional; no other key is allowed (a misspelt ``stands_for`` would otherwise go
unnoticed). ``stands_for`` is the sha3-224 hash (56 lower-case hex digits) of a published
image the folder stands in for, so a demand written for the published image
(``vm.repo(image_hash=...)``) runs on LocalNet's local runtime unchanged. ``name`` defaults to
the folder's name, ``description`` to ``""``. ``vpn_ports`` lists the TCP ports the image's
services listen on inside a VPN: the local runtime hands each a loopback port of its own
(``GOLEM_VPN_PORT_<port>``, see :mod:`._local_runtime`).

:func:`discover_images` walks folders for manifests and registers each image folder with an
:class:`~._local_runtime.ImageStore` under its own content hash
(:func:`~._local_runtime.image_hash`) and under ``stands_for``. :func:`images_from_env` does the
same for the folders named by ``GOLEM_TRIO_IMAGES`` (``os.pathsep``-separated).

These functions read and hash files synchronously; from trio, call them in a thread
(``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from ._local_runtime import ImageStore, image_hash

__all__ = [
    "ENV_VAR",
    "MANIFEST_NAME",
    "ImageInfo",
    "ImageManifestError",
    "discover_images",
    "images_from_env",
    "load_image_folder",
]

#: The manifest's file name, at the top of an image folder.
MANIFEST_NAME = "golem-image.json"
#: The environment variable :func:`images_from_env` reads.
ENV_VAR = "GOLEM_TRIO_IMAGES"
#: How deep below a root :func:`discover_images` looks (the root itself is depth 0).
MAX_DEPTH = 3
#: Folders :func:`discover_images` never enters (besides hidden ones).
SKIPPED_DIRS = frozenset({".venv", "venv", "__pycache__", "node_modules"})

_KEYS = frozenset({"stands_for", "name", "description", "vpn_ports"})
_HASH_RE = re.compile(r"^[0-9a-f]{56}\Z")


class ImageManifestError(ValueError):
    """A ``golem-image.json`` that cannot be used: ``path`` is the manifest, ``reason`` why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageManifestError], tuple[Path, str]]:
        return (type(self), (self.path, self.reason))


@attrs.frozen
class ImageInfo:
    """An image folder and what its manifest says."""

    #: The image folder (absolute, resolved).
    folder: Path
    #: The folder's own content hash (:func:`~._local_runtime.image_hash`).
    content_hash: str
    #: The published image's hash the folder stands in for, if any.
    stands_for: str | None
    name: str
    description: str = ""
    #: The TCP ports its services listen on inside a VPN.
    vpn_ports: tuple[int, ...] = ()

    @property
    def manifest(self) -> Path:
        """The manifest's path."""
        return self.folder / MANIFEST_NAME

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every hash the image answers to: its content hash, then ``stands_for``."""
        if self.stands_for is None or self.stands_for == self.content_hash:
            return (self.content_hash,)
        return (self.content_hash, self.stands_for)


def _string(data: Mapping[str, object], key: str, manifest: Path) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImageManifestError(manifest, f"{key!r} must be a string, not {type(value).__name__}")
    return value


def load_image_folder(path: str | os.PathLike[str]) -> ImageInfo:
    """The :class:`ImageInfo` of the image folder ``path``, from its ``golem-image.json``.

    Raises :class:`ImageManifestError` when the manifest is missing, unreadable or malformed,
    and :class:`NotADirectoryError` when ``path`` is not a folder.
    """
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {str(folder)!r} is not a directory")
    manifest = folder / MANIFEST_NAME
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImageManifestError(manifest, f"no {MANIFEST_NAME} in the image folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageManifestError(manifest, f"cannot read it: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImageManifestError(manifest, f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ImageManifestError(manifest, f"must be a JSON object, not {type(data).__name__}")
    unknown = sorted(str(key) for key in data.keys() - _KEYS)
    if unknown:
        allowed = ", ".join(sorted(_KEYS))
        raise ImageManifestError(
            manifest, f"unknown key(s) {', '.join(unknown)} (allowed: {allowed})"
        )
    stands_for = _string(data, "stands_for", manifest)
    if stands_for is not None and _HASH_RE.match(stands_for) is None:
        raise ImageManifestError(
            manifest,
            f"'stands_for' must be a sha3-224 image hash (56 lower-case hex digits), "
            f"not {stands_for!r}",
        )
    name = _string(data, "name", manifest)
    if name is not None and not name.strip():
        raise ImageManifestError(manifest, "'name' must not be empty")
    description = _string(data, "description", manifest) or ""
    ports = data.get("vpn_ports", [])
    if not isinstance(ports, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports
    ):
        raise ImageManifestError(manifest, "'vpn_ports' must be a list of TCP ports (1-65535)")
    try:
        content_hash = image_hash(folder)
    except OSError as exc:
        raise ImageManifestError(manifest, f"cannot hash the image folder: {exc}") from exc
    return ImageInfo(
        folder=folder,
        content_hash=content_hash,
        stands_for=stands_for,
        name=name if name is not None else folder.name,
        description=description,
        vpn_ports=tuple(sorted(set(ports))),
    )


def _raise(error: OSError) -> None:
    raise error


def _image_folders(root: Path) -> list[Path]:
    """Folders at depth <= :data:`MAX_DEPTH` under ``root`` holding a manifest, in sorted
    order; hidden and :data:`SKIPPED_DIRS` folders are not entered, nor are image folders
    (their content is the image's) or symlinks to folders. A folder that cannot be read
    raises its :class:`OSError` (:class:`PermissionError` for one it may not read)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if MANIFEST_NAME in filenames:
            found.append(here)
            dirnames.clear()
            continue
        if depth >= MAX_DEPTH:
            dirnames.clear()
            continue
        dirnames[:] = sorted(
            name for name in dirnames if not name.startswith(".") and name not in SKIPPED_DIRS
        )
    return sorted(found)


def discover_images(store: ImageStore, roots: Iterable[str | os.PathLike[str]]) -> list[ImageInfo]:
    """Register every image folder under ``roots`` with ``store``; their :class:`ImageInfo`.

    An image folder is one holding a ``golem-image.json``, at most :data:`MAX_DEPTH` levels
    below a root (a root may be an image folder itself); hidden folders, ``.venv``,
    ``__pycache__`` and the like are skipped. Each is registered under its content hash and,
    when its manifest has ``stands_for``, under that hash too.

    All manifests are read before anything is registered: a malformed one, or two folders
    standing for the same hash, raise :class:`ImageManifestError` and leave ``store`` as it
    was. A root that is not a folder raises :class:`NotADirectoryError`.
    """
    images: list[ImageInfo] = []
    seen: set[Path] = set()
    claimed: dict[str, ImageInfo] = {}
    for given in roots:
        root = Path(given).resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"image root {str(root)!r} is not a directory")
        for folder in _image_folders(root):
            if folder in seen:
                continue
            seen.add(folder)
            info = load_image_folder(folder)
            if info.stands_for is not None:
                other = claimed.get(info.stands_for)
                if other is not None:
                    raise ImageManifestError(
                        info.manifest,
                        f"stands for image {info.stands_for}, as {other.folder} does already",
                    )
                claimed[info.stands_for] = info
            images.append(info)
    for info in images:
        store.register(info.folder, as_hash=info.content_hash)
        if info.stands_for is not None:
            store.register(info.folder, as_hash=info.stands_for)
    return images


def images_from_env(store: ImageStore, env: Mapping[str, str] = os.environ) -> list[ImageInfo]:
    """:func:`discover_images` over the roots in ``env[GOLEM_TRIO_IMAGES]``
    (``os.pathsep``-separated; empty entries are ignored); ``[]`` when it is unset."""
    value = env.get(ENV_VAR, "")
    roots = [entry for entry in value.split(os.pathsep) if entry.strip()]
    return discover_images(store, roots)
