"""What a TrajectoryStore remembers per prompt and per sample (its private book-keeping).

Serializers (snapshot.py) read these records through ``TrajectoryStore.stored_prompts()``;
nothing outside trajectory_store.py mutates them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from radix_cache.node import TreeNode


class StoredSample(NamedTuple):
    """One sample: tree path to `node`, then `tail_ids`; `response_len` tokens in all.

    Log-probs are the tree payload along the path, then `tail_logprobs`; policy versions, if the
    prompt has them, are `version_runs` (radix_cache.version_runs) over all `response_len` tokens.
    """

    node: TreeNode | None  # where the page-aligned part ends; None if that part is empty
    tail_ids: np.ndarray  # (tail_len,) int32 tokens past the last whole page
    tail_logprobs: np.ndarray  # (tail_len,) float32 log-probs of those tokens
    response_len: int
    version_runs: np.ndarray | None  # (num_runs, 2) int32 (start, version) rows; None: unversioned


class StoredPrompt:
    """Book-keeping of one prompt: its prompt digest, samples in put order, and held locks."""

    __slots__ = ("digest", "has_versions", "samples", "num_locks", "locked_nodes")

    def __init__(self, digest: bytes, has_versions: bool) -> None:
        self.digest = digest
        self.has_versions = has_versions
        self.samples: list[StoredSample] = []
        self.num_locks = 0  # locked lookups not yet released
        self.locked_nodes: list[TreeNode] = []  # one tree lock per entry
