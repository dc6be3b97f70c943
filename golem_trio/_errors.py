"""The root of golem_trio's errors."""

from __future__ import annotations

__all__ = ["GolemError"]


class GolemError(Exception):
    """Every error golem_trio raises on purpose derives from this class, so one ``except
    GolemError`` catches them all. Errors that also mean what a standard exception means keep
    it as a second base (``TermsError`` is a ``ValueError``, ``ClusterClosed`` a
    ``RuntimeError``), for callers that catch those.

    LocalNet (``golem_trio.localnet``) is a separate system that imports nothing from the SDK;
    its errors do not derive from this class.
    """
