"""Identifiers in the formats the daemon uses (docs/daemon-notes.md §1), from a seeded generator so
that a LocalNet run is reproducible under its seed."""

from __future__ import annotations

import random
import uuid

__all__ = ["Ids"]


class Ids:
    """Makes ids: node ids, subscription, proposal, agreement, activity, batch, network,
    allocation and document ids."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def _hex(self, digits: int) -> str:
        return f"{self._rng.getrandbits(digits * 4):0{digits}x}"

    def node(self) -> str:
        """``0x`` + 40 lowercase hex digits."""
        return "0x" + self._hex(40)

    def subscription(self) -> str:
        """Demand and offer subscription ids: ``<32 hex>-<64 hex>``."""
        return f"{self._hex(32)}-{self._hex(64)}"

    def proposal_hash(self) -> str:
        """The 64-hex part of a proposal id; each side sees it under its own prefix
        (``R-`` for the requestor, ``P-`` for the provider)."""
        return self._hex(64)

    def agreement(self) -> str:
        return self._hex(64)

    def activity(self) -> str:
        """Activity, batch and network ids: a 32-hex UUID without dashes."""
        return self._hex(32)

    def uuid(self) -> str:
        """Allocation, debit-note, invoice and payment ids: a UUID string."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def app_key(self) -> str:
        """32 hex digits from the seeded generator. Not used as a key (keys are random, see
        ``Daemon.add_identity``); drawn so that the other ids of a seed stay the same."""
        return self._hex(32)
