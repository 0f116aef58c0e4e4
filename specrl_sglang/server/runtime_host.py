"""RuntimeHost: what the service needs from the owner of its RolloutRuntime (one contract, two owners).

- `engine_host.EngineHost`: the embedded SGLang engine. Watches its processes; after a death it
  answers 503, restarts the engine and restores the store.
- `workers_host.WorkersHost`: SGLang HTTP servers that run on their own (--sglang-url). Nothing to
  watch and nothing to restart: a dead worker surfaces as `WorkerUnavailable` naming it (the
  service answers 503) and /health names it.
Every method runs on the server's event loop; blocking runtime calls go to worker threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from specrl_sglang.draft_store import DraftStore
from specrl_sglang.runtime import RolloutRuntime

T = TypeVar("T")


class EngineHealth(NamedTuple):
    fields: dict[str, Any]  # merged into /health (e.g. every worker's status)
    problem: str | None  # why the engine cannot serve everything (None: it can); /health answers 503


class RuntimeHost(Protocol):
    runtime: RolloutRuntime | None
    procs: Any  # the embedded engine's processes (EngineProcesses), None when they are not ours
    state: str  # "starting" | "ok" | "restarting" | "failed" | "closed"
    reason: str | None  # why state is not "ok"
    model_path: str  # the weights last loaded from disk
    restarts: list[dict[str, Any]]  # one report per engine restart
    full_update_required: bool  # the next weight update must carry every parameter

    def start(self, store: DraftStore) -> RolloutRuntime:
        """Serve from `store` (blocking, before serving); returns the runtime."""
        ...

    async def watch(self) -> None:
        """Run beside the HTTP server until cancelled."""
        ...

    def check_now(self) -> None: ...

    def current(self) -> RolloutRuntime:
        """The runtime, or EngineUnavailable (503) with the reason."""
        ...

    async def guard(self, call: Callable[[RolloutRuntime], Awaitable[T]]) -> T:
        """`call(runtime)`; EngineUnavailable (503) if the engine dies before it returns."""
        ...

    async def engine_health(self) -> EngineHealth: ...

    def note_disk_update(self, model_path: str) -> None: ...

    def note_memory_update(self) -> None: ...

    def close(self) -> None: ...
