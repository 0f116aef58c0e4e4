"""RadixCache unit tests, plus random traces checked against invariants and a brute-force oracle."""

from __future__ import annotations

import numpy as np
import pytest

from radix_cache.tree import LockedError, RadixCache


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def ins(tree: RadixCache, key: list[int], extra_key=None, base: float = 0.0) -> int:
    return tree.insert(key, np.arange(len(key), dtype=np.float32) + base, extra_key)


def test_sglang_main_example(check):
    tree = RadixCache()
    assert ins(tree, [1, 2, 3]) == 0
    assert ins(tree, [1, 2, 3]) == 3
    assert ins(tree, [1, 2, 4, 5]) == 2
    assert ins(tree, [1, 2, 4, 5, 6, 7]) == 4
    assert ins(tree, [8, 9, 10, 11, 12]) == 0
    check(tree)
    assert tree.match_prefix([1, 2, 3, 13, 14]).prefix_len == 3
    assert tree.total_size() == 3 + 2 + 2 + 5 + 0 == tree.evictable_size()
    assert "#tokens: 12" in tree.pretty_print()
    check(tree)


def test_match_splits_and_node_keeps_suffix(check):
    tree = RadixCache()
    leaf = tree.insert_path([1, 2, 3, 4, 5], f32(-1, -2, -3, -4, -5)).last_node
    result = tree.match_prefix([1, 2, 3, 9])
    assert result.prefix_len == 3
    assert result.value.tolist() == [-1, -2, -3]
    assert result.last_node.key.tolist() == [1, 2, 3]
    assert leaf.key.tolist() == [4, 5] and leaf.parent is result.last_node
    assert tree.path_key(leaf).tolist() == [1, 2, 3, 4, 5]
    assert tree.path_value(leaf).tolist() == [-1, -2, -3, -4, -5]
    assert tree.total_size() == 5
    check(tree)
    # A match ending exactly on a node boundary does not split again.
    assert tree.match_prefix([1, 2, 3]).last_node is result.last_node
    assert len(list(tree.iter_nodes())) == 3


def test_insert_keeps_existing_payload(check):
    tree = RadixCache()
    tree.insert([1, 2, 3], f32(-1, -1, -1))
    assert tree.insert([1, 2, 3, 4], f32(-9, -9, -9, -9)) == 3
    assert tree.match_prefix([1, 2, 3, 4]).value.tolist() == [-1, -1, -1, -9]
    check(tree)


def test_insert_copies_caller_arrays():
    tree = RadixCache()
    key, value = np.array([1, 2, 3], dtype=np.int32), f32(-1, -2, -3)
    tree.insert(key, value)
    key[0], value[0] = 7, 7
    result = tree.match_prefix([1, 2, 3])
    assert result.prefix_len == 3 and result.value[0] == -1
    result.value[1] = 5  # the result is a copy too
    assert tree.match_prefix([1, 2, 3]).value[1] == -2


def test_page_size_truncates_and_matches_whole_pages(check):
    tree = RadixCache(page_size=4)
    assert ins(tree, list(range(10))) == 0  # stores 8 tokens
    assert tree.total_size() == 8
    assert tree.match_prefix(list(range(7))).prefix_len == 4
    assert tree.match_prefix([0, 1, 2, 3, 4, 5, 9, 9]).prefix_len == 4  # mismatch inside page 2
    assert tree.match_prefix([0, 1, 2, 9]).prefix_len == 0  # first page differs
    assert ins(tree, [0, 1, 2, 3, 4, 5, 6, 8]) == 4
    check(tree)
    assert tree.match_prefix([1, 2, 3]).prefix_len == 0  # shorter than a page
    assert ins(tree, [1, 2, 3]) == 0 and tree.total_size() == 12


def test_namespaces_never_share(check):
    tree = RadixCache()
    ins(tree, [1, 2, 3])
    assert ins(tree, [1, 2, 3], extra_key="a") == 0
    assert tree.total_size() == 6
    assert tree.match_prefix([1, 2], extra_key="b").prefix_len == 0
    assert tree.match_prefix([1, 2], extra_key="a").prefix_len == 2
    assert tree.extra_keys() == [None, "a"]
    check(tree)


