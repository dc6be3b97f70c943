"""Fixtures for running the reference Python SDK (yapapi) against LocalNet.

yapapi runs on asyncio and pins old libraries, so it never enters the project's venv: it gets
a virtualenv of its own, made once and reused while it holds the pinned version. When pip
cannot install it the tests fail (they are never skipped), saying why.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import NoReturn

import pytest

YAPAPI_VERSION = "0.13.1"
#: Longest the one-time ``pip install`` may take (s).
INSTALL_TIMEOUT_S = 600

_HERE = pathlib.Path(__file__).parent
_REPO = _HERE.parent.parent
#: The compat venv lives beside the project's venv folder (ignored by git), keyed by version.
COMPAT_VENV = pathlib.Path(
    os.environ.get("YAPAPI_COMPAT_VENV", _REPO / ".venv" / f"yapapi-compat-{YAPAPI_VERSION}")
)


def _venv_python(venv: pathlib.Path) -> pathlib.Path:
    return venv / "bin" / "python"


def _has_yapapi(venv: pathlib.Path) -> bool:
    python = _venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('yapapi'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == YAPAPI_VERSION


def _fail(what: str, result: subprocess.CompletedProcess[str] | None = None) -> NoReturn:
    detail = ""
    if result is not None:
        detail = f"\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    message = f"cannot make the yapapi=={YAPAPI_VERSION} compat venv: {what}{detail}"
    pytest.fail(message, pytrace=False)


def _install(venv: pathlib.Path) -> None:
    """Make ``venv`` with yapapi in it: built aside, then moved in place whole."""
    staging = venv.with_name(venv.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    steps = [
        [sys.executable, "-m", "venv", str(staging)],
        [
            str(_venv_python(staging)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            f"yapapi=={YAPAPI_VERSION}",
        ],
    ]
    for step in steps:
        remaining = deadline - time.monotonic()
        try:
            result = subprocess.run(
                step, capture_output=True, text=True, timeout=max(remaining, 1), check=False
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            _fail(f"{step[2:4]} took more than {INSTALL_TIMEOUT_S} s")
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            _fail(f"{' '.join(step[1:])} exited {result.returncode}", result)
    shutil.rmtree(venv, ignore_errors=True)
    staging.rename(venv)


@pytest.fixture(scope="session")
def yapapi_python() -> pathlib.Path:
    """The interpreter of a virtualenv holding ``yapapi==YAPAPI_VERSION`` (made if missing)."""
    if not _has_yapapi(COMPAT_VENV):
        _install(COMPAT_VENV)
        if not _has_yapapi(COMPAT_VENV):
            _fail(f"yapapi {YAPAPI_VERSION} is not importable in {COMPAT_VENV} after install")
    return _venv_python(COMPAT_VENV)


@pytest.fixture
def gftp_stub_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder holding an executable ``gftp`` stand-in, to put first on ``PATH``."""
    folder = tmp_path / "gftp-bin"
    folder.mkdir()
    stub = folder / "gftp"
    shutil.copyfile(_HERE / "gftp", stub)
    stub.chmod(0o755)
    return folder
