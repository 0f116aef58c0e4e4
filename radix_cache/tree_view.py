"""Human-readable rendering of a radix tree (for debugging and tests)."""

from __future__ import annotations

from collections.abc import Iterable

from radix_cache.node import NamespaceRoot, TreeNode


def format_tree(roots: Iterable[NamespaceRoot], max_tokens: int, total_size: int) -> str:
    """One line per node, children indented under their parent; reads nothing it does not print.

    Each line shows the edge length, its first ``max_tokens`` token ids and its lock count.
    """
    lines = []
    for root in roots:
        if root.extra_key is not None or root.children:
            lines.append(f"namespace {root.extra_key!r} (dtype {root.value_dtype})")
        stack: list[tuple[TreeNode, int]] = [(child, 1) for child in _ordered(root)]
        while stack:
            node, depth = stack.pop()
            head = node.key[:max_tokens].tolist()
            more = "..." if node.key_len > max_tokens else ""
            lines.append(f"{'  ' * depth}{node.key_len} {head}{more} r={node.lock_ref}")
            stack.extend((child, depth + 1) for child in _ordered(node))
    lines.append(f"#tokens: {total_size}")
    return "\n".join(lines)


def _ordered(node: TreeNode) -> list[TreeNode]:
    """Children in reverse token order, so popping from a stack prints them in token order."""
    return sorted(node.children.values(), key=lambda child: child.key[:4].tolist(), reverse=True)
