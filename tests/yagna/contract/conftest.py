"""Fixtures of the contract tests."""

from __future__ import annotations

import pytest

from .openapi_support import Specs, load_specs


@pytest.fixture(scope="session")
def specs() -> Specs:
    """The patched specs, loaded once per session."""
    return load_specs()
