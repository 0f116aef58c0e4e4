"""Tree nodes of the radix tree: plain slotted records, no behaviour beyond path walks.

A node owns one edge of the tree: its token ids, kept as the raw bytes of an np.int32 array in
``key_bytes`` (bytes compare with one memcmp, ~8x faster than a numpy compare on short edges, and
cost less per object than an ndarray), and ``value``, the per-token payload (same length, any
dtype). Both are owned copies, never views of caller data; ``key`` is a read-only np.int32 view.

Every namespace (``extra_key``) has its own :class:`NamespaceRoot`: an empty-keyed sentinel
with ``lock_ref == 1`` (like SGLang's root), so walks towards the root stop at ``parent is None``.
A node removed from the tree (evicted, or in a deleted namespace) is detached: its walk ends at a
node that is not a registered namespace root, which is how the tree rejects stale handles.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

EMPTY_KEY = np.empty(0, dtype=np.int32)
EMPTY_KEY.flags.writeable = False
TOKEN_BYTES = 4  # np.int32


class TreeNode:
    """One edge of the radix tree.

    ``children`` maps the bytes of the child's first page (its first token when page_size is 1)
    to the child. ``last_access_time`` is a logical clock tick of the tree
    (strictly increasing), which orders LRU eviction exactly like SGLang's ``time.monotonic()``.
    """

    __slots__ = ("children", "parent", "key_bytes", "value", "lock_ref", "last_access_time")

    def __init__(
        self,
        key_bytes: bytes,
        value: np.ndarray,
        parent: TreeNode | None,
        last_access_time: int,
        lock_ref: int = 0,
    ) -> None:
        self.children: dict[bytes, TreeNode] = {}
        self.parent = parent
        self.key_bytes = key_bytes  # np.int32 data, key_len * TOKEN_BYTES bytes
        self.value = value  # any dtype, shape (key_len,)
        self.lock_ref = lock_ref
        self.last_access_time = last_access_time

    @property
    def key(self) -> np.ndarray:
        """The edge's token ids: a read-only np.int32 view of ``key_bytes``."""
        return np.frombuffer(self.key_bytes, dtype=np.int32)

    @property
    def key_len(self) -> int:
        return len(self.key_bytes) // TOKEN_BYTES

    def __repr__(self) -> str:
        head = self.key[:8].tolist()
        more = "..." if self.key_len > 8 else ""
        return f"TreeNode(len={self.key_len}, key={head}{more}, lock_ref={self.lock_ref})"


class NamespaceRoot(TreeNode):
    """Sentinel root of one namespace; never evicted, never counted in sizes.

    ``value_dtype`` is the payload dtype every node of this namespace holds (fixed by the first
    insert into the empty namespace; None while it is empty), so a path's values never mix dtypes.
    """

    __slots__ = ("extra_key", "value_dtype")

    def __init__(
        self, extra_key: Hashable | None, value_dtype: np.dtype | None, last_access_time: int
    ) -> None:
        super().__init__(b"", EMPTY_KEY, None, last_access_time, lock_ref=1)
        self.extra_key = extra_key
        self.value_dtype = value_dtype


def path_nodes(node: TreeNode) -> list[TreeNode]:
    """Nodes from the first edge below the namespace root down to ``node`` (root excluded)."""
    nodes = []
    while node.parent is not None:
        nodes.append(node)
        node = node.parent
    nodes.reverse()
    return nodes


def top_of(node: TreeNode) -> TreeNode:
    """The node reached by following parents until there are none (a root if ``node`` is live)."""
    while node.parent is not None:
        node = node.parent
    return node
