"""Keeping the draft store across an embedded engine's death (EngineHost calls it through the service).

The store lives in this process, not in SGLang's, so it survives the engine; but the steps the
death cancelled may have left prompts locked. `recover_store` releases those locks, writes the
live store to the default snapshot and restores that snapshot - validated against the model like
any restore - so the restarted engine serves exactly what a restart from disk would. Without a
default snapshot the live store is kept in memory. The report says what was kept and what was lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from radix_cache.snapshot import SnapshotError, encode_snapshot, write_snapshot
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.draft_store import DraftStore
from specrl_sglang.server.sandbox import SnapshotDir
from specrl_sglang.server.snapshots import load_for_model, restore_report


async def recover_store(old: DraftStore, snapshots: SnapshotDir | None, store_max_tokens: int | None,
                        vocab_size: int) -> tuple[DraftStore, dict[str, Any]]:
    """(the store for the restarted engine, a report); see module docstring."""
    for prompt_id in list(getattr(old, "prompt_ids", lambda: [])()):
        old.release(prompt_id)  # locks of the cancelled steps
    target = snapshots.default_path if snapshots is not None else None
    if target is None:
        return old, {"kept": "in memory (no --snapshot configured)", "num_prompts": old.stats().num_prompts}
    try:
        await asyncio.to_thread(lambda: write_snapshot(encode_snapshot(old), target))
        snapshots.claim(target)
    except Exception as exc:  # keep the last snapshot on disk; say what that loses
        note = f"could not snapshot the live store ({exc}); restoring the last snapshot on disk"
    else:
        note = "snapshot of the live store"
    try:
        loaded = await asyncio.to_thread(load_for_model, target, store_max_tokens, vocab_size)
    except (SnapshotError, OSError) as exc:
        return TrajectoryStore(store_max_tokens), {"kept": f"nothing: {note}, which failed: {exc}",
                                                   "num_prompts_lost": old.stats().num_prompts}
    report = restore_report(target, loaded)
    report.update(kept=note, num_prompts_lost=max(0, old.stats().num_prompts - len(loaded.store)))
    return loaded.store, report
