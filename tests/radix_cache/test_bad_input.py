"""Bad input: every call raises a clear error and leaves the tree / store exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest

from radix_cache.responses import Response
from radix_cache.trajectory_store import PromptCollisionError, TrajectoryStore
from radix_cache.tree import RadixCache

F = np.float32


def built_tree() -> tuple[RadixCache, object]:
    tree = RadixCache()
    tree.insert([1, 2, 3, 4], np.zeros(4, F))
    tree.insert([1, 2, 5], np.ones(3, F), extra_key="ns")
    node = tree.match_prefix([1, 2]).last_node
    tree.inc_lock_ref(node)
    return tree, node


TREE_CALLS = {
    "float tokens": (lambda t: t.insert([1.0, 2.0], np.zeros(2, F)), TypeError, "integers"),
    "float array tokens": (lambda t: t.match_prefix(np.array([1.5])), TypeError, "integers"),
    "string key": (lambda t: t.insert("abc", np.zeros(3, F)), TypeError, "token ids"),
    "object tokens": (lambda t: t.insert([1, None], np.zeros(2, F)), TypeError, "integers"),
    "bool tokens": (lambda t: t.insert(np.array([True, False]), np.zeros(2, F)), TypeError, "integers"),
    "2-D key": (lambda t: t.insert([[1, 2]], np.zeros(2, F)), ValueError, "1-D"),
    "negative token": (lambda t: t.insert([1, -2], np.zeros(2, F)), ValueError, "negative"),
    "negative token in match": (lambda t: t.match_prefix(np.array([-1], np.int32)), ValueError, "negative"),
    "token above int32": (lambda t: t.insert([2**31], np.zeros(1, F)), ValueError, "int32"),
    "value too short": (lambda t: t.insert([1, 2, 3, 9], np.zeros(3, F)), ValueError, "length"),
    "value not 1-D": (lambda t: t.insert([1, 9], np.zeros((2, 1), F)), ValueError, "1-D"),
    "NaN value": (lambda t: t.insert([1, 2, 3, 9], np.array([0, 0, 0, np.nan], F)), ValueError, "NaN"),
    "NaN field": (
        lambda t: t.insert([7], np.array([(np.nan, 1)], dtype=[("a", F), ("b", np.int32)]), "x"),
        ValueError,
        "NaN",
    ),
    "object value": (lambda t: t.insert([1, 9], np.array([None, None])), TypeError, "numbers"),
    "dtype change in namespace": (lambda t: t.insert([1, 9], np.zeros(2, np.float64)), ValueError, "dtype"),
    "unhashable extra_key": (lambda t: t.insert([9], np.zeros(1, F), extra_key=[1]), TypeError, "unhashable"),
    "negative evict": (lambda t: t.evict(-1), ValueError, ">= 0"),
    "float evict": (lambda t: t.evict(1.5), TypeError, "int"),
    "bool evict": (lambda t: t.evict(True), TypeError, "int"),
    "lock a non-node": (lambda t: t.inc_lock_ref("node"), TypeError, "TreeNode"),
    "lock a foreign node": (
        lambda t: t.inc_lock_ref(RadixCache().insert_path([1], np.zeros(1, F)).last_node),
        ValueError,
        "not in this tree",
    ),
}


@pytest.mark.parametrize("name", list(TREE_CALLS))
def test_tree_rejects_and_is_unchanged(name, dump_tree, check):
    call, error, message = TREE_CALLS[name]
    tree, _ = built_tree()
    before = dump_tree(tree)
    with pytest.raises(error, match=message):
        call(tree)
    assert dump_tree(tree) == before
    check(tree)


def test_dec_lock_ref_below_zero_changes_nothing(dump_tree, check):
    tree, node = built_tree()
    leaf = tree.match_prefix([1, 2, 3, 4]).last_node  # unlocked child of the locked node
    before = dump_tree(tree)
    with pytest.raises(ValueError, match="below zero"):
        tree.dec_lock_ref(leaf)
    assert dump_tree(tree) == before
    assert tree.dec_lock_ref(node) == 2
    with pytest.raises(ValueError, match="below zero"):
        tree.dec_lock_ref(node)
    check(tree)


@pytest.mark.parametrize("page_size", [0, -1, 1.5, True, "4"])
def test_bad_page_size(page_size):
    with pytest.raises((TypeError, ValueError), match="page_size"):
        RadixCache(page_size)


def good(tokens=(1, 2, 3), logprobs=(-0.1, -0.2, -0.3), versions=None) -> Response:
    return Response(np.array(tokens), np.array(logprobs, dtype=F), versions)


def built_store() -> TrajectoryStore:
    store = TrajectoryStore(max_tokens=100)
    store.put("p", [5, 6], [good(), good((1, 2, 4))])
    store.put("q", [7], [good((9,), (-1.0,), np.array([3]))])
    store.lookup("p", [5, 6], 1)
    return store


STORE_CALLS = {
    "float tokens": (lambda s: s.put("p", [5, 6], [good((1.0, 2.0, 3.0))]), TypeError, "integers"),
    "negative token": (lambda s: s.put("p", [5, 6], [good((1, -2, 3))]), ValueError, "negative"),
    "length mismatch": (lambda s: s.put("p", [5, 6], [good(logprobs=(-1.0, -1.0))]), ValueError, "length"),
    "NaN logprob": (lambda s: s.put("p", [5, 6], [good(logprobs=(-1, np.nan, -1))]), ValueError, "finite"),
    "-inf logprob": (lambda s: s.put("p", [5, 6], [good(logprobs=(-1, -np.inf, -1))]), ValueError, "finite"),
    "+inf logprob": (lambda s: s.put("p", [5, 6], [good(logprobs=(np.inf, -1, -1))]), ValueError, "finite"),
    "positive logprob": (lambda s: s.put("p", [5, 6], [good(logprobs=(0.5, -1, -1))]), ValueError, "> 0"),
    "float64 underflow to -inf": (
        lambda s: s.put("p", [5, 6], [Response(np.array([1]), np.array([-1e300]))]),
        ValueError,
        "finite",
    ),
    "string logprobs": (
        lambda s: s.put("p", [5, 6], [Response(np.array([1, 2]), np.array(["a", "b"]))]),
        TypeError,
        "real",
    ),
    "versions mismatch": (lambda s: s.put("p", [5, 6], [good(versions=np.array([1]))]), ValueError, "versions"),
    "negative version": (lambda s: s.put("p", [5, 6], [good(versions=np.array([1, -1, 1]))]), ValueError, "negative"),
    "mixed versions": (
        lambda s: s.put("p", [5, 6], [good(), good(versions=np.array([1, 1, 1]))]),
        ValueError,
        "versions",
    ),
    "bad response late in list": (lambda s: s.put("p", [5, 6], [good(), good(), "oops"]), TypeError, "responses"),
    "responses not a sequence": (lambda s: s.put("p", [5, 6], good()), TypeError, "responses"),
    "responses a generator": (lambda s: s.put("p", [5, 6], (r for r in [good()])), TypeError, "sequence"),
    "int prompt_id": (lambda s: s.put(3, [5, 6], [good()]), TypeError, "prompt_id"),
    "float prompt tokens": (lambda s: s.put("p", [5.0, 6.0], [good()]), TypeError, "prompt_ids"),
    "collision on put": (lambda s: s.put("p", [5, 7], [good()]), PromptCollisionError, "different prompt"),
    "collision on lookup": (lambda s: s.lookup("p", [5], 2), PromptCollisionError, "different prompt"),
    "negative num_samples": (lambda s: s.lookup("p", [5, 6], -1), ValueError, ">= 0"),
    "float num_samples": (lambda s: s.lookup("p", [5, 6], 2.0), TypeError, "int"),
    "bad digest": (lambda s: s.put_digest("p", b"short", [good()]), ValueError, "digest"),
}


@pytest.mark.parametrize("name", list(STORE_CALLS))
def test_store_rejects_and_is_unchanged(name, dump_store, check):
    call, error, message = STORE_CALLS[name]
    store = built_store()
    before = dump_store(store)
    with pytest.raises(error, match=message):
        call(store)
    assert dump_store(store) == before
    check(store.tree)


def test_collision_error_is_a_value_error():
    assert issubclass(PromptCollisionError, ValueError)


@pytest.mark.parametrize("kwargs", [{"max_tokens": -1}, {"max_tokens": None, "samples_per_prompt": -2}])
def test_negative_budgets(kwargs):
    with pytest.raises(ValueError, match=">= 0"):
        TrajectoryStore(**kwargs)


def test_float_budget():
    with pytest.raises(TypeError, match="max_tokens"):
        TrajectoryStore(max_tokens=10.5)
