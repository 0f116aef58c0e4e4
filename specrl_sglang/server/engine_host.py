"""EngineHost: the server's RolloutRuntime across SGLang engine deaths.

SGLang's engine runs in subprocesses (scheduler, detokenizer) that can die: killed, OOM, a crash
in a kernel. When one does, SGLang sends SIGQUIT to this process (the server installs a handler
that only calls `check_now`) and every request to it would hang. The host watches the processes
(every WATCH_S and on SIGQUIT), and on a death:
1. answers every request waiting on the dead engine, and every new one, with 503 and the reason;
2. closes that runtime (its steps in flight are cancelled: their draft locks are released, they
   record nothing - recording is all or nothing);
3. hands the store - it lives in this process, not in SGLang's - to `recover_store` (the service
   snapshots it and restores that snapshot, validated like any restore);
4. starts a new engine on the last weights it can reproduce: the last checkpoint loaded from
   disk (or the served model). Weights pushed from memory since then are lost with the engine:
   the new runtime is then poisoned (rollouts 503) until a complete weight update arrives. The
   policy version continues, so no answer ever claims a version whose weights it does not hold;
5. reports what happened in `restarts` (reason, failed requests, store, weights).
Contract: `runtime_host.RuntimeHost` (the other owner, `workers_host`, serves through external
SGLang servers and restarts nothing).
Requests run through `guard`, which races them against the engine's death. Methods run on the
server's event loop; the blocking runtime calls go to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psutil

from specrl_sglang.draft_store import DraftStore
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.server.errors import EngineUnavailable
from specrl_sglang.server.runtime_host import EngineHealth

log = logging.getLogger("specrl_sglang.server")
T = TypeVar("T")
WATCH_S = 0.5
START_ATTEMPTS = 3


class EngineProcesses:
    """The subprocesses one engine start created (children of this process that appeared)."""

    def __init__(self, before: set[int]) -> None:
        new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        named = [p for p in new if _name(p).startswith("sglang")]
        self.procs = named or new  # SGLang titles its processes "sglang::scheduler" etc.
        self.names = {p.pid: _name(p) or "engine" for p in self.procs}  # while they run (a zombie's is cut)

    def dead(self) -> str | None:
        """Why the engine is dead (None: all its processes run)."""
        for proc in self.procs:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                pass
            return f"SGLang process {self.names[proc.pid]} (pid {proc.pid}) exited"
        return None


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


class EngineHost:
    def __init__(self, build: Callable[[str, DraftStore], RolloutRuntime], model_path: str,
                 recover_store: Callable[[DraftStore], Awaitable[tuple[DraftStore, dict[str, Any]]]]) -> None:
        """`build(model_path, store)` starts a runtime (blocking); `recover_store(old_store)` returns
        the store for the restarted runtime and a report of what it kept."""
        self._build, self._recover = build, recover_store
        self.model_path = model_path  # the weights a restart loads
        self.memory_updates_since_disk = 0  # weight updates a restart cannot reproduce
        self.runtime: RolloutRuntime | None = None
        self.procs: EngineProcesses | None = None
        self.state, self.reason = "starting", "the engine is starting"
        self.restarts: list[dict[str, Any]] = []
        self._died: asyncio.Event | None = None
        self._check: asyncio.Event | None = None  # created on the event loop in `watch`
        self.full_update_required = False  # after a restart lost pushed weights: the next update must carry all
        self._inflight = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, store: DraftStore) -> RolloutRuntime:
        """Start the first engine (blocking, before serving)."""
        self.runtime, self.procs = self._start(self.model_path, store)
        self.state, self.reason = "ok", None
        return self.runtime

    def _start(self, model_path: str, store: DraftStore) -> tuple[RolloutRuntime, EngineProcesses]:
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        runtime = self._build(model_path, store)
        return runtime, EngineProcesses(before)

    async def watch(self) -> None:
        """Poll the engine's processes (and wake on `check_now`) until cancelled."""
        self._died = self._died or asyncio.Event()
        self._check = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._check.wait(), WATCH_S)
            except TimeoutError:
                pass
            self._check.clear()
            why = self.procs.dead() if self.state == "ok" and self.procs is not None else None
            if why is not None:
                await self._restart(why)

    def check_now(self) -> None:
        """Ask the watcher to look at the processes now (signal handlers, failed requests)."""
        if self._check is not None:
            self._check.set()

    async def _restart(self, why: str) -> None:
        t0 = time.time()
        old, self.runtime = self.runtime, None
        self.state, self.reason = "restarting", f"the SGLang engine died ({why}); restarting it"
        log.error(self.reason)
        failed, self._inflight = self._inflight, 0
        self._died.set()
        self._died = asyncio.Event()
        report: dict[str, Any] = {"reason": why, "unix_time": t0, "failed_requests": failed,
                                  "policy_version": old.policy_version}
        await asyncio.to_thread(_close_quietly, old)
        store, report["store"] = await self._recover(old.store)
        lost = self.memory_updates_since_disk
        report["weights"] = (f"reloaded from {self.model_path}" if not lost else
                             f"{lost} weight update(s) pushed from memory are lost; reloaded {self.model_path} "
                             "and refusing rollouts until a complete weight update")
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                runtime, procs = await asyncio.to_thread(self._start, self.model_path, store)
                break
            except Exception as exc:  # keep trying a few times, then stay down with the reason
                report["start_error"] = f"{type(exc).__name__}: {exc}"
                log.exception("engine restart attempt %d failed", attempt)
                await asyncio.sleep(2.0 * attempt)
        else:
            self.state, self.reason = "failed", f"the SGLang engine died ({why}) and could not be restarted: {report['start_error']}"
            self.restarts.append(report)
            return
        runtime.policy_version, runtime.num_steps = old.policy_version, old.num_steps
        self.full_update_required = bool(lost)
        if lost:
            runtime.poisoned = (f"the engine restarted after it died ({why}); {lost} weight update(s) pushed from "
                                "memory were lost: send a complete weight update")
        report["restart_s"] = time.time() - t0
        self.runtime, self.procs = runtime, procs
        self.state, self.reason = "ok", None
        self.restarts.append(report)
        log.error("engine restarted in %.1f s: %s", report["restart_s"], report)

    def close(self) -> None:
        self.state, self.reason = "closed", "the server is shutting down"
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.close()

    # ------------------------------------------------------------------ requests
    def current(self) -> RolloutRuntime:
        if self.runtime is None or self.state != "ok":
            raise EngineUnavailable(self.reason or "the engine is not running")
        return self.runtime

    async def guard(self, call: Callable[[RolloutRuntime], Awaitable[T]]) -> T:
        """Run `call(runtime)`; EngineUnavailable (503) if the engine dies before it returns."""
        runtime = self.current()
        self._died = self._died or asyncio.Event()
        died = self._died
        task = asyncio.ensure_future(call(runtime))
        waiter = asyncio.ensure_future(died.wait())
        self._inflight += 1
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not died.is_set():
                self._inflight -= 1
        if task.done():
            return task.result()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        raise EngineUnavailable(f"the SGLang engine died while this request ran ({self.reason}); "
                                "nothing of it was recorded")

    async def engine_health(self) -> EngineHealth:
        return EngineHealth({}, None)  # the processes are watched (`watch`); state and reason say the rest

    def note_disk_update(self, model_path: str) -> None:
        self.model_path, self.memory_updates_since_disk, self.full_update_required = model_path, 0, False

    def note_memory_update(self) -> None:
        self.memory_updates_since_disk += 1
        self.full_update_required = False


def _close_quietly(runtime: RolloutRuntime) -> None:
    try:
        runtime.close()
    except Exception:  # the engine is dead; its shutdown may fail half-way
        log.exception("closing the dead engine's runtime")
