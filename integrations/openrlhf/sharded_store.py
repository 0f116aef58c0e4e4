"""ShardedDraftStore: one draft store over all engine actors, sharded by prompt (a DraftStore).

OpenRLHF's dispatcher sends each prompt to the engine with the fewest unfinished requests, so next
epoch the same prompt usually lands elsewhere. We keep its load balancing untouched and shard the
store by prompt id instead: shard `owner_of(id) = id mod num_engines` is the local TrajectoryStore
of engine actor `owner`. Calls for ids this engine owns go to its local store (a plain result);
others become one Ray call to the owner (`peer.store_call.remote(...)`), and the store hands the
rollout step the ObjectRef, which is awaitable: the rollout loop never blocks on a peer, so two
engines asking each other during their steps cannot deadlock. The owner serves the call on its
own rollout loop (`RolloutRuntime.astore_call`), between its own steps' store operations: each
local store is touched only on its runtime's loop thread, so no mutex is needed.

Scratch prompt ids (`scratch_id`, e.g. evaluation prompts) are never stored: a put of one is a
no-op and a lookup finds nothing, so eval samples cannot replace or evict training drafts.
Contract otherwise as `specrl_sglang.draft_store.DraftStore` (put_many validates each shard's items
before that shard stores any; shards are independent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import numpy as np

from radix_cache.store_stats import StoreStats
from radix_cache.trajectory_store import TrajectoryStore

SCRATCH_PREFIX = "scratch:"
PEER_METHODS = frozenset({"lookup", "put", "put_many", "release"})


def owner_of(prompt_id: str, num_shards: int) -> int:
    """The shard (engine index) that stores `prompt_id`'s drafts (ids are hex prompt keys)."""
    digits = prompt_id.removeprefix(SCRATCH_PREFIX)[:15]
    try:
        value = int(digits, 16)
    except ValueError:
        value = sum(prompt_id.encode())
    return value % num_shards


def scratch_id(prompt_id: str) -> str:
    """The id of a prompt whose samples must never be stored (evaluation)."""
    return SCRATCH_PREFIX + prompt_id


def is_scratch(prompt_id: str) -> bool:
    return prompt_id.startswith(SCRATCH_PREFIX)


class ShardedDraftStore:
    """See module docstring. `peers`: every engine actor's handle in index order (empty: local only)."""

    def __init__(self, local: TrajectoryStore, index: int, peers: Sequence[Any] = ()) -> None:
        self.local, self.index = local, index
        self.peers = list(peers)
        self.num_remote_calls = 0

    @property
    def num_shards(self) -> int:
        return max(1, len(self.peers))

    def _peer(self, prompt_id: str) -> Any | None:
        owner = owner_of(prompt_id, self.num_shards)
        return None if owner == self.index or not self.peers else self.peers[owner]

    def _call(self, prompt_id: str, method: str, *args: Any) -> Any:
        peer = self._peer(prompt_id)
        if peer is None:
            return getattr(self.local, method)(prompt_id, *args)
        self.num_remote_calls += 1
        return peer.store_call.remote(method, prompt_id, *args)  # an ObjectRef: awaitable

    def lookup(self, prompt_id: str, prompt_ids: np.ndarray, num_samples: int, lock: bool = False):
        if is_scratch(prompt_id):
            return [None] * num_samples
        return self._call(prompt_id, "lookup", prompt_ids, num_samples, lock)

    def put(self, prompt_id: str, prompt_ids: np.ndarray, responses: Sequence[Any]):
        return 0 if is_scratch(prompt_id) else self._call(prompt_id, "put", prompt_ids, responses)

    def release(self, prompt_id: str):
        return 0 if is_scratch(prompt_id) else self._call(prompt_id, "release")

    def put_many(self, items: Sequence[tuple[str, np.ndarray, Sequence[Any]]]) -> list[int] | Awaitable[list[int]]:
        by_owner: dict[int | None, list[int]] = {}
        for i, (prompt_id, _, _) in enumerate(items):
            if not is_scratch(prompt_id):
                peer = self._peer(prompt_id)
                by_owner.setdefault(None if peer is None else owner_of(prompt_id, self.num_shards), []).append(i)
        counts = [0] * len(items)
        local = by_owner.pop(None, [])
        for i, n in zip(local, self.local.put_many([items[i] for i in local])):
            counts[i] = n
        if not by_owner:
            return counts
        refs = []
        for owner, indices in by_owner.items():  # fired now: the shards store in parallel
            self.num_remote_calls += 1
            refs.append((indices, self.peers[owner].store_call.remote("put_many", [items[i] for i in indices])))
        return _gathered(counts, refs)

    def stats(self) -> StoreStats:
        """This engine's shard."""
        return self.local.stats()

    def serve(self, method: str, *args: Any) -> Any:
        """A peer's call on this engine's shard (run it on this engine's rollout loop)."""
        if method not in PEER_METHODS:
            raise ValueError(f"store_call: {method!r} is not a draft-store method")
        return getattr(self.local, method)(*args)


async def _gathered(counts: list[int], refs: list[tuple[list[int], Any]]) -> list[int]:
    for indices, ref in refs:
        for i, n in zip(indices, await ref):
            counts[i] = n
    return counts
