"""TreeRemoval: the ways nodes leave a radix tree, LRU eviction and whole-namespace deletion.

Both remove only unlocked nodes and leave removed node handles stale (detached: the tree rejects
them afterwards). A namespace left without nodes is dropped (the default one is kept, empty).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

from radix_cache.inputs import as_count
from radix_cache.node import TOKEN_BYTES, NamespaceRoot, TreeNode
from radix_cache.tree_base import TreeBase


class LockedError(RuntimeError):
    """An operation would remove nodes that a caller holds locked."""


class TreeRemoval(TreeBase):
    """Eviction (SGLang's LRU over unlocked leaves) and namespace deletion."""

    def evict(self, num_tokens: int) -> int:
        """Evict at least ``num_tokens`` tokens (if possible); return the number evicted.

        Least recently used unlocked leaves go first, whole nodes at a time; a parent left
        without children becomes a candidate if unlocked. Evicted node handles become stale.
        """
        num_tokens = as_count(num_tokens, "num_tokens")
        heap = [(leaf.last_access_time, id(leaf), leaf) for leaf in self._evictable_leaves]
        heapq.heapify(heap)
        num_evicted = 0
        while num_evicted < num_tokens and heap:
            _, _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            num_evicted += leaf.key_len
            self._delete_leaf(leaf)
            if not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, (parent.last_access_time, id(parent), parent))
        return num_evicted

    def _delete_leaf(self, leaf: TreeNode) -> None:
        parent = leaf.parent
        del parent.children[leaf.key_bytes[: self.page_size * TOKEN_BYTES]]
        self._evictable_size -= leaf.key_len
        self._evictable_leaves.discard(leaf)
        leaf.parent = None
        if not parent.children:
            if isinstance(parent, NamespaceRoot):
                self._drop_namespace(parent)
            elif parent.lock_ref == 0:
                self._evictable_leaves.add(parent)

    def delete_namespace(self, extra_key: Hashable | None) -> int:
        """Remove every node of namespace ``extra_key``; return the number of tokens removed.

        Raises LockedError (and removes nothing) if any node in it is locked. An unknown
        namespace removes nothing. Node handles of the namespace become stale.
        """
        ns = self._namespaces.get(extra_key)
        if ns is None:
            return 0
        if any(child.lock_ref > 0 for child in ns.children.values()):
            raise LockedError(f"namespace {extra_key!r} holds locked nodes; release them first")
        num_removed = 0
        stack = list(ns.children.values())
        for child in stack:
            child.parent = None  # detaches the whole subtree from any root
        while stack:
            node = stack.pop()
            num_removed += node.key_len
            self._evictable_leaves.discard(node)
            stack.extend(node.children.values())
        self._evictable_size -= num_removed
        ns.children = {}
        self._drop_namespace(ns)
        return num_removed

    def _drop_namespace(self, ns: NamespaceRoot) -> None:
        if ns is self.root_node:
            ns.value_dtype = None
        else:
            del self._namespaces[ns.extra_key]

