"""The virtualenv that holds the reference Python SDK (yapapi) and the ``gftp`` stand-in it
needs, shared by the compat tests (``conftest.py``) and ``benchmarks/bench_vs_yapapi.py``.

yapapi runs on asyncio and pins old libraries, so it never enters the project's venv: it gets
a virtualenv of its own, made once and reused while it holds the pinned version.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

YAPAPI_VERSION = "0.13.1"
#: Longest the one-time ``pip install`` may take (s).
INSTALL_TIMEOUT_S = 600

_HERE = pathlib.Path(__file__).parent
_REPO = _HERE.parent.parent
#: The compat venv lives beside the project's venv folder (ignored by git), keyed by version.
COMPAT_VENV = pathlib.Path(
    os.environ.get("YAPAPI_COMPAT_VENV", _REPO / ".venv" / f"yapapi-compat-{YAPAPI_VERSION}")
)
#: The ``gftp`` stand-in yapapi starts with its engine (``gftp server``).
GFTP_STUB = _HERE / "gftp"


class CompatVenvError(Exception):
    """The yapapi virtualenv could not be made; the message says why."""


def venv_python(venv: pathlib.Path) -> pathlib.Path:
    return venv / "bin" / "python"


def has_yapapi(venv: pathlib.Path) -> bool:
    python = venv_python(venv)
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


def _fail(what: str, result: subprocess.CompletedProcess[str] | None = None) -> CompatVenvError:
    detail = ""
    if result is not None:
        detail = f"\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    return CompatVenvError(f"cannot make the yapapi=={YAPAPI_VERSION} compat venv: {what}{detail}")


def install(venv: pathlib.Path) -> None:
    """Make ``venv`` with yapapi in it: built aside, then moved in place whole."""
    staging = venv.with_name(venv.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    steps = [
        [sys.executable, "-m", "venv", str(staging)],
        [
            str(venv_python(staging)),
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
            raise _fail(f"{step[2:4]} took more than {INSTALL_TIMEOUT_S} s") from None
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise _fail(f"{' '.join(step[1:])} exited {result.returncode}", result)
    shutil.rmtree(venv, ignore_errors=True)
    staging.rename(venv)


def yapapi_python(venv: pathlib.Path = COMPAT_VENV) -> pathlib.Path:
    """The interpreter of a virtualenv holding ``yapapi==YAPAPI_VERSION`` (made if missing);
    :class:`CompatVenvError` if it cannot be made."""
    if not has_yapapi(venv):
        install(venv)
        if not has_yapapi(venv):
            raise _fail(f"yapapi {YAPAPI_VERSION} is not importable in {venv} after install")
    return venv_python(venv)


def gftp_stub_dir(folder: pathlib.Path) -> pathlib.Path:
    """Make ``folder`` hold an executable ``gftp`` stand-in, to put first on ``PATH``."""
    folder.mkdir(parents=True, exist_ok=True)
    stub = folder / "gftp"
    shutil.copyfile(GFTP_STUB, stub)
    stub.chmod(0o755)
    return folder
