"""The guide's SimpleService (``examples/simple_service/``) copied into a test's folder, so the
plots it downloads beside itself land there, loaded as a module, with its image found."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import attrs

from golem_trio.localnet import ImageStore, discover_images

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@attrs.frozen
class Guide:
    folder: Path
    module: ModuleType
    store: ImageStore

    def plots(self) -> list[Path]:
        """The PNG plots downloaded so far (each checked to be a PNG)."""
        plots = sorted(self.folder.glob("*.png"))
        assert all(plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for plot in plots)
        return plots


def copy_guide(tmp_path: Path, name: str) -> Guide:
    """The example copied under ``tmp_path``, loaded as module ``name``."""
    folder = tmp_path / "simple_service"
    shutil.copytree(EXAMPLES / "simple_service", folder, ignore=shutil.ignore_patterns("*.png"))
    spec = importlib.util.spec_from_file_location(name, folder / "simple_service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = ImageStore()
    discover_images(store, [folder])
    return Guide(folder, module, store)
