"""The events a drift sidecar took lately, by id and type, so that a sender's retry is answered as a
duplicate instead of counted twice. Bounded (the oldest are forgotten first) and small: each event is kept
as a 128-bit digest of its type and id, about 95 bytes with the order it was taken in, where a tuple of the
two strings in an ordered dict took about 280 (28 MB at 100,000 events: a sidecar's largest structure)."""

from __future__ import annotations

import hashlib
from collections import deque


def _key(event_id: str, kind: str) -> int:
    # the type first and a NUL after it: a type has none, so no other (id, type) pair gives the same bytes
    digest = hashlib.blake2b(kind.encode() + b"\0" + event_id.encode("utf-8", "surrogatepass"), digest_size=16)
    return int.from_bytes(digest.digest(), "little")


class RecentEvents:
    """The last ``limit`` (id, type) pairs taken; a collision of two digests (odds about n² / 2¹²⁹) is the
    only way two different events could be taken for one."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the duplicate memory must hold at least one event, not {limit}")
        self.limit = limit
        self._keys: set[int] = set()
        self._order: deque[int] = deque()

    def __contains__(self, item: tuple[str, str]) -> bool:
        return _key(*item) in self._keys

    def __len__(self) -> int:
        return len(self._order)

    def add(self, event_id: str, kind: str) -> bool:
        """False when (id, type) is already remembered; else remember it, forgetting the oldest past the limit."""
        key = _key(event_id, kind)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.limit:
            self._keys.discard(self._order.popleft())
        return True
