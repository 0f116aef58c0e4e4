"""Honest memory footprint of a RadixCache: token data plus every Python object the tree holds."""

from __future__ import annotations

import sys
from typing import NamedTuple

from radix_cache.tree import RadixCache


class Footprint(NamedTuple):
    num_nodes: int  # namespace roots included
    key_bytes: int  # token id data (np.int32)
    value_bytes: int  # payload data
    overhead_bytes: int  # node objects, children dicts and their keys, array/bytes headers, indexes
    total_tokens: int  # tree.total_size()

    @property
    def total_bytes(self) -> int:
        return self.key_bytes + self.value_bytes + self.overhead_bytes

    @property
    def bytes_per_token(self) -> float:
        return self.total_bytes / self.total_tokens if self.total_tokens else 0.0


def tree_footprint(tree: RadixCache) -> Footprint:
    """Measure ``tree`` with ``sys.getsizeof``: reads only, O(number of nodes).

    Counted per node: the node object, its children dict, the dict's key objects, the key bytes
    object and the value array (object header plus owned data). Counted once: the namespace
    index and the set of evictable leaves.
    """
    num_nodes = key_bytes = value_bytes = overhead = 0
    for node in tree.iter_nodes():
        num_nodes += 1
        key_data = len(node.key_bytes)
        value_data = node.value.nbytes
        key_bytes += key_data
        value_bytes += value_data
        overhead += sys.getsizeof(node) + sys.getsizeof(node.children)
        overhead += sum(sys.getsizeof(child_key) for child_key in node.children)
        overhead += sys.getsizeof(node.key_bytes) - key_data
        overhead += sys.getsizeof(node.value) - (value_data if node.value.base is None else 0)
    overhead += sys.getsizeof(tree._namespaces) + sys.getsizeof(tree._evictable_leaves)
    return Footprint(num_nodes, key_bytes, value_bytes, overhead, tree.total_size())


def store_footprint(store) -> Footprint:
    """``tree_footprint`` of a TrajectoryStore's tree plus its per-prompt and per-sample records
    (tails, and the policy-version runs, counted with their array headers)."""
    tree = tree_footprint(store.tree)
    records = sys.getsizeof(store._prompts)
    for prompt_id, entry in store.stored_prompts():
        records += sys.getsizeof(prompt_id) + sys.getsizeof(entry) + sys.getsizeof(entry.digest)
        records += sys.getsizeof(entry.samples) + sys.getsizeof(entry.locked_nodes)
        for sample in entry.samples:
            records += sys.getsizeof(sample) + sys.getsizeof(sample.tail_ids) + sys.getsizeof(sample.tail_logprobs)
            if sample.version_runs is not None:  # run-length policy versions (usually one row)
                records += sys.getsizeof(sample.version_runs)
    return Footprint(tree.num_nodes, tree.key_bytes, tree.value_bytes, tree.overhead_bytes + records,
                     store.total_tokens())
