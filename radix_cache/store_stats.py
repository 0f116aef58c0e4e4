"""Counters of a TrajectoryStore and the frozen snapshot of them that ``stats()`` returns."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class StoreCounters:
    """Monotonic event counters (mutable; owned by one store; zeroed by ``reset_stats``)."""

    num_puts: int = 0  # put() calls that stored something (or replaced a prompt)
    num_lookups: int = 0  # lookup() calls that passed validation
    num_lookups_with_draft: int = 0  # lookups that returned at least one draft
    num_slots_requested: int = 0  # sum of num_samples over lookups
    num_drafts_returned: int = 0  # non-None entries returned by lookups
    num_draft_tokens_returned: int = 0  # tokens in those drafts
    num_evicted_prompts: int = 0  # prompts dropped to meet the token budget
    num_evicted_tokens: int = 0  # tokens freed by those evictions

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """Counters since the last ``reset_stats`` plus the store's current contents."""

    num_puts: int
    num_lookups: int
    num_lookups_with_draft: int
    num_slots_requested: int
    num_drafts_returned: int
    num_draft_tokens_returned: int
    num_evicted_prompts: int
    num_evicted_tokens: int
    num_prompts: int  # prompts stored now
    num_samples: int  # samples stored now
    total_tokens: int  # tokens held now: tree nodes (shared prefixes once) + partial-page tails

    @property
    def slot_hit_rate(self) -> float:
        """Share of requested slots that got a draft."""
        return self.num_drafts_returned / self.num_slots_requested if self.num_slots_requested else 0.0

    @property
    def mean_draft_len(self) -> float:
        return self.num_draft_tokens_returned / self.num_drafts_returned if self.num_drafts_returned else 0.0
