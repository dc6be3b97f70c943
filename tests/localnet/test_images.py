"""Image manifests: folders standing in for published images, found and registered in bulk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import golem_trio.localnet
from golem_trio.localnet import RuntimeContext
from golem_trio.localnet.providers import (
    MANIFEST_NAME,
    ImageInfo,
    ImageManifestError,
    ImageStore,
    UnknownImage,
    discover_images,
    image_hash,
    images_from_env,
    load_image_folder,
    local_runtime_factory,
)

PUBLISHED = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
OTHER = "0123456789abcdef0123456789abcdef0123456789abcdef01234567"


def make_image(folder: Path, manifest: Any = None, *, content: str = "print('hi')\n") -> Path:
    """An image folder with a script and, unless ``manifest`` is None, a manifest (a dict is
    written as JSON, a string as is)."""
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "service.py").write_text(content)
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (folder / MANIFEST_NAME).write_text(text)
    return folder


# --- ImageStore.register(as_hash=...) ---------------------------------------------------------


def test_register_as_hash_stands_in_for_a_published_image(tmp_path: Path) -> None:
    folder = make_image(tmp_path / "image")
    store = ImageStore()
    assert store.register(folder, as_hash=PUBLISHED) == PUBLISHED
    assert PUBLISHED in store
    assert image_hash(folder) not in store
    assert len(store) == 1
    assert store.image_for(f"hash:sha3:{PUBLISHED}:http://127.0.0.1/i.gvmi") == folder.resolve()
    assert store.register(folder) == image_hash(folder)
    assert len(store) == 2


@pytest.mark.parametrize(
    "bad",
    [PUBLISHED.upper(), PUBLISHED[:-1], PUBLISHED + "0", "z" * 56, "", f"sha3:{PUBLISHED}"],
)
def test_register_refuses_a_malformed_hash(tmp_path: Path, bad: str) -> None:
    folder = make_image(tmp_path / "image")
    store = ImageStore()
    with pytest.raises(ValueError, match="56 lower-case hex digits"):
        store.register(folder, as_hash=bad)
    assert len(store) == 0


def test_register_as_hash_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not a directory"):
        ImageStore().register(tmp_path / "missing", as_hash=PUBLISHED)


# --- load_image_folder ------------------------------------------------------------------------


def test_load_reads_the_manifest(tmp_path: Path) -> None:
    manifest = {"stands_for": PUBLISHED, "name": "simple", "description": "a service"}
    folder = make_image(tmp_path / "image", manifest)
    info = load_image_folder(folder)
    assert info == ImageInfo(
        folder=folder.resolve(),
        content_hash=image_hash(folder),
        stands_for=PUBLISHED,
        name="simple",
        description="a service",
    )
    assert info.hashes == (image_hash(folder), PUBLISHED)
    assert info.manifest == folder.resolve() / MANIFEST_NAME


def test_load_defaults(tmp_path: Path) -> None:
    folder = make_image(tmp_path / "plain-image", {})
    info = load_image_folder(folder)
    assert (info.name, info.description, info.stands_for) == ("plain-image", "", None)
    assert info.hashes == (image_hash(folder),)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ("{not json", "not JSON"),
        ("[]", "must be a JSON object, not list"),
        ({"stand_for": PUBLISHED}, r"unknown key\(s\) stand_for"),
        ({"stands_for": PUBLISHED.upper()}, "56 lower-case hex digits"),
        ({"stands_for": PUBLISHED[:40]}, "56 lower-case hex digits"),
        ({"stands_for": 5}, "'stands_for' must be a string, not int"),
        ({"name": ["x"]}, "'name' must be a string, not list"),
        ({"name": "  "}, "'name' must not be empty"),
        ({"description": {}}, "'description' must be a string, not dict"),
    ],
)
def test_load_refuses_malformed_manifests(tmp_path: Path, manifest: Any, reason: str) -> None:
    folder = make_image(tmp_path / "image", manifest)
    with pytest.raises(ImageManifestError, match=reason) as caught:
        load_image_folder(folder)
    assert caught.value.path == folder.resolve() / MANIFEST_NAME
    assert str(caught.value).startswith(f"{folder.resolve() / MANIFEST_NAME}: ")


def test_load_needs_a_manifest_and_a_folder(tmp_path: Path) -> None:
    folder = make_image(tmp_path / "image")
    with pytest.raises(ImageManifestError, match=f"no {MANIFEST_NAME}") as caught:
        load_image_folder(folder)
    assert caught.value.reason == f"no {MANIFEST_NAME} in the image folder"
    with pytest.raises(NotADirectoryError):
        load_image_folder(folder / "run" / "service.py")


# --- discover_images --------------------------------------------------------------------------


def test_discover_registers_every_image_under_both_hashes(tmp_path: Path) -> None:
    root = tmp_path / "images"
    top = make_image(root / "top", {"stands_for": PUBLISHED}, content="1")
    deep = make_image(root / "a" / "b" / "deep", {"name": "deep"}, content="2")
    make_image(root / "a" / "b" / "c" / "too-deep", {}, content="3")
    make_image(root / ".hidden" / "img", {}, content="4")
    make_image(root / ".venv" / "img", {}, content="5")
    make_image(root / "__pycache__" / "img", {}, content="6")
    make_image(top / "nested", {}, content="7")
    make_image(root / "no-manifest", content="8")
    store = ImageStore()
    found = discover_images(store, [root])
    assert [info.folder for info in found] == [deep.resolve(), top.resolve()]
    assert [info.name for info in found] == ["deep", "top"]
    assert len(store) == 3
    assert store.image_for(PUBLISHED) == top.resolve()
    assert store.image_for(image_hash(top)) == top.resolve()
    assert store.image_for(image_hash(deep)) == deep.resolve()


def test_discover_takes_image_folders_as_roots_and_ignores_repeats(tmp_path: Path) -> None:
    image = make_image(tmp_path / "image", {"stands_for": PUBLISHED})
    store = ImageStore()
    found = discover_images(store, [image, tmp_path, str(image)])
    assert [info.folder for info in found] == [image.resolve()]
    assert set(found[0].hashes) == {image_hash(image), PUBLISHED}
    assert all(digest in store for digest in found[0].hashes)


def test_discover_is_all_or_nothing(tmp_path: Path) -> None:
    make_image(tmp_path / "a-good", {"stands_for": PUBLISHED}, content="1")
    make_image(tmp_path / "b-bad", {"stands_for": "nope"}, content="2")
    store = ImageStore()
    with pytest.raises(ImageManifestError, match="lower-case hex") as caught:
        discover_images(store, [tmp_path])
    assert caught.value.path == (tmp_path / "b-bad" / MANIFEST_NAME).resolve()
    assert len(store) == 0


def test_two_folders_cannot_stand_for_one_image(tmp_path: Path) -> None:
    first = make_image(tmp_path / "one" / "first", {"stands_for": PUBLISHED}, content="1")
    make_image(tmp_path / "two" / "second", {"stands_for": PUBLISHED}, content="2")
    store = ImageStore()
    with pytest.raises(ImageManifestError, match=f"as {first.resolve()} does already"):
        discover_images(store, [tmp_path / "one", tmp_path / "two"])
    assert len(store) == 0


def test_discover_refuses_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="image root"):
        discover_images(ImageStore(), [tmp_path / "missing"])


def test_images_from_env(tmp_path: Path) -> None:
    first = make_image(tmp_path / "one" / "first", {"stands_for": PUBLISHED}, content="1")
    second = make_image(tmp_path / "two" / "second", {"stands_for": OTHER}, content="2")
    store = ImageStore()
    assert images_from_env(store, {}) == []
    assert images_from_env(store, {"GOLEM_TRIO_IMAGES": ""}) == []
    assert len(store) == 0
    value = os.pathsep.join(["", str(tmp_path / "one"), "", str(tmp_path / "two")])
    found = images_from_env(store, {"GOLEM_TRIO_IMAGES": value})
    assert [info.folder for info in found] == [first.resolve(), second.resolve()]
    assert store.image_for(PUBLISHED) == first.resolve()
    assert store.image_for(OTHER) == second.resolve()
    with pytest.raises(UnknownImage):
        ImageStore().image_for(PUBLISHED)


def test_images_from_env_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image(tmp_path / "image", {"stands_for": PUBLISHED})
    monkeypatch.setenv("GOLEM_TRIO_IMAGES", str(tmp_path))
    store = ImageStore()
    assert [info.stands_for for info in images_from_env(store)] == [PUBLISHED]
    assert PUBLISHED in store


def test_a_demand_for_the_published_hash_gets_the_folder(tmp_path: Path) -> None:
    image = make_image(tmp_path / "image", {"stands_for": PUBLISHED})
    store = ImageStore()
    discover_images(store, [tmp_path])
    factory = local_runtime_factory(store, tmp_path / "sandboxes")
    package = f"hash:sha3:{PUBLISHED}:http://127.0.0.1/image.gvmi"
    context = RuntimeContext(
        "act", "agr", "req", "prov", demand_properties={"golem.srv.comp.task_package": package}
    )
    runtime = factory(context)
    assert (runtime.image, runtime.image_problem) == (image.resolve(), None)


def test_the_package_exports_the_image_api() -> None:
    exported = {
        "ImageInfo": ImageInfo,
        "ImageManifestError": ImageManifestError,
        "discover_images": discover_images,
        "images_from_env": images_from_env,
        "load_image_folder": load_image_folder,
    }
    for name, value in exported.items():
        assert getattr(golem_trio.localnet, name) is value
        assert name in golem_trio.localnet.__all__
