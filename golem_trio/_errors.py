"""The root of golem_trio's errors, and :class:`ConfigurationError` with the checks that raise
it for a setting the SDK cannot use."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "ConfigurationError",
    "ConfigurationTypeError",
    "GolemError",
    "check_count",
    "check_seconds",
]


class GolemError(Exception):
    """Every error golem_trio raises on purpose derives from this class, so one ``except
    GolemError`` catches them all. Errors that also mean what a standard exception means keep
    it as a second base (``TermsError`` is a ``ValueError``, ``ClusterClosed`` a
    ``RuntimeError``), for callers that catch those.

    LocalNet (``golem_trio.localnet``) is a separate system that imports nothing from the SDK;
    its errors do not derive from this class.
    """


class ConfigurationError(GolemError, ValueError):
    """A setting the SDK cannot use (a negative or non-finite time bound, a budget that is not
    a positive number, ...), refused when it is given, before anything runs. The message names
    the parameter; ``parameter`` holds its name."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


class ConfigurationTypeError(ConfigurationError, TypeError):
    """A setting of the wrong type (a string where a number belongs, ...); a
    :class:`ConfigurationError` and a ``TypeError``."""


def check_seconds(
    parameter: str, value: Any, *, zero: bool = False, none: bool = False
) -> float | None:
    """``value`` as a finite number of seconds: > 0 (>= 0 with ``zero``; ``None`` is allowed
    with ``none``). Raises :class:`ConfigurationTypeError` for a value that is not a real number
    (``bool`` included) and :class:`ConfigurationError` for one out of range."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationTypeError(parameter, f"seconds must be a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ConfigurationError(parameter, f"seconds must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ConfigurationError(parameter, f"seconds must be {bound}, got {value!r}")
    return seconds


def check_count(parameter: str, value: Any, *, minimum: int = 0, none: bool = False) -> int | None:
    """``value`` as an ``int`` of at least ``minimum`` (``None`` is allowed with ``none``).
    Raises :class:`ConfigurationTypeError` for a value that is not an integer (``bool`` and
    ``"2"`` included) and :class:`ConfigurationError` for one below ``minimum``."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigurationTypeError(parameter, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigurationError(parameter, f"must be >= {minimum}, got {value!r}")
    return int(value)
