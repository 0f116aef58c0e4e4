"""Policy versions of stored samples as run-length segments, kept beside the tree, not in it.

A sample's per-token versions are almost always one value (a rollout samples a response under
one policy), so the store keeps them per sample as ``runs``: an np.int32 array of shape
(num_runs, 2) whose rows are (start offset, version), starts strictly increasing from 0; a
uniform sample has one row whatever its length, an empty one none. The tree payload is then the
plain float32 log-probs. :func:`decode_runs` rebuilds the per-token array.

Stored versions follow the tree's rule for payloads: a prefix shared with a sample inserted
earlier keeps that sample's versions (as the log-probs there do), so a draft's versions are those
of the tree path exactly as when the versions were part of the tree payload.
:class:`PutVersions` computes them during one put.
"""

from __future__ import annotations

import numpy as np

EMPTY_RUNS = np.empty((0, 2), dtype=np.int32)
EMPTY_RUNS.flags.writeable = False


def encode_runs(versions: np.ndarray) -> np.ndarray:
    """(num_runs, 2) int32 rows (start, version) of a 1-D int array; a fresh array."""
    if len(versions) == 0:
        return EMPTY_RUNS
    starts = np.flatnonzero(versions[1:] != versions[:-1]) + 1
    starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
    return np.stack([starts, versions[starts]], axis=1).astype(np.int32)


def decode_runs(runs: np.ndarray, length: int) -> np.ndarray:
    """The (length,) np.int32 versions ``runs`` encode (a fresh array). ValueError if ``runs``
    is not a valid encoding of ``length`` tokens (starts from 0, increasing, below ``length``)."""
    runs = np.asarray(runs)
    if runs.ndim != 2 or runs.shape[1] != 2 or runs.dtype.kind not in "iu":
        raise ValueError(f"version runs must be (num_runs, 2) integers, got {runs.dtype} {runs.shape}")
    starts = runs[:, 0].astype(np.int64)
    if len(runs) == 0:
        if length:
            raise ValueError(f"no version runs for {length} tokens")
        return np.empty(0, dtype=np.int32)
    if starts[0] != 0 or (np.diff(starts) <= 0).any() or starts[-1] >= length:
        raise ValueError(f"version run starts {starts.tolist()} do not split {length} tokens")
    counts = np.diff(np.append(starts, length))
    return np.repeat(runs[:, 1].astype(np.int32), counts)


class PutVersions:
    """The stored versions of the samples of one put, in insertion order (tree rule above).

    Call :meth:`add` once per sample right after inserting its page-aligned part, with the
    ``prefix_len`` the insert found already present in the (per-prompt) namespace. Keeps
    references to the put's arrays until dropped; one instance per put.
    """

    def __init__(self) -> None:
        self._earlier: list[tuple[np.ndarray, int, np.ndarray]] = []  # (token ids, aligned len, stored)
        self._values: set[int] = set()  # every version seen so far (one value: nothing to inherit)

    def add(self, token_ids: np.ndarray, aligned_len: int, prefix_len: int, versions: np.ndarray) -> np.ndarray:
        """Runs of the sample's stored versions: its own, except the ``prefix_len`` tokens that
        were already in the tree, which keep the versions of the earlier sample holding them."""
        stored = versions
        if len(versions):
            low, high = int(versions.min()), int(versions.max())
            if prefix_len and (low != high or self._values - {low}):
                stored = versions.copy()
                stored[:prefix_len] = self._holder(token_ids, prefix_len)[:prefix_len]
            self._values.update((low, high) if low == high else np.unique(versions).tolist())
        self._earlier.append((token_ids, aligned_len, stored))
        return encode_runs(stored)

    def _holder(self, token_ids: np.ndarray, prefix_len: int) -> np.ndarray:
        """Stored versions of an earlier sample whose tree path covers ``token_ids[:prefix_len]``."""
        head = token_ids[:prefix_len]
        for earlier_ids, aligned_len, stored in self._earlier:
            if aligned_len >= prefix_len and np.array_equal(earlier_ids[:prefix_len], head):
                return stored
        raise AssertionError("a prefix present in the tree was inserted by no earlier sample of the put")
