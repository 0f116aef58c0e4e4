"""WorkersHost: the server's RolloutRuntime over SGLang HTTP servers that run on their own (--sglang-url).

`connect(config)` builds a RolloutRuntime over `HttpEngine(config.sglang_urls, --model,
router_url=--sglang-router)`: every worker must answer, serve the same model and pass the
log-prob convention probe (HttpEngine's connect-time checks), or it raises EngineError naming the
worker; connecting starts nothing and takes seconds. The model's facts then come from the engine
(`model_facts`), and `start(store)` installs the store to serve from (restored or empty).

The servers are not ours: nothing is watched and nothing is restarted. A worker that dies makes the
requests routed to it fail with `WorkerUnavailable` naming its URL (the service answers 503; the
step records nothing; an update that cannot reach every worker leaves the runtime refusing steps
until a complete one succeeds), and /health answers 503 naming it until it answers again.
Weights pushed from memory are never lost here (the workers keep them), so no update has to
carry every parameter. Contract: `runtime_host.RuntimeHost`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from specrl_sglang.draft_store import DraftStore
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.server.config import ServeConfig
from specrl_sglang.server.errors import EngineUnavailable
from specrl_sglang.server.preflight import ModelFacts, engine_facts
from specrl_sglang.server.runtime_host import EngineHealth

T = TypeVar("T")
HEALTH_TIMEOUT_S = 60.0


class WorkersHost:
    procs = None  # no SGLang process is ours
    full_update_required = False

    def __init__(self, runtime: RolloutRuntime, model_arg: str | None) -> None:
        self.runtime: RolloutRuntime | None = runtime
        self.state, self.reason = "ok", None
        self.restarts: list[dict[str, Any]] = []
        self._model_arg = model_arg
        self.model_path = str(self.model_facts().model_dir)  # the weights last loaded from disk

    @classmethod
    def connect(cls, config: ServeConfig) -> "WorkersHost":
        from radix_cache.trajectory_store import TrajectoryStore
        from specrl_sglang.http_engine import HttpEngine

        urls, model_path, router = list(config.sglang_urls), config.model_path, config.sglang_router
        runtime = RolloutRuntime(lambda: HttpEngine(urls, model_path, router_url=router),
                                 TrajectoryStore(config.store_max_tokens), config.spec_config)
        try:
            return cls(runtime, model_path)
        except BaseException:
            runtime.close()
            raise

    def model_facts(self) -> ModelFacts:
        return engine_facts(self.current().engine, self._model_arg)

    def start(self, store: DraftStore) -> RolloutRuntime:
        runtime = self.current()
        runtime.replace_store(store)
        return runtime

    async def watch(self) -> None:
        await asyncio.get_running_loop().create_future()  # nothing to watch; until cancelled

    def check_now(self) -> None:
        pass

    def current(self) -> RolloutRuntime:
        if self.runtime is None or self.state != "ok":
            raise EngineUnavailable(self.reason or "the server is not connected to its SGLang workers")
        return self.runtime

    async def guard(self, call: Callable[[RolloutRuntime], Awaitable[T]]) -> T:
        return await call(self.current())

    async def engine_health(self) -> EngineHealth:
        runtime = self.current()
        engine = runtime.engine
        report = await asyncio.to_thread(runtime.run, engine.health(), HEALTH_TIMEOUT_S)
        down = {url: status for url, status in report["workers"].items() if status != "ok"}
        fields = {"workers": report["workers"], "weight_version": report["weight_version"],
                  "sglang_router": engine.router_url, "requests_per_target": dict(engine.num_requests),
                  "http_overhead_s": engine.http_overhead_s}
        problem = None
        if down:
            problem = (f"{len(down)} of {len(report['workers'])} SGLang workers do not answer: "
                       + "; ".join(f"{url}: {status}" for url, status in down.items())
                       + " (this server restarts nothing: restart the worker)")
        return EngineHealth(fields, problem)

    def note_disk_update(self, model_path: str) -> None:
        self.model_path = model_path

    def note_memory_update(self) -> None:
        pass

    def close(self) -> None:
        """Close the connections (the SGLang servers keep running)."""
        self.state, self.reason = "closed", "the server is shutting down"
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.close()
