"""The identity memo: objects by identity, bounded, forgotten all at once."""

from __future__ import annotations

import pytest

from cbv.identity_memo import IdentityMemo


def test_an_object_is_remembered_by_itself_not_by_equality() -> None:
    memo: IdentityMemo[list[int], str] = IdentityMemo(4)
    first, equal = [1], [1]
    memo.remember(first, "first")
    assert memo.get(first) == "first"
    assert memo.get(equal) is None


def test_an_object_remembered_is_held_so_its_id_cannot_be_reused() -> None:
    memo: IdentityMemo[object, int] = IdentityMemo(4)
    for number in range(3):
        memo.remember(object(), number)  # each would be freed at once if not held
    assert len(memo) == 3


def test_remembering_an_object_again_replaces_its_value() -> None:
    memo: IdentityMemo[object, int] = IdentityMemo(4)
    key = object()
    memo.remember(key, 1)
    memo.remember(key, 2)
    assert (memo.get(key), memo.by_id.get(id(key)), len(memo)) == (2, 2, 1)


def test_past_its_size_all_are_forgotten_at_once() -> None:
    memo: IdentityMemo[object, int] = IdentityMemo(2)
    kept = [object() for _ in range(3)]
    for number, key in enumerate(kept):
        memo.remember(key, number)
    assert len(memo) == 1
    assert memo.get(kept[0]) is None
    assert memo.get(kept[2]) == 2
    memo.clear()
    assert memo.get(kept[2]) is None


def test_a_memo_holds_at_least_one_object() -> None:
    with pytest.raises(ValueError, match="at least one"):
        IdentityMemo[object, int](0)
