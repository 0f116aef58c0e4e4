"""Snapshots of the server's draft store: consistent, off the event loop, one write per file at a time.

`SnapshotWriter.save(runtime, path)` encodes the store on the runtime's rollout loop
(`RolloutRuntime.astore_call`: between two store operations of the steps in flight, which keep
running) and writes the bytes atomically in a worker thread. Requests for a file whose write is
already running share the NEXT write (so each answer covers every step finished before it was
asked), and two writes of one file never race (an older state never replaces a newer one).

`load_for_model(path, ...)` reads a snapshot for the serving model: the configured budget
replaces the file's, prompts with token ids outside the vocabulary or ids the prompt-id rule
refuses are dropped and listed (`restore_report`). It runs in a worker thread.
Called from the server's event loop only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, NamedTuple

from radix_cache.snapshot import LoadedSnapshot, encode_snapshot, read_snapshot, write_snapshot
from specrl_sglang.prompt_identity import check_prompt_id
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.server.sandbox import SnapshotDir
from specrl_sglang.server.store_summary import store_summary

MAX_LISTED_DROPS = 50


class SavedSnapshot(NamedTuple):
    path: Path
    num_bytes: int
    seconds: float
    store: dict[str, Any]  # the store's summary at the moment it was encoded


class SnapshotWriter:
    def __init__(self, directory: SnapshotDir) -> None:
        self.directory = directory
        self._next: dict[Path, asyncio.Future] = {}  # per file: the write not yet started
        self._running: dict[Path, asyncio.Future] = {}  # per file: the write in progress
        self.num_written = 0

    async def save(self, runtime: RolloutRuntime, path: Path) -> SavedSnapshot:
        loop = asyncio.get_running_loop()
        queued = self._next.get(path)
        if queued is None:
            queued = self._next[path] = loop.create_future()
            asyncio.ensure_future(self._drive(runtime, path, queued))
        return await asyncio.shield(queued)

    async def _drive(self, runtime: RolloutRuntime, path: Path, mine: asyncio.Future) -> None:
        running = self._running.get(path)
        if running is not None:
            await asyncio.wait([running])
        if self._next.get(path) is mine:
            del self._next[path]
        self._running[path] = mine
        try:
            t0 = time.perf_counter()
            data, summary = await runtime.astore_call(lambda store: (encode_snapshot(store), store_summary(store)))
            await asyncio.to_thread(write_snapshot, data, path)
            self.directory.claim(path)
            self.num_written += 1
            mine.set_result(SavedSnapshot(path, len(data), time.perf_counter() - t0, summary))
        except asyncio.CancelledError:
            mine.cancel()
            raise
        except Exception as exc:
            mine.set_exception(exc)
            mine.exception()  # retrieved here too: a caller that went away leaves no warning
        finally:
            if self._running.get(path) is mine:
                del self._running[path]


def load_for_model(path: Path, max_tokens: int | None, vocab_size: int) -> LoadedSnapshot:
    """A snapshot checked against the serving model (SnapshotError if the file is unreadable)."""
    return read_snapshot(path, max_tokens=max_tokens, vocab_size=vocab_size, check_prompt_id=check_prompt_id)


def restore_report(path: Path, loaded: LoadedSnapshot) -> dict[str, Any]:
    """What a restore kept, dropped and evicted (for answers, /health and the start log)."""
    return {
        "path": str(path),
        "num_prompts_saved": loaded.num_prompts_saved,
        "num_prompts": len(loaded.store),
        "num_dropped": len(loaded.dropped),
        "dropped": [{"prompt_id": pid, "reason": why} for pid, why in loaded.dropped[:MAX_LISTED_DROPS]],
        "num_evicted": loaded.num_evicted,
        "saved_max_tokens": loaded.saved_max_tokens,
        "max_tokens": loaded.store.max_tokens,
    }
