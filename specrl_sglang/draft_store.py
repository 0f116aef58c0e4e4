"""DraftStore: what a rollout step needs from a store of previous responses.

`radix_cache.trajectory_store.TrajectoryStore` implements it (one process, in memory); the OpenRLHF
adapter's `ShardedDraftStore` implements it over several engine actors. The rollout step depends on
this protocol only.

Contract (every implementation):
- `lookup(prompt_id, prompt_ids, num_samples, lock)` returns `num_samples` entries, each a distinct
  stored response of the prompt (`radix_cache.responses.Draft`: token_ids, logprobs, versions) or
  None; it raises PromptCollisionError (a ValueError) if `prompt_id` is stored for other prompt
  tokens, and changes nothing then. With `lock=True` the prompt is kept from eviction until
  `release(prompt_id)` or its next `put`.
- `put(prompt_id, prompt_ids, responses)` replaces the prompt's responses completely (a prompt never
  holds responses of two policies) and releases its locks; it validates everything before storing.
- `put_many([(prompt_id, prompt_ids, responses), ...])` puts several prompts and validates all of
  them before storing any (a sharded store: all of each shard's items before that shard stores any).
- `stats()` returns `radix_cache.store_stats.StoreStats`.
- Any of lookup / put / put_many / release may return an awaitable of its result instead of the result (a
  sharded store asking a peer must not block the rollout loop); the step awaits it.
- Implementations are not required to be thread-safe: the runtime calls its store only from its
  rollout loop's thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from radix_cache.responses import Draft, Response
from radix_cache.store_stats import StoreStats

T = TypeVar("T")


@runtime_checkable
class DraftStore(Protocol):
    def lookup(
        self, prompt_id: str, prompt_ids: np.ndarray, num_samples: int, lock: bool = False
    ) -> list[Draft | None] | Awaitable[list[Draft | None]]: ...

    def put(self, prompt_id: str, prompt_ids: np.ndarray, responses: Sequence[Response]) -> int | Awaitable[int]: ...

    def put_many(
        self, items: Sequence[tuple[str, np.ndarray, Sequence[Response]]]
    ) -> list[int] | Awaitable[list[int]]: ...

    def release(self, prompt_id: str) -> int | Awaitable[int]: ...

    def stats(self) -> StoreStats: ...


async def resolved(value: T | Awaitable[T]) -> T:
    """`value`, awaited if a store handed back an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value  # type: ignore[return-value]


def check_store(store: Any) -> DraftStore:
    """`store` if it has the DraftStore methods, else TypeError naming what is missing."""
    missing = [m for m in ("lookup", "put", "put_many", "release", "stats") if not callable(getattr(store, m, None))]
    if missing:
        raise TypeError(f"{type(store).__name__} is not a DraftStore: it lacks {', '.join(missing)}")
    return store
