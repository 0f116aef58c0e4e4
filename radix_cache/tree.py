"""RadixCache: SGLang's radix tree semantics over numpy token keys with a per-token payload.

Semantics mirror ``sglang.srt.mem_cache.radix_cache.RadixCache`` (0.5.23, LRU policy):
matching splits the node where a match ends; insert never overwrites the payload of a prefix
that is already present; page_size > 1 truncates keys to whole pages and looks children up by
their first page; keys with different ``extra_key`` never share nodes; a locked node and its
ancestors move from evictable to protected size; eviction pops unlocked leaves by last access.

Files: tree_base.py (state, sizes, locks, inspection), tree_removal.py (eviction, namespace
deletion), this file (matching and insertion). Not thread-safe. Every public method validates
its input completely before it mutates anything, so a call that raises leaves the tree unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np

from radix_cache.inputs import as_payload, as_token_ids
from radix_cache.node import TOKEN_BYTES, NamespaceRoot, TreeNode
from radix_cache.tree_base import empty_value
from radix_cache.tree_removal import LockedError, TreeRemoval

__all__ = ["InsertResult", "LockedError", "MatchResult", "RadixCache"]


class MatchResult(NamedTuple):
    prefix_len: int  # tokens of the key found in the tree (whole pages)
    last_node: TreeNode  # node where the match ends; a namespace root when nothing matched
    value: np.ndarray  # (prefix_len,) payload of the matched path, a fresh copy


class InsertResult(NamedTuple):
    prefix_len: int  # tokens that were already present (their payload was kept)
    last_node: TreeNode  # node where the inserted (page-truncated) key ends


class RadixCache(TreeRemoval):
    """A radix tree of token-id keys with one payload entry per token (SGLang semantics).

    Sizes count tokens: ``evictable_size() + protected_size() == total_size()`` always;
    a token is protected while its node has ``lock_ref > 0``.

    Where it differs from SGLang on purpose (answers and sizes never do; see the differential
    test): LRU order comes from a logical clock ticked where SGLang reads ``time.monotonic()``,
    so it is strict and reproducible; a value is required and one namespace holds one dtype;
    each namespace has its own root, dropped when it empties (a match in an unknown namespace
    returns the default root); stale node handles and unlocks below zero raise instead of
    silently corrupting sizes; ``total_size()`` is O(1).
    """

    def match_prefix(self, key: Any, extra_key: Hashable | None = None) -> MatchResult:
        """Longest cached prefix of ``key`` (truncated to whole pages) in namespace ``extra_key``.

        Mutates: refreshes the access time of the visited nodes, and splits the node in which
        the match ends (the original node object keeps the suffix, a new parent gets the prefix).
        Locks nothing: lock ``last_node`` before an eviction may run if you rely on the prefix.
        """
        key = as_token_ids(key)
        page = self.page_size
        if page > 1:
            key = key[: len(key) - len(key) % page]
        ns = self._namespaces.get(extra_key)
        if ns is None or len(key) == 0:
            return MatchResult(0, ns or self.root_node, empty_value(ns))
        self._clock += 1
        now = self._clock
        ns.last_access_time = now
        values: list[np.ndarray] = []
        node, offset, _ = self._descend(ns, key, now, values)
        if not values:
            return MatchResult(0, node, empty_value(ns))
        return MatchResult(offset // TOKEN_BYTES, node, np.concatenate(values))

    def insert(self, key: Any, value: Any, extra_key: Hashable | None = None) -> int:
        """Insert ``key`` with its per-token ``value``; return the length already present.

        See :meth:`insert_path`.
        """
        return self.insert_path(key, value, extra_key).prefix_len

    def insert_path(self, key: Any, value: Any, extra_key: Hashable | None = None) -> InsertResult:
        """Insert ``key`` -> ``value`` (same length; both truncated to whole pages).

        The payload of the prefix already present is kept, not overwritten (SGLang semantics).
        New tokens are evictable (unlocked) even below a locked node. Every value of one
        namespace must share one dtype. Mutates: may split one node, adds at most one node,
        refreshes access times along the path. Copies the data it keeps.
        """
        key = as_token_ids(key)
        value = as_payload(value, len(key))
        page = self.page_size
        if page > 1:
            key_len = len(key) - len(key) % page
            key, value = key[:key_len], value[:key_len]
        ns = self._namespaces.get(extra_key)
        if ns is not None and ns.value_dtype is not None and value.dtype != ns.value_dtype:
            raise ValueError(
                f"value dtype {value.dtype} differs from dtype {ns.value_dtype} of namespace {extra_key!r}"
            )
        if len(key) == 0:
            return InsertResult(0, ns or self.root_node)
        self._clock += 1
        now = self._clock
        if ns is None:
            ns = self._namespaces[extra_key] = NamespaceRoot(extra_key, value.dtype, now)
        elif ns.value_dtype is None:
            ns.value_dtype = value.dtype
        ns.last_access_time = now
        node, offset, query = self._descend(ns, key, now, None)
        prefix_len = offset // TOKEN_BYTES
        if offset < len(query):
            self._clock += 1
            new_node = TreeNode(query[offset:], value[prefix_len:].copy(), node, self._clock)
            node.children[query[offset : offset + page * TOKEN_BYTES]] = new_node
            self._evictable_size += len(key) - prefix_len
            self._evictable_leaves.discard(node)
            self._evictable_leaves.add(new_node)
            return InsertResult(prefix_len, new_node)
        return InsertResult(prefix_len, node)

    def _descend(
        self, ns: TreeNode, key: np.ndarray, now: int, values: list[np.ndarray] | None
    ) -> tuple[TreeNode, int, bytes]:
        """Walk from ``ns`` along ``key`` (page-aligned); return (deepest node, matched bytes, key bytes).

        Mutates: stamps ``now`` on every child it enters and splits the node in which the match
        ends, so that the returned node ends exactly at the matched prefix. Appends the payload of
        each node on the matched path to ``values`` when given.
        """
        query, step = key.tobytes(), self.page_size * TOKEN_BYTES
        node, offset, query_end = ns, 0, len(query)
        while offset < query_end:  # offsets count bytes
            child = node.children.get(query[offset : offset + step])
            if child is None:
                break
            child.last_access_time = now
            edge = child.key_bytes
            end = offset + len(edge)
            if end <= query_end and query[offset:end] == edge:
                node, offset = child, end
            else:
                matched = self._match_len(child.key, key, offset // TOKEN_BYTES)
                offset += matched * TOKEN_BYTES
                node = self._split(child, matched)
            if values is not None:
                values.append(node.value)
            if node is not child:  # split: the query goes on with a token no child of ``node`` has
                break
        return node, offset, query

    def _match_len(self, edge: np.ndarray, key: np.ndarray, start: int) -> int:
        """Tokens of ``edge`` equal to ``key[start:]``, rounded down to whole pages."""
        num = min(len(edge), len(key) - start)
        diff = edge[:num] != key[start : start + num]
        first = int(diff.argmax())
        if diff[first]:
            num = first
        return num - num % self.page_size

    def _split(self, child: TreeNode, split_len: int) -> TreeNode:
        """Split ``child`` at ``split_len``: a new parent takes the prefix, ``child`` keeps the rest.

        The new node inherits the lock count (sizes do not change) and gets a fresh access tick,
        like SGLang's freshly constructed TreeNode.
        """
        self._clock += 1
        parent, edge, split_at = child.parent, child.key_bytes, split_len * TOKEN_BYTES
        prefix = TreeNode(edge[:split_at], child.value[:split_len].copy(), parent, self._clock, child.lock_ref)
        child.key_bytes = edge[split_at:]
        child.value = child.value[split_len:].copy()
        child.parent = prefix
        step = self.page_size * TOKEN_BYTES
        prefix.children[child.key_bytes[:step]] = child
        parent.children[edge[:step]] = prefix
        return prefix
