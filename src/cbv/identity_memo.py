"""What was made from an object many requests share, remembered by that object's identity."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """For objects made once and then shared unchanged (a cached verdict's decision, read
    by every request that finds it): no hashing of their fields, and an equal object made
    anew is not taken for one remembered. Each object is held while remembered, so no other
    object can have its `id` meanwhile: a hit on the `id` is that object. Past `size`
    objects all are forgotten at once.

    `by_id` is the lookup for a path that makes it for every request:
    `memo.by_id.get(id(key))`, as `get(key)` does, without a call of its own."""

    __slots__ = ("_held", "_size", "by_id")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an identity memo must hold at least one object, not {size}")
        self.by_id: dict[int, V] = {}
        self._held: dict[int, K] = {}
        self._size = size

    def get(self, key: K) -> V | None:
        return self.by_id.get(id(key))

    def remember(self, key: K, value: V) -> None:
        if len(self.by_id) >= self._size:
            self.clear()
        self._held[id(key)] = key
        self.by_id[id(key)] = value

    def clear(self) -> None:
        self.by_id.clear()
        self._held.clear()

    def __len__(self) -> int:
        return len(self.by_id)
