"""TreeBase: the state of a radix tree, its size accounting, locks and read-only inspection.

State: one :class:`NamespaceRoot` per ``extra_key`` (the default namespace ``None`` always
exists), the set of evictable leaves (unlocked, childless), and two counters,
``evictable_size + protected_size == total_size`` (tokens). A token is protected while its node
has ``lock_ref > 0``; locking a node locks its ancestors too, so ``lock_ref`` never grows from a
parent to its child. ``RadixCache`` (tree.py) adds matching and insertion, ``TreeRemoval``
(tree_removal.py) eviction and namespace deletion.

Not thread-safe: one caller uses a tree at a time. Every public method validates its input
completely before it mutates anything, so a call that raises leaves the tree unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np

from radix_cache.node import EMPTY_KEY, NamespaceRoot, TreeNode, path_nodes, top_of
from radix_cache.tree_view import format_tree


class TreeBase:
    """Namespaces, sizes and locks of a radix tree of token-id keys (one payload entry per token)."""

    def __init__(self, page_size: int = 1) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise TypeError(f"page_size must be an int, got {type(page_size).__name__}")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.page_size = page_size
        self.reset()

    def reset(self) -> None:
        """Drop every node and namespace. Node handles taken before become stale."""
        self._clock = 0  # logical LRU clock: one tick per access or node creation
        self.root_node = NamespaceRoot(None, None, 0)
        self._namespaces: dict[Hashable | None, NamespaceRoot] = {None: self.root_node}
        self._evictable_leaves: set[TreeNode] = set()
        self._evictable_size = 0
        self._protected_size = 0

    def evictable_size(self) -> int:
        return self._evictable_size

    def protected_size(self) -> int:
        return self._protected_size

    def total_size(self) -> int:
        return self._evictable_size + self._protected_size

    # ---- locks ----------------------------------------------------------------------------
    def inc_lock_ref(self, node: TreeNode) -> int:
        """Lock ``node`` and its ancestors; return the change of evictable size (<= 0).

        A locked node is never evicted nor deleted. Locking any namespace root is a no-op.
        Raises ValueError for a node that is not (or no longer) in this tree.
        """
        self._check_live(node)
        delta = 0
        while node.parent is not None:
            if node.lock_ref == 0:
                delta -= node.key_len
                self._evictable_leaves.discard(node)
            node.lock_ref += 1
            node = node.parent
        self._evictable_size += delta
        self._protected_size -= delta
        return delta

    def dec_lock_ref(self, node: TreeNode) -> int:
        """Undo one :meth:`inc_lock_ref` of ``node``; return the change of evictable size (>= 0).

        Raises ValueError (and changes nothing) if a lock count on the path would go below zero.
        """
        self._check_live(node)
        for path_node in path_nodes(node):
            if path_node.lock_ref < 1:
                raise ValueError(f"dec_lock_ref below zero on {path_node!r}")
        delta = 0
        while node.parent is not None:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                delta += node.key_len
                if not node.children:
                    self._evictable_leaves.add(node)
            node = node.parent
        self._evictable_size += delta
        self._protected_size -= delta
        return delta

    def _check_live(self, node: TreeNode) -> None:
        """Raise unless ``node`` is in this tree; any namespace root passes (locking one is a no-op)."""
        if not isinstance(node, TreeNode):
            raise TypeError(f"expected a TreeNode, got {type(node).__name__}")
        if isinstance(node, NamespaceRoot):
            return
        top = top_of(node)
        if not isinstance(top, NamespaceRoot) or self._namespaces.get(top.extra_key) is not top:
            raise ValueError(f"{node!r} is not in this tree (evicted, deleted, or from another tree)")

    # ---- paths and inspection -------------------------------------------------------------
    def path_key(self, node: TreeNode) -> np.ndarray:
        """Token ids from the namespace root down to ``node`` (a fresh np.int32 array)."""
        self._check_live(node)
        keys = [path_node.key for path_node in path_nodes(node)]
        return np.concatenate(keys) if keys else EMPTY_KEY.copy()

    def path_value(self, node: TreeNode) -> np.ndarray:
        """Payload from the namespace root down to ``node`` (a fresh array)."""
        self._check_live(node)
        values = [path_node.value for path_node in path_nodes(node)]
        return np.concatenate(values) if values else empty_value(top_of(node))

    def namespace_root(self, extra_key: Hashable | None = None) -> NamespaceRoot | None:
        """Root of namespace ``extra_key``; None if it holds nothing (the default root always exists)."""
        return self._namespaces.get(extra_key)

    def extra_keys(self) -> list[Hashable | None]:
        """Namespaces that exist (None, the default namespace, always does)."""
        return list(self._namespaces)

    def iter_nodes(self) -> Iterator[TreeNode]:
        """Every node of every namespace, roots included (depth first). Do not mutate meanwhile."""
        for ns in self._namespaces.values():
            stack: list[TreeNode] = [ns]
            while stack:
                node = stack.pop()
                yield node
                stack.extend(node.children.values())

    def pretty_print(self, max_tokens: int = 8) -> str:
        """Print the tree (one line per node, indented by depth) and return the same text."""
        text = format_tree(self._namespaces.values(), max_tokens, self.total_size())
        print(text)
        return text



def empty_value(ns: NamespaceRoot | None) -> np.ndarray:
    """Zero-length payload of a namespace's dtype (float32 for an empty or unknown namespace)."""
    dtype = None if ns is None else ns.value_dtype
    return np.empty(0, dtype=np.float32 if dtype is None else dtype)
