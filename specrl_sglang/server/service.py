"""RolloutService: the HTTP verbs as a thin adapter over the RolloutRuntime (through its RuntimeHost:
EngineHost for the embedded engine, WorkersHost for SGLang servers given with --sglang-url).

No lock and no version check of its own: the runtime makes each step atomic with respect to
weight updates (its StepGate), so handlers simply await `runtime.astep(...)` and concurrent
clients' steps run at the same time inside SGLang's continuous batching. Weight updates, flushes
and restores call the runtime's blocking methods in worker threads; they wait for the steps in
flight (`wait_s` -> 409 when it runs out, nothing changed) or, with `interrupt`, park them and
let them resume under the new weights. Every answer carries the policy version it was served
under (a step's own, from its StepStats).

Errors (ApiError): request conflicts with the store -> 409 (prompt-id collision: nothing
recorded, the store unchanged); values the runtime refuses (weights that do not fit the model,
...) -> 400 with nothing loaded; a poisoned runtime, a dead engine or an SGLang worker that does
not answer (WorkerUnavailable, naming it) -> 503 with the reason.
Runs on the server's event loop only (the step log, counters and metrics are touched there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from radix_cache.responses import prompt_digest
from radix_cache.snapshot import SnapshotError, content_digest
from radix_cache.trajectory_store import PromptCollisionError, TrajectoryStore
from specrl_sglang.draft_store import DraftStore
from specrl_sglang.engine_api import EngineError, WorkerUnavailable
from specrl_sglang.server.errors import ApiError, EngineUnavailable
from specrl_sglang.server.metrics import ServiceMetrics
from specrl_sglang.server.preflight import Prepared
from specrl_sglang.server.runtime_host import RuntimeHost
from specrl_sglang.server.schema import RolloutCall, UpdateOptions
from specrl_sglang.server.snapshots import SnapshotWriter, load_for_model, restore_report
from specrl_sglang.server.step_log import StepLog
from specrl_sglang.server.store_recovery import recover_store
from specrl_sglang.server.store_summary import store_summary
from specrl_sglang.server.weight_updates import WeightUpdates
from specrl_sglang.step_gate import GateTimeout

logger = logging.getLogger("specrl_sglang.server")


class RolloutService:
    def __init__(self, prepared: Prepared, host: RuntimeHost, metrics: ServiceMetrics | None = None) -> None:
        self.prepared, self.config, self.host = prepared, prepared.config, host
        self.model = prepared.model
        self.metrics = metrics or ServiceMetrics()
        self.log = StepLog(self.config.report_path, self.config.history_len)
        self.snapshots = prepared.snapshots
        self.writer = SnapshotWriter(self.snapshots) if self.snapshots is not None else None
        self.weights = WeightUpdates(host, prepared.weights, self.metrics, prepared.model_path)
        self.restored_from = prepared.restored_from
        self.store_state: dict[str, Any] = store_summary(prepared.store)
        self._num_finished = 0
        self._started = time.time()

    # ------------------------------------------------------------------ rollout
    async def rollout(self, call: RolloutCall) -> dict[str, Any]:
        """Run one speculative rollout step; returns samples, the step's stats and its policy version."""
        try:
            result = await self.host.guard(
                lambda rt: rt.astep(call.requests, call.sampling, call.max_response_len, call.mode))
        except PromptCollisionError as exc:
            field = await self._colliding_field(call)
            raise ApiError(409, f"{exc}; nothing was recorded and the store is unchanged (use a new prompt_id)", field) from None
        except ValueError as exc:  # the runtime's own validation (schema checks the same rules first)
            raise ApiError(400, str(exc), "requests") from None
        except EngineError as exc:
            raise self.engine_failure(exc) from None
        stats = result.stats
        await self._publish()
        row = {"step": stats.step_index, "unix_time": time.time(), **stats.to_dict(), "store": self.store_state}
        warnings = []  # the step is recorded: what fails after it must not turn its answer into an error
        try:
            self.log.append(row)
        except OSError as exc:
            logger.error("cannot append to the report: %s", exc)
            warnings.append(f"the report row was not written: {exc}")
        self.metrics.observe_step(row)
        self._num_finished += 1
        every = self.config.snapshot_every
        if every and self._num_finished % every == 0:
            try:
                await self.save_default()
            except (ApiError, OSError) as exc:
                logger.error("the periodic snapshot failed: %s", exc)
                warnings.append(f"the periodic snapshot failed: {exc}")
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
        return {"policy_version": stats.policy_version, "step": stats.step_index, "mode": stats.mode,
                "samples": samples, "stats": row, "warnings": warnings}

    async def _colliding_field(self, call: RolloutCall) -> str:
        def first(store: DraftStore) -> int | None:
            stored = dict(store.stored_prompts()) if hasattr(store, "stored_prompts") else {}
            for i, req in enumerate(call.requests):
                entry = stored.get(req.prompt_id)
                if entry is not None and entry.digest != prompt_digest(req.prompt_ids):
                    return i
            return None

        index = await self.host.current().astore_call(first)
        return "requests" if index is None else f"requests[{index}].prompt_ids"

    def engine_failure(self, exc: EngineError) -> ApiError:
        """The answer to an EngineError: 503 if the engine is dead, a worker does not answer or the
        runtime is poisoned, else 500."""
        runtime = self.host.runtime
        if isinstance(exc, WorkerUnavailable):  # names the worker; nothing here restarts it
            after = ("; no rollout is served until a complete weight update succeeds" if runtime is not None
                     and runtime.poisoned else "; nothing of this request was recorded")
            return EngineUnavailable(f"{exc}{after}")
        if self.host.procs is not None and self.host.procs.dead():
            self.host.check_now()
            return EngineUnavailable(f"the SGLang engine died ({self.host.procs.dead()}): {exc}; restarting it")
        if runtime is not None and runtime.poisoned:
            return ApiError(503, f"engine error: {exc}")
        return ApiError(500, f"engine error: {exc}")

    # ------------------------------------------------------------------ weights and cache
    async def update_weights(self, named: list[tuple[str, Any]], options: UpdateOptions) -> dict[str, Any]:
        reply = await self.weights.from_tensors(named, options, self.engine_failure)
        await self._publish()
        return reply

    async def update_weights_from_disk(self, path: str, options: UpdateOptions) -> dict[str, Any]:
        reply = await self.weights.from_disk(path, options, self.engine_failure)
        await self._publish()
        return reply

    async def flush(self, clear_store: bool, wait_s: float | None) -> dict[str, Any]:
        """Drop SGLang's KV cache; with `clear_store` also forget every stored draft."""
        try:
            await self.host.guard(lambda rt: asyncio.to_thread(rt.flush_cache, wait_s))
            if clear_store:
                empty = TrajectoryStore(self.config.store_max_tokens)
                await self.host.guard(lambda rt: asyncio.to_thread(rt.replace_store, empty, wait_s))
        except GateTimeout as exc:
            raise ApiError(409, f"flush refused: {exc}; wait_s={wait_s} expired", "wait_s") from None
        except EngineError as exc:
            raise self.engine_failure(exc) from None
        await self._publish()
        return {"policy_version": self.host.current().policy_version, "store": self.store_state}

    # ------------------------------------------------------------------ snapshots
    def _snapshot_dir(self):
        if self.snapshots is None:
            raise ApiError(400, "this server keeps no snapshots (start it with --snapshot-dir DIR)", "path")
        return self.snapshots

    async def snapshot(self, name: str | None) -> dict[str, Any]:
        target = self._snapshot_dir().resolve(name, for_write=True)
        saved = await self.host.guard(lambda rt: self.writer.save(rt, target))
        self.metrics.snapshots.inc()
        return {"path": str(saved.path), "bytes": saved.num_bytes, "seconds": saved.seconds,
                "policy_version": self.host.current().policy_version, "store": saved.store}

    async def save_default(self) -> dict[str, Any] | None:
        if self.snapshots is None or self.snapshots.default_path is None:
            return None
        return await self.snapshot(None)

    async def restore(self, name: str | None, wait_s: float | None) -> dict[str, Any]:
        """Replace the store with a snapshot's, checked against the model (KV cache untouched:
        drafts are verified anyway). Prompts that do not fit the model are dropped and listed."""
        source = self._snapshot_dir().resolve(name, for_write=False)
        try:
            loaded = await asyncio.to_thread(load_for_model, source, self.config.store_max_tokens, self.model.vocab_size)
        except (SnapshotError, OSError) as exc:
            raise ApiError(400, f"cannot restore: {exc}; the store is unchanged", "path") from None
        try:
            await self.host.guard(lambda rt: asyncio.to_thread(rt.replace_store, loaded.store, wait_s))
        except GateTimeout as exc:
            raise ApiError(409, f"restore refused: {exc}; wait_s={wait_s} expired; the store is unchanged", "wait_s") from None
        await self._publish()
        return {**restore_report(source, loaded), "policy_version": self.host.current().policy_version,
                "store": self.store_state}

    async def recover_store(self, old: DraftStore) -> tuple[DraftStore, dict[str, Any]]:
        """After an engine death (EngineHost): snapshot the live store, restore that snapshot."""
        self.metrics.engine_restarts.inc()
        return await recover_store(old, self.snapshots, self.config.store_max_tokens, self.model.vocab_size)

    # ------------------------------------------------------------------ views
    async def _publish(self) -> None:
        runtime = self.host.runtime
        if runtime is None:
            return
        self.store_state = await runtime.astore_call(store_summary)
        self.metrics.set_state(runtime.policy_version, self.store_state)

    async def store_digest(self) -> dict[str, Any]:
        digest = await self.host.guard(lambda rt: rt.astore_call(content_digest))
        return {"content_sha256": digest, "store": self.store_state}

    async def health(self) -> dict[str, Any]:
        runtime, host = self.host.runtime, self.host
        core = runtime.health() if runtime is not None and host.state == "ok" else {}
        status = core.get("status", host.state) if host.state == "ok" else host.state
        engine = await host.engine_health() if host.state == "ok" else None
        if engine is not None and engine.problem:
            status = "unavailable"
        return {
            **core,
            **(engine.fields if engine is not None else {}),
            "status": status,
            "reason": (engine.problem if engine is not None else None) or core.get("reason") or host.reason,
            "busy": bool(runtime is not None and runtime.busy),
            "updates_in_flight": self.weights.in_flight,
            "uptime_s": time.time() - self._started,
            "model_path": self.prepared.model_path,
            "sglang_urls": list(self.config.sglang_urls),
            "weights_from": host.model_path,
            "vocab_size": self.model.vocab_size,
            "context_len": self.model.context_len,
            "mode": self.config.mode,
            "lenience": self.config.lenience,
            "snapshot_dir": None if self.snapshots is None else str(self.snapshots.root),
            "snapshot_path": None if self.snapshots is None or self.snapshots.default_path is None else str(self.snapshots.default_path),
            "restored_from": self.restored_from,
            "engine_restarts": host.restarts,
            "auth": self.config.auth_token is not None,
            "store": self.store_state,
        }

    def stats(self, since: int = 0) -> dict[str, Any]:
        runtime = self.host.runtime
        return {"policy_version": None if runtime is None else runtime.policy_version,
                "num_steps": None if runtime is None else runtime.num_steps,
                "steps": self.log.since(since), "store": self.store_state}

    async def close(self) -> dict[str, Any] | None:
        """Save the default snapshot (the steps in flight keep running until the engine stops)."""
        if self.host.runtime is None or self.host.state != "ok":
            return None
        return await self.save_default()