def test_locks_move_sizes_and_protect(check):
    tree = RadixCache()
    leaf = tree.insert_path([1, 2, 3, 4], f32(-1, -1, -1, -1)).last_node
    mid = tree.match_prefix([1, 2]).last_node  # splits: [1,2] -> [3,4]
    assert tree.inc_lock_ref(leaf) == -4
    assert (tree.evictable_size(), tree.protected_size()) == (0, 4)
    assert tree.inc_lock_ref(mid) == 0  # already protected
    assert mid.lock_ref == 2 and leaf.lock_ref == 1
    assert tree.evict(100) == 0
    check(tree)
    assert tree.dec_lock_ref(leaf) == 2  # [3,4] becomes evictable, [1,2] still locked by mid
    assert tree.evict(100) == 2
    assert tree.dec_lock_ref(mid) == 2
    assert tree.evict(1) == 2 and tree.total_size() == 0
    check(tree)
    with pytest.raises(ValueError, match="not in this tree"):
        tree.inc_lock_ref(leaf)


def test_lock_on_root_is_noop():
    tree = RadixCache()
    assert tree.inc_lock_ref(tree.root_node) == 0
    assert tree.dec_lock_ref(tree.root_node) == 0
    assert tree.match_prefix([5]).last_node is tree.root_node


def test_evict_lru_order_and_parent_becomes_leaf(check):
    tree = RadixCache()
    ins(tree, [1, 1, 1])
    ins(tree, [2, 2])
    ins(tree, [3, 3, 3, 3])
    tree.match_prefix([1, 1, 1])  # [2,2] is now least recently used
    assert tree.evict(1) == 2
    assert tree.match_prefix([2, 2]).prefix_len == 0
    assert tree.evict(4) == 4  # [3,3,3,3] next
    assert tree.match_prefix([1, 1, 1]).prefix_len == 3
    tree.reset()
    ins(tree, [1, 2, 3])
    ins(tree, [1, 2, 4])
    assert tree.evict(3) == 4  # both leaves, then their parent [1,2]
    assert tree.total_size() == 0
    check(tree)


def test_evict_zero_does_nothing(dump_tree):
    tree = RadixCache()
    ins(tree, [1, 2])
    before = dump_tree(tree)
    assert tree.evict(0) == 0
    assert dump_tree(tree) == before


def test_delete_namespace(check):
    tree = RadixCache()
    ins(tree, [1, 2, 3], "a")
    node = tree.insert_path([1, 2, 4], f32(0, 0, 0), "a").last_node
    ins(tree, [1, 2, 3], "b")
    tree.inc_lock_ref(node)
    with pytest.raises(LockedError):
        tree.delete_namespace("a")
    assert tree.total_size() == 7
    tree.dec_lock_ref(node)
    assert tree.delete_namespace("a") == 4
    assert tree.delete_namespace("a") == 0
    assert tree.total_size() == 3 and tree.namespace_root("a") is None
    check(tree)
    with pytest.raises(ValueError, match="not in this tree"):
        tree.path_key(node)
    ins(tree, [5], None)
    assert tree.delete_namespace(None) == 1 and tree.total_size() == 3
    check(tree)


def test_structured_payload_and_reset(check):
    dtype = np.dtype([("logprob", np.float32), ("version", np.int32)])
    tree = RadixCache()
    value = np.array([(-1.0, 3), (-2.0, 4)], dtype=dtype)
    node = tree.insert_path([1, 2], value, "x").last_node
    assert tree.path_value(node).tobytes() == value.tobytes()
    assert tree.match_prefix([9], "x").value.dtype == dtype
    check(tree)
    tree.reset()
    assert tree.total_size() == 0 and tree.extra_keys() == [None]
    with pytest.raises(ValueError):
        tree.inc_lock_ref(node)
    check(tree)


