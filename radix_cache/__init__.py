"""A token radix tree with SGLang RadixCache semantics, and the trajectory store built on it.

Pure Python + numpy: nothing here imports torch, SGLang or Ray.

Files: node.py (tree nodes), inputs.py (input validation), tree_base.py / tree_removal.py /
tree.py (the RadixCache: state and locks, eviction, match and insert), tree_view.py (printing),
footprint.py (memory accounting), responses.py (Response / Draft records), store_stats.py,
store_records.py and version_runs.py (per-prompt / per-sample book-keeping, policy versions as
run-length segments), trajectory_store.py (previous rollouts per prompt), snapshot.py and
snapshot_codec.py (save / load a store).
"""

from radix_cache.responses import Draft, Response
from radix_cache.snapshot import SnapshotError, load_snapshot, save_snapshot
from radix_cache.store_stats import StoreStats
from radix_cache.trajectory_store import PromptCollisionError, TrajectoryStore
from radix_cache.tree import InsertResult, LockedError, MatchResult, RadixCache

__all__ = [
    "Draft",
    "InsertResult",
    "LockedError",
    "MatchResult",
    "PromptCollisionError",
    "RadixCache",
    "Response",
    "SnapshotError",
    "StoreStats",
    "TrajectoryStore",
    "load_snapshot",
    "save_snapshot",
]
