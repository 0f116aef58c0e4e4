"""RolloutService: the one owner of the engine's weights, the trajectory store and the step history.

Locking contract: `self._lock` is held for a whole rollout step (verify + continue + record), a
weight update, a KV flush, a snapshot and a restore. So a weight update waits for the step in
flight and no step ever sees two policies; each rollout answer carries the `policy_version` it
was served under (checked unchanged at the end of the step). Callers that would rather fail than
wait pass `wait_s`: when the lock is not free in time they get ApiError 409 and nothing changed.
`health()` and `stats()` never take the lock: they read values published after each change.

Persistence: the store is saved atomically (radix_cache.snapshot) on demand, every
`snapshot_every` steps and by `close()`; on start it is restored from `snapshot_path` if that file
exists. Each step's statistics row is appended to `report_path` (JSONL) as soon as the step ends,
so `specrl-sglang stats --report` can read it while the server runs or after it died.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radix_cache.snapshot import SnapshotError, load_snapshot, save_snapshot
from radix_cache.trajectory_store import PromptCollisionError, TrajectoryStore
from specrl_sglang.engine import RolloutEngine
from specrl_sglang.server.codec import clean
from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.metrics import ServiceMetrics
from specrl_sglang.server.schema import ModelShape, RolloutCall
from specrl_sglang.spec_rollout import SpecConfig, SpecRollout


@dataclass(frozen=True)
class ServiceConfig:
    lenience: float = math.exp(0.5)
    spec_enabled: bool = True
    seed: int = 0
    store_max_tokens: int | None = None  # token budget of the trajectory store (None: unbounded)
    snapshot_path: str | None = None  # restored on start if present; saved on close and on demand
    snapshot_every: int = 0  # also save every N steps (0: never automatically)
    report_path: str | None = None  # JSONL: one statistics row per step
    history_len: int = 10_000  # step rows kept in memory for /stats

    def __post_init__(self) -> None:
        SpecConfig(lenience=self.lenience)  # validates lenience
        if self.snapshot_every < 0 or self.history_len < 1:
            raise ValueError("snapshot_every must be >= 0 and history_len >= 1")
        if self.snapshot_every and not self.snapshot_path:
            raise ValueError("snapshot_every needs a snapshot_path")

    @property
    def snapshot_dir(self) -> Path:
        """Client-chosen snapshot paths must lie inside this directory."""
        return (Path(self.snapshot_path).parent if self.snapshot_path else Path.cwd()).resolve()


class RolloutService:
    """Serves rollout steps and weight updates on one `RolloutEngine` (see module docstring)."""

    def __init__(self, engine: RolloutEngine, config: ServiceConfig, metrics: ServiceMetrics | None = None) -> None:
        self.engine, self.config = engine, config
        self.metrics = metrics or ServiceMetrics()
        self.model = ModelShape(engine.vocab_size, engine.context_len)
        self._lock = threading.Lock()
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=config.history_len)
        self._num_steps = 0
        self._started = time.time()
        self.restored_from: dict[str, Any] | None = None
        store = TrajectoryStore(max_tokens=config.store_max_tokens)
        if config.snapshot_path and Path(config.snapshot_path).exists():
            store = load_snapshot(config.snapshot_path)  # a corrupt file stops the start: never serve silently empty
            self.restored_from = {"path": str(config.snapshot_path), **_store_dict(store)}
        spec = SpecConfig(lenience=config.lenience, enabled=config.spec_enabled, seed=config.seed)
        self._rollout = SpecRollout(engine, store, spec)
        if config.report_path and Path(config.report_path).exists():  # after a restart: continue step numbers
            data = Path(config.report_path).read_bytes()  # (and the acceptance RNG streams, keyed by step)
            with open(config.report_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)  # drop a row cut off by a crash mid-write
            self._num_steps = self._rollout.num_steps = data.count(b"\n")
        self._publish()

    # ------------------------------------------------------------------ locking
    def _acquire(self, wait_s: float | None, what: str) -> float:
        """Take the lock (waiting at most `wait_s`, forever if None); returns the seconds waited."""
        t0 = time.perf_counter()
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            message = f"{what} refused: a step or update is in flight and wait_s={wait_s} expired; nothing changed"
            raise ApiError(409, f"{message} (policy_version {self.engine.policy_version})", "wait_s")
        return time.perf_counter() - t0

    def _publish(self) -> None:
        """Refresh what lock-free readers see (call with the lock held, or from __init__)."""
        self._store_stats = _store_dict(self._rollout.store)
        self.metrics.set_state(self.engine.policy_version, self._store_stats)

    # ------------------------------------------------------------------ rollout
    def rollout(self, call: RolloutCall) -> dict[str, Any]:
        """Run one speculative rollout step; returns samples, the step's stats and the policy version."""
        waited = self._acquire(None, "rollout")
        try:
            version = self.engine.policy_version
            try:
                result = self._rollout.step(call.requests, call.sampling, call.max_response_len)
            except PromptCollisionError as exc:
                raise ApiError(409, f"{exc}; the store is unchanged (use a new prompt_id)", _request_field(call, exc)) from None
            except ValueError as exc:  # the request conflicts with stored drafts (checked before any engine call)
                raise ApiError(400, str(exc), _request_field(call, exc)) from None
            if self.engine.policy_version != version:  # only possible if someone bypassed this service
                raise RuntimeError(f"policy changed during a step ({version} -> {self.engine.policy_version})")
            self._num_steps += 1
            self._publish()
            row = {"step": self._num_steps - 1, "unix_time": time.time(), "queue_s": waited,
                   **result.stats.to_dict(), "store": self._store_stats}
            self._history.append(clean(row))
            self._append_report(row)
            self.metrics.observe_step(row)
            if self.config.snapshot_every and self._num_steps % self.config.snapshot_every == 0:
                self._save(self.config.snapshot_path)
        finally:
            self._lock.release()
        samples = [
            {
                "prompt_id": call.requests[s.prompt_index].prompt_id,
                "prompt_index": s.prompt_index,
                "token_ids": s.token_ids.tolist(),
                "logprobs": s.logprobs.tolist(),
                "draft_len": s.draft_len,
                "accepted_len": s.accepted_len,
                "fully_reused": s.fully_reused,
                "finish_reason": s.finish_reason,
            }
            for s in result.samples
        ]
        return {"policy_version": version, "step": row["step"], "samples": samples, "stats": row}

    def _append_report(self, row: dict[str, Any]) -> None:
        if self.config.report_path:
            with open(self.config.report_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(clean(row), allow_nan=False) + "\n")

    # ------------------------------------------------------------------ weights and cache
    def update_weights(self, named_tensors: list[tuple[str, Any]], wait_s: float | None = None) -> dict[str, Any]:
        """Load tensors after the step in flight (see `wait_s`); returns the new policy version."""
        return self._update(lambda: self.engine.update_weights(named_tensors), wait_s, "update_weights")

    def update_weights_from_disk(self, model_path: str, wait_s: float | None = None) -> dict[str, Any]:
        if not Path(model_path).is_dir():
            raise ApiError(400, f"path {model_path!r} is not a checkpoint directory on the server", "path")
        return self._update(lambda: self.engine.update_weights_from_disk(model_path), wait_s, "update_weights_from_disk")

    def _update(self, apply, wait_s: float | None, what: str) -> dict[str, Any]:
        waited = self._acquire(wait_s, what)
        try:
            t0 = time.perf_counter()
            try:
                version = apply()
            except ValueError as exc:  # e.g. a tensor name the model does not have: nothing was loaded
                raise ApiError(400, f"{exc}; nothing was loaded (policy_version {self.engine.policy_version})", "tensors") from None
            self.metrics.weight_updates.inc()
            self._publish()
            return {"policy_version": version, "seconds": time.perf_counter() - t0, "waited_s": waited}
        finally:
            self._lock.release()

    def flush(self, clear_store: bool = False, wait_s: float | None = None) -> dict[str, Any]:
        """Drop SGLang's KV cache; with `clear_store` also forget every stored draft."""
        self._acquire(wait_s, "flush")
        try:
            self.engine.flush_cache()
            if clear_store:
                self._rollout.store = TrajectoryStore(max_tokens=self._rollout.store.max_tokens)
            self._publish()
            return {"policy_version": self.engine.policy_version, "store": self._store_stats}
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ snapshots
    def resolve_snapshot_path(self, path: str | None) -> Path:
        if path is None:
            if not self.config.snapshot_path:
                raise ApiError(400, "no path given and the server has no --snapshot file", "path")
            return Path(self.config.snapshot_path)
        target = (self.config.snapshot_dir / path).resolve()
        if not target.is_relative_to(self.config.snapshot_dir):
            raise ApiError(400, f"path must lie inside the snapshot directory {self.config.snapshot_dir}", "path")
        return target

    def snapshot(self, path: str | None = None) -> dict[str, Any]:
        target = self.resolve_snapshot_path(path)
        self._acquire(None, "snapshot")
        try:
            return self._save(target)
        finally:
            self._lock.release()

    def _save(self, target: str | Path | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        save_snapshot(self._rollout.store, target)
        self.metrics.snapshots.inc()
        return {"path": str(target), "bytes": Path(target).stat().st_size, "seconds": time.perf_counter() - t0,
                "policy_version": self.engine.policy_version, "store": self._store_stats}

    def restore(self, path: str | None = None) -> dict[str, Any]:
        """Replace the store with a snapshot's (KV cache untouched: drafts are re-verified anyway)."""
        target = self.resolve_snapshot_path(path)
        if not target.exists():
            raise ApiError(404, f"no snapshot at {target}", "path")
        self._acquire(None, "restore")
        try:
            try:
                self._rollout.store = load_snapshot(target)
            except SnapshotError as exc:
                raise ApiError(400, f"cannot restore: {exc}", "path") from None
            self._publish()
            return {"path": str(target), "policy_version": self.engine.policy_version, "store": self._store_stats}
        finally:
            self._lock.release()

    def close(self) -> dict[str, Any] | None:
        """Save the store to `snapshot_path` (if configured) once the step in flight is done."""
        with self._lock:
            return self._save(self.config.snapshot_path) if self.config.snapshot_path else None

    # ------------------------------------------------------------------ read-only views
    def health(self) -> dict[str, Any]:
        return {
            "status": "poisoned" if self.engine.poisoned else "ok",
            "policy_version": self.engine.policy_version,
            "num_steps": self._num_steps,
            "busy": self._lock.locked(),
            "uptime_s": time.time() - self._started,
            "model_path": self.engine.config.model_path,
            "vocab_size": self.model.vocab_size,
            "context_len": self.model.context_len,
            "lenience": self.config.lenience,
            "snapshot_path": self.config.snapshot_path,
            "restored_from": self.restored_from,
        }

    def stats(self, since: int = 0) -> dict[str, Any]:
        """Step rows with `step >= since` (at most `history_len` kept), plus the store's state."""
        rows = [r for r in list(self._history) if r["step"] >= since]
        return {"policy_version": self.engine.policy_version, "num_steps": self._num_steps,
                "steps": rows, "store": self._store_stats}


def _store_dict(store: TrajectoryStore) -> dict[str, Any]:
    stats = store.stats()
    return {**dataclasses.asdict(stats), "slot_hit_rate": stats.slot_hit_rate, "max_tokens": store.max_tokens}


def _request_field(call: RolloutCall, exc: Exception) -> str:
    for i, req in enumerate(call.requests):
        if repr(req.prompt_id) in str(exc):
            return f"requests[{i}].prompt_ids"
    return "requests"
