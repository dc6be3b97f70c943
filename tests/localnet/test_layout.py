"""LocalNet's layout: three wings entered through their ``__init__.py``, nothing from the SDK,
imports one way (docs/localnet.md, *Layout and entry points*); and its public clock."""

from __future__ import annotations

import ast
import datetime as dt
import importlib
from pathlib import Path

import pytest
import trio
import trio.testing

import golem_trio.localnet
from golem_trio.localnet import open_localnet

ROOT = Path(golem_trio.localnet.__file__).parent
WINGS = ("emulator", "providers", "yagna")
#: Which parts of LocalNet each part may import.
ALLOWED = {
    "(top)": {"emulator", "providers"},
    "emulator": {"providers"},
    "providers": set(),
    "yagna": {"emulator", "providers"},
}
EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _imports() -> list[tuple[str, str, str, int, str]]:
    """(part, file, imported module, level, first name) for every ``from`` import in LocalNet,
    with relative imports resolved to absolute module names."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        part = rel[0] if len(rel) > 1 else "(top)"
        package = "golem_trio.localnet" + ("" if part == "(top)" else f".{part}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(part, path.name, alias.name, 0, "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                found.append((part, path.name, module, node.level, node.names[0].name))
    return found


def test_localnet_imports_nothing_from_the_sdk() -> None:
    outside = [
        f"{part}/{name}: {module}"
        for part, name, module, _level, _first in _imports()
        if module.startswith("golem_trio") and not module.startswith("golem_trio.localnet")
    ]
    assert outside == []


def test_the_wings_import_one_way_through_their_doors() -> None:
    wrong = []
    for part, name, module, _level, _first in _imports():
        if not module.startswith("golem_trio.localnet."):
            continue
        target = module.split(".")[2]
        if target not in WINGS or target == part:
            continue
        if target not in ALLOWED[part]:
            wrong.append(f"{part}/{name} imports the {target} wing")
        elif module != f"golem_trio.localnet.{target}":
            wrong.append(f"{part}/{name} imports {module}, not the wing's __init__")
    assert wrong == []


@pytest.mark.parametrize("package", ["", *(f".{wing}" for wing in WINGS)])
def test_every_exported_name_is_there(package: str) -> None:
    module = importlib.import_module(f"golem_trio.localnet{package}")
    names = module.__all__
    assert sorted(set(names)) == sorted(names)
    assert [name for name in names if not hasattr(module, name)] == []


async def test_now_is_the_networks_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with open_localnet([], epoch=EPOCH) as net:
        assert net.now() == EPOCH
        assert net.now() == net.daemon.clock.now()
        await trio.sleep(3600)
        assert net.now() == EPOCH + dt.timedelta(hours=1)
        assert net.now().tzinfo is not None
