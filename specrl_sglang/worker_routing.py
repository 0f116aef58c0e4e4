"""Prompt-affinity routing: rendezvous (highest-random-weight) hashing of a route key over workers.

Every request of one prompt carries the prompt identity as its route key (`Slot.route_key`), so its
verify, all its continuations and next epoch's verify go to the worker that holds its KV.

`WorkerRouter(workers).pick(key)` is the worker whose hash of (worker, key) is the highest:
- Deterministic in every process and run (blake2b; never Python's salted `hash()`).
- Stable: removing a worker moves only the keys it owned (each to its runner-up); adding one moves
  to it only the keys it now wins (about 1/(n+1) of them). No other key changes worker.
- Balanced: every worker wins a key with probability 1/n, independently of the others.
Workers are named by their identity (for HTTP workers, the URL); a router is immutable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _score(worker: str, route_key: str) -> int:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(worker.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(route_key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big")


class WorkerRouter:
    """Maps route keys to worker indices (see module docstring)."""

    def __init__(self, workers: Sequence[str]) -> None:
        workers = tuple(workers)
        if not workers:
            raise ValueError("a router needs at least one worker")
        for worker in workers:
            if not isinstance(worker, str) or not worker:
                raise ValueError(f"workers must be non-empty strings, got {worker!r}")
        if len(set(workers)) != len(workers):
            raise ValueError(f"workers must be distinct, got {list(workers)}")
        self.workers = workers

    def pick(self, route_key: str) -> int:
        """Index (into `workers`) of the worker that serves `route_key`."""
        if len(self.workers) == 1:
            return 0
        return max(range(len(self.workers)), key=lambda i: _score(self.workers[i], route_key))

    def worker(self, route_key: str) -> str:
        return self.workers[self.pick(route_key)]
