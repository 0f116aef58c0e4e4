"""The store's state as the server reports it (GET /stats, /health, every step row, metrics)."""

from __future__ import annotations

import dataclasses
from typing import Any

from specrl_sglang.draft_store import DraftStore


def store_summary(store: DraftStore) -> dict[str, Any]:
    """StoreStats' fields plus the slot hit rate and the token budget (None: unbounded or unknown)."""
    stats = store.stats()
    return {**dataclasses.asdict(stats), "slot_hit_rate": stats.slot_hit_rate,
            "max_tokens": getattr(store, "max_tokens", None)}
