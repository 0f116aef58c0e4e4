"""Shared checks for the radix_cache tests: tree invariants and exact state dumps."""

from __future__ import annotations

import pytest

from radix_cache.node import TOKEN_BYTES, NamespaceRoot, TreeNode
from radix_cache.trajectory_store import TrajectoryStore
from radix_cache.tree import RadixCache


def check_invariants(tree: RadixCache) -> None:
    """Assert every structural invariant of ``tree`` (reads internals on purpose)."""
    page = tree.page_size
    step = page * TOKEN_BYTES
    evictable = protected = 0
    leaves = set()
    assert tree._namespaces[None] is tree.root_node
    for extra_key, ns in tree._namespaces.items():
        assert isinstance(ns, NamespaceRoot) and ns.extra_key == extra_key
        assert ns.parent is None and ns.key_len == 0 and ns.lock_ref == 1
        if ns is not tree.root_node:
            assert ns.children, f"empty namespace {extra_key!r} was not dropped"
        assert (ns.value_dtype is None) == (not ns.children)
        stack: list[TreeNode] = [ns]
        while stack:
            node = stack.pop()
            for child_key, child in node.children.items():
                assert child.parent is node
                assert not isinstance(child, NamespaceRoot)
                assert child_key == child.key_bytes[:step]
                assert child.key_len > 0, "empty non-root node"
                assert child.key_len % page == 0, "edge not page aligned"
                assert len(child.value) == child.key_len and child.value.ndim == 1
                assert child.value.dtype == ns.value_dtype
                assert child.lock_ref >= 0
                if node is not ns:
                    assert child.lock_ref <= node.lock_ref, "child locked more than its parent"
                if child.lock_ref:
                    protected += child.key_len
                else:
                    evictable += child.key_len
                    if not child.children:
                        leaves.add(child)
                stack.append(child)
    assert tree.evictable_size() == evictable
    assert tree.protected_size() == protected
    assert tree.total_size() == evictable + protected
    assert tree._evictable_leaves == leaves


def tree_state(tree: RadixCache) -> list:
    """Exact, comparable dump of a tree: sizes, then per node (namespace, path, payload, lock)."""
    rows = []
    for node in tree.iter_nodes():
        if isinstance(node, NamespaceRoot):
            rows.append(("ns", node.extra_key, str(node.value_dtype), len(node.children)))
        else:
            path = tuple(tree.path_key(node).tolist())
            rows.append(("node", path, node.value.tobytes(), node.lock_ref, node.last_access_time))
    return [tree.evictable_size(), tree.protected_size(), tree.total_size(), sorted(rows, key=repr)]


def store_state(store: TrajectoryStore) -> list:
    """Exact, comparable dump of a store: config, stats, LRU order, every sample's arrays."""
    rows = [store.max_tokens, store.samples_per_prompt, store.page_size, store.stats(), list(store.prompt_ids())]
    for prompt_id in store.prompt_ids():
        rows.append((prompt_id, store.is_locked(prompt_id)))
        for draft in store.samples(prompt_id):
            versions = None if draft.versions is None else draft.versions.tolist()
            rows.append((draft.token_ids.tolist(), draft.logprobs.tobytes(), versions))
    rows.append(tree_state(store.tree))
    return rows


@pytest.fixture
def check():
    return check_invariants


@pytest.fixture
def dump_tree():
    return tree_state


@pytest.fixture
def dump_store():
    return store_state
