"""Fixtures for running the reference Python SDK (yapapi) against LocalNet.

yapapi runs on asyncio and pins old libraries, so it never enters the project's venv: it gets
a virtualenv of its own, made once and reused while it holds the pinned version. When pip
cannot install it the tests fail (they are never skipped), saying why.
"""

from __future__ import annotations

import pathlib

import pytest

from .yapapi_venv import CompatVenvError
from .yapapi_venv import gftp_stub_dir as make_gftp_stub_dir
from .yapapi_venv import yapapi_python as compat_python


@pytest.fixture(scope="session")
def yapapi_python() -> pathlib.Path:
    """The interpreter of a virtualenv holding yapapi (made if missing)."""
    try:
        return compat_python()
    except CompatVenvError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def gftp_stub_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder holding an executable ``gftp`` stand-in, to put first on ``PATH``."""
    return make_gftp_stub_dir(tmp_path / "gftp-bin")
