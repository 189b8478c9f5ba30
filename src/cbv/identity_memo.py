"""What was made from an object many requests share, remembered by that object's identity."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """For objects made once and then shared unchanged (a cached verdict's decision, read
    by every request that finds it): no hashing of their fields, and an equal object made
    anew is not taken for one remembered. Each object is held while remembered, so its
    `id` cannot be reused meanwhile; past `size` objects all are forgotten at once."""

    __slots__ = ("_known", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an identity memo must hold at least one object, not {size}")
        self._known: dict[int, tuple[K, V]] = {}
        self._size = size

    def get(self, key: K) -> V | None:
        known = self._known.get(id(key))
        return known[1] if known is not None and known[0] is key else None

    def remember(self, key: K, value: V) -> None:
        known = self._known
        if len(known) >= self._size:
            known.clear()
        known[id(key)] = (key, value)

    def clear(self) -> None:
        self._known.clear()

    def __len__(self) -> int:
        return len(self._known)