def test_empty_key():
    tree = RadixCache()
    assert tree.insert([], f32()) == 0
    result = tree.match_prefix([])
    assert result.prefix_len == 0 and result.last_node is tree.root_node and len(result.value) == 0


def _lcp(a: list[int], b: list[int]) -> int:
    num = 0
    while num < min(len(a), len(b)) and a[num] == b[num]:
        num += 1
    return num


@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_random_trace_matches_oracle(page_size, check):
    """Without eviction every answer is computable by brute force over the inserted keys."""
    rng = np.random.default_rng(page_size)
    tree = RadixCache(page_size)
    inserted: dict[str | None, list[tuple[list[int], np.ndarray]]] = {}
    for step in range(600):
        extra_key = [None, "a", "b"][int(rng.integers(3))]
        mine = inserted.setdefault(extra_key, [])
        if mine and rng.random() < 0.6:
            base = mine[int(rng.integers(len(mine)))][0]
            key = base[: int(rng.integers(len(base) + 1))] + rng.integers(0, 3, int(rng.integers(0, 6))).tolist()
        else:
            key = rng.integers(0, 3, int(rng.integers(0, 16))).tolist()
        key_len = len(key) - len(key) % page_size
        best = max((_lcp(key[:key_len], k) for k, _ in mine), default=0)
        best -= best % page_size
        expected_value = np.empty(best, dtype=np.float32)
        for i in range(best):  # payload of the first key inserted sharing the page of token i
            expected_value[i] = next(v[i] for k, v in mine if _lcp(key, k) // page_size * page_size > i)
        if rng.random() < 0.5:
            value = rng.uniform(-5, 0, len(key)).astype(np.float32)
            assert tree.insert(key, value, extra_key) == best
            if key_len:
                mine.append((key[:key_len], value[:key_len]))
        else:
            result = tree.match_prefix(key, extra_key)
            assert result.prefix_len == best
            assert result.value.tobytes() == expected_value.tobytes()
            assert tree.path_key(result.last_node).tolist() == key[:best]
        if step % 20 == 0:
            check(tree)
    check(tree)


@pytest.mark.parametrize("page_size", [1, 4])
def test_random_trace_with_locks_and_evictions(page_size, check):
    rng = np.random.default_rng(10 + page_size)
    tree = RadixCache(page_size)
    locked: list = []
    for _ in range(800):
        roll = rng.random()
        extra_key = [None, "a"][int(rng.integers(2))]
        key = rng.integers(0, 3, int(rng.integers(0, 20))).tolist()
        if roll < 0.4:
            tree.insert(key, np.zeros(len(key), dtype=np.float32), extra_key)
        elif roll < 0.7:
            node = tree.match_prefix(key, extra_key).last_node
            if rng.random() < 0.5:
                tree.inc_lock_ref(node)
                locked.append(node)
        elif roll < 0.85 and locked:
            tree.dec_lock_ref(locked.pop(int(rng.integers(len(locked)))))
        else:
            protected = tree.protected_size()
            tree.evict(int(rng.integers(0, 30)))
            assert tree.protected_size() == protected
            for node in locked:  # locked nodes survive eviction (a stale node would raise)
                tree.path_key(node)
        check(tree)
    for node in locked:
        tree.dec_lock_ref(node)
    assert tree.protected_size() == 0
    tree.evict(10**9)
    assert tree.total_size() == 0
    check(tree)


def test_footprint_counts_data_and_objects():
    from radix_cache.footprint import tree_footprint

    tree = RadixCache()
    tree.insert(np.arange(10_000), np.zeros(10_000, dtype=np.float32))
    footprint = tree_footprint(tree)
    assert footprint.key_bytes == footprint.value_bytes == 40_000
    assert footprint.total_tokens == 10_000 and footprint.num_nodes == 2
    assert 8.0 < footprint.bytes_per_token < 8.2  # key + value data, plus ~1.2 kB of objects


def test_package_imports_no_torch_sglang_or_ray():
    import subprocess
    import sys

    code = (
        "import sys, radix_cache, radix_cache.snapshot, radix_cache.footprint;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sglang', 'ray')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
