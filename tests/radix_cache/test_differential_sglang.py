"""Differential test: our RadixCache vs SGLang's own RadixCache on random traces.

Both trees get the same inserts, matches, locks, unlocks and evictions; every returned prefix
length, lock delta, evicted count, matched payload and size (evictable, protected, total) must
agree after every op. Small vocabularies make splits, shared prefixes and page mismatches common.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sglang.srt.mem_cache.radix_cache")
torch = pytest.importorskip("torch")

from radix_cache.tree import RadixCache  # noqa: E402
from specrl_sglang.sglang_radix_peer import SGLangRadixPeer  # noqa: E402


def _sizes(tree) -> tuple[int, int, int]:
    return tree.evictable_size(), tree.protected_size(), tree.total_size()


def _random_key(rng: np.random.Generator, history: list[list[int]]) -> list[int]:
    if history and rng.random() < 0.6:
        base = history[int(rng.integers(len(history)))]
        return base[: int(rng.integers(len(base) + 1))] + rng.integers(0, 3, int(rng.integers(0, 8))).tolist()
    return rng.integers(0, 3, int(rng.integers(0, 24))).tolist()


@pytest.mark.parametrize("page_size", [1, 4])
@pytest.mark.parametrize("with_namespaces", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_trace_agrees_with_sglang(page_size, with_namespaces, seed, check):
    rng = np.random.default_rng(seed * 100 + page_size * 10 + with_namespaces)
    ours, peer = RadixCache(page_size), SGLangRadixPeer(page_size)
    history: list[list[int]] = []
    locked: list[tuple] = []  # (our node, peer node) pairs, one per held lock
    next_value = 0
    for step in range(700):
        extra_key = [None, "a", "b"][int(rng.integers(3))] if with_namespaces else None
        roll = rng.random()
        if roll < 0.35:
            key = _random_key(rng, history)
            value = np.arange(next_value, next_value + len(key), dtype=np.int64)
            next_value += len(key)
            got = ours.insert(key, value, extra_key)
            assert got == peer.insert(key, torch.from_numpy(value), extra_key), step
            history.append(key)
        elif roll < 0.7:
            key = _random_key(rng, history)
            mine, theirs = ours.match_prefix(key, extra_key), peer.match_prefix(key, extra_key)
            assert mine.prefix_len == theirs.prefix_len, step
            assert mine.value.tolist() == peer.path_value(theirs.last_node).tolist(), step
            if rng.random() < 0.5:
                assert ours.inc_lock_ref(mine.last_node) == peer.inc_lock_ref(theirs.last_node), step
                locked.append((mine.last_node, theirs.last_node))
        elif roll < 0.85 and locked:
            mine, theirs = locked.pop(int(rng.integers(len(locked))))
            assert ours.dec_lock_ref(mine) == peer.dec_lock_ref(theirs), step
        else:
            num_tokens = int(rng.integers(0, 40))
            assert ours.evict(num_tokens) == peer.evict(num_tokens), step
        assert _sizes(ours) == _sizes(peer), step
        if step % 50 == 0:
            check(ours)
    while locked:
        mine, theirs = locked.pop()
        assert ours.dec_lock_ref(mine) == peer.dec_lock_ref(theirs)
    assert ours.evict(10**9) == peer.evict(10**9)
    assert _sizes(ours) == _sizes(peer) == (0, 0, 0)
    check(ours)


def test_sglang_peer_sees_same_namespaced_split():
    ours, peer = RadixCache(), SGLangRadixPeer()
    for tree in (ours, peer):
        tree.insert([1, 2, 3, 4], np.arange(4) if tree is ours else None, "x")
        tree.insert([1, 2, 3, 4], np.arange(4) if tree is ours else None, "y")
    assert ours.match_prefix([1, 2, 9], "x").prefix_len == peer.match_prefix([1, 2, 9], "x").prefix_len == 2
    assert ours.match_prefix([1, 2], "z").prefix_len == peer.match_prefix([1, 2], "z").prefix_len == 0
    assert _sizes(ours) == _sizes(peer) == (8, 0, 8)
