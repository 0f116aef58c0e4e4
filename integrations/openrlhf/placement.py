"""Where a prompt's drafts live when OpenRLHF spreads prompts over several engines by load.

OpenRLHF's dispatcher (SamplesGenerator._dispatch_prompts_to_vllm) sends each prompt to the engine
with the fewest unfinished requests, so next epoch the same prompt usually lands elsewhere. We keep
OpenRLHF's load balancing untouched and make the draft store *shared*, sharded by prompt key: shard
`owner(key) = key mod num_engines` lives in engine actor `owner`; an engine serving a prompt it does
not own looks up and records that prompt's drafts with one Ray call to the owner per step and prompt.
(The alternative, prompt affinity, forwards prompts to their home engine and trades the balanced load
for zero draft traffic; examples/openrlhf/README.md gives the measurements behind the choice.)

Prompt identity: there is no dataset row id on OpenRLHF's rollout path, so a prompt is keyed by
its label plus its token ids (`prompt_key`); shuffling and resharding are harmless.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


def prompt_key(label: Any, prompt_ids: Sequence[int]) -> str:
    """A stable hex id of (label, prompt tokens); equal inputs give equal keys in every process."""
    digest = hashlib.sha256()
    digest.update(repr(label).encode())
    digest.update(b"\x00")
    digest.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def owner_of(key: str, num_shards: int) -> int:
    """The shard (engine index) that stores `key`'s drafts."""
    return int(key[:15], 16) % num_shards


class LockedStore:
    """A TrajectoryStore behind a mutex: the engine thread and the actor's event loop both use it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._mutex = threading.Lock()

    def lookup(self, prompt_id, prompt_ids, n, lock=True):
        with self._mutex:
            return self.store.lookup(prompt_id, prompt_ids, n, lock=lock)

    def put(self, prompt_id, prompt_ids, responses):
        with self._mutex:
            return self.store.put(prompt_id, prompt_ids, responses)

    def release(self, prompt_id):
        with self._mutex:
            return self.store.release(prompt_id)

    def stats(self):
        with self._mutex:
            return self.store.stats()


class ShardedDraftStore:
    """The TrajectoryStore interface SpecRollout uses (lookup / put / release), sharded over engines.

    Calls for keys this engine owns go to its local store; others go to the owner actor's
    `store_lookup` / `store_put` / `store_release` methods (blocking Ray calls: use from the engine
    thread, never from the actor's event loop). With one engine everything is local.
    """

    def __init__(self, local: LockedStore, index: int, peers: Sequence[Any] | None = None) -> None:
        self.local, self.index = local, index
        self.peers = list(peers) if peers else []
        self.num_remote_calls = 0

    @property
    def num_shards(self) -> int:
        return max(1, len(self.peers))

    def _owner(self, prompt_id: str) -> Any:
        owner = owner_of(prompt_id, self.num_shards)
        return None if owner == self.index or not self.peers else self.peers[owner]

    def _call(self, prompt_id: str, method: str, *args):
        peer = self._owner(prompt_id)
        if peer is None:
            return getattr(self.local, method)(prompt_id, *args)
        import ray

        self.num_remote_calls += 1
        return ray.get(getattr(peer, "store_" + method).remote(prompt_id, *args))

    def lookup(self, prompt_id, prompt_ids, n, lock=True):
        return self._call(prompt_id, "lookup", prompt_ids, n, lock)

    def put(self, prompt_id, prompt_ids, responses):
        return self._call(prompt_id, "put", prompt_ids, responses)

    def release(self, prompt_id):
        return self._call(prompt_id, "release")
