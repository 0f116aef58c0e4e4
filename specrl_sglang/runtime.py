"""RolloutRuntime: the one owner of an engine, its draft store, the policy version and weight updates.

A rollout step is atomic with respect to weight updates by construction: both run on one rollout
loop (`LoopThread`) and pass through one `StepGate`, so a weight update cannot start while a step
is active, and a step cannot start while an update is open. Any number of steps - from any number
of callers and threads - run at the same time, their requests batched together by SGLang. No
layer above needs a lock or a version check of its own; none should add one.

Weight updates (`update_weights`, the streaming `begin_weight_update` / `load_weights` /
`end_weight_update`, `update_weights_from_disk`, `update_weights_from_distributed`) wait for the
steps in flight (at most `wait_s`, else `GateTimeout` and nothing changes), or with
`interrupt=True` abort their requests: those steps park with their partial responses and resume
under the new weights, re-verifying them as drafts (see rollout_step). Every update flushes the
engine's KV cache before the policy version is bumped: KV from old weights never serves the new
policy. A failed update leaves the runtime `poisoned` (the engine may hold a mix of weights):
steps are refused with EngineError until a complete update succeeds.

Threads: every method may be called from any thread except the rollout loop's own; `a*` methods
are coroutines for callers that run their own event loop (a web server, an async Ray actor).
The store is touched only on the rollout loop (`store_call` runs a function there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from specrl_sglang.draft_store import DraftStore, check_store
from specrl_sglang.engine_api import Engine, EngineError, detached
from specrl_sglang.loop_thread import LoopThread
from specrl_sglang.rollout_step import StepContext, run_step
from specrl_sglang.rollout_types import RolloutRequest, RolloutResult
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig, check_mode
from specrl_sglang.step_gate import StepGate
from specrl_sglang.step_stages import validate_step
from specrl_sglang.weight_checks import WeightSpec, check_named_tensors

if TYPE_CHECKING:
    from specrl_sglang.engine_config import EngineConfig

T = TypeVar("T")


class RolloutRuntime:
    """Speculative rollout steps and weight updates on one engine and one draft store."""

    def __init__(self, make_engine: Callable[[], Engine], store: DraftStore, config: SpecConfig = SpecConfig(),
                 weight_spec: WeightSpec | None = None) -> None:
        """`make_engine` runs on the rollout loop's thread (an in-process SGLang engine must be
        created there). `weight_spec`: the model's parameter names/shapes/dtypes, against which
        every weight update is checked before anything is loaded (None: the engine's own, if any)."""
        self.config = config
        self.store = check_store(store)
        self.policy_version = 0
        self.poisoned: str | None = None  # why steps are refused, after a failed update
        self.num_steps = 0  # step k draws its acceptance randomness from (config.seed, k)
        self._gate: StepGate | None = None
        self._session: _UpdateSession | None = None
        self._loop = LoopThread("specrl-rollout", init=make_engine)
        self.engine: Engine = self._loop.init_result
        self.weight_spec = weight_spec if weight_spec is not None else getattr(self.engine, "weight_spec", None)
        self._gate = self._loop.call(StepGate)

    @classmethod
    def in_process(cls, engine_config: "EngineConfig", store: DraftStore | None = None,
                   config: SpecConfig = SpecConfig()) -> "RolloutRuntime":
        """A runtime over an offline SGLang engine in this process (and an unbounded store)."""
        from radix_cache.trajectory_store import TrajectoryStore
        from specrl_sglang.engine import InProcessEngine

        return cls(lambda: InProcessEngine(engine_config), store if store is not None else TrajectoryStore(None), config)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the rollout loop (engine-level diagnostics and tests; a request sent
        this way bypasses the gate, so never send one while a weight update may run)."""
        return self._loop.run(coro, timeout)

    # ------------------------------------------------------------------ rollout
    def step(self, requests: Sequence[RolloutRequest], sampling: SamplingConfig, max_response_len: int,
             mode: str | None = None) -> RolloutResult:
        """Roll out every request under one policy; `mode` overrides the config's for this step."""
        return self._loop.run(self._step(requests, sampling, max_response_len, mode))

    async def astep(self, requests: Sequence[RolloutRequest], sampling: SamplingConfig, max_response_len: int,
                    mode: str | None = None) -> RolloutResult:
        return await self._loop.wrap(self._step(requests, sampling, max_response_len, mode))

    async def _step(self, requests, sampling, max_response_len, mode) -> RolloutResult:
        mode = check_mode(mode) if mode is not None else self.config.mode
        requests = list(requests)
        validate_step(self.engine.limits, requests, sampling, max_response_len, mode)  # before anything else
        gate = self._gate
        await gate.enter_step()
        try:
            self._check_usable()
            step_index, self.num_steps = self.num_steps, self.num_steps + 1
            ctx = StepContext(self.engine, self.store, lambda: self.policy_version, lambda: gate.interrupting, self._park)
            return await run_step(ctx, self.config, step_index, requests, sampling, max_response_len, mode)
        finally:
            await gate.exit_step()

    async def _park(self) -> None:
        await self._gate.park()
        self._check_usable()  # a failed update must not let a parked step run on mixed weights

    def _check_usable(self) -> None:
        if self.poisoned:
            raise EngineError(f"{self.poisoned}; no rollout is served until a complete weight update succeeds")

    # ------------------------------------------------------------------ weights
    def update_weights(self, named_tensors: Iterable[tuple[str, Any]], wait_s: float | None = None,
                       interrupt: bool = False) -> int:
        """Load a (full or partial) state dict and flush all KV; returns the new policy version."""
        named = self._checked(named_tensors, "update_weights")

        async def load(engine: Engine) -> None:
            await engine.begin_weight_update()
            try:
                await engine.load_weights(named)
            except BaseException:
                await engine.abort_weight_update()
                raise
            await engine.end_weight_update(str(self.policy_version + 1))

        return self._loop.run(self._exclusive_update(load, wait_s, interrupt, "update_weights"))

    def update_weights_from_disk(self, model_path: str, wait_s: float | None = None, interrupt: bool = False) -> int:
        """Load a checkpoint directory of the same architecture and flush all KV. The directory is
        validated first (weight_checks.check_checkpoint_dir: names, shapes, float dtypes, finite
        values) when it is visible from this process; a refused one changes nothing."""
        from pathlib import Path

        from specrl_sglang.weight_checks import check_checkpoint_dir

        if self.weight_spec is not None and (Path(model_path).exists() or getattr(self.engine, "shares_filesystem", True)):
            if not Path(model_path).is_dir():
                raise ValueError(f"update_weights_from_disk: {model_path} is not a checkpoint directory")
            check_checkpoint_dir(self.weight_spec, model_path)

        async def load(engine: Engine) -> None:
            await engine.update_weights_from_disk(str(model_path), str(self.policy_version + 1))

        return self._loop.run(self._exclusive_update(load, wait_s, interrupt, "update_weights_from_disk"))

    def init_weights_update_group(self, master_address: str, master_port: int, rank_offset: int, world_size: int,
                                  group_name: str = "weight_update_group", backend: str = "gloo") -> None:
        """Join a trainer's broadcast group (SGLang's own; gloo on CPU, nccl on GPU)."""
        self._loop.run(self.engine.init_weights_update_group(master_address, master_port, rank_offset, world_size,
                                                             group_name, backend))

    def update_weights_from_distributed(self, names: Sequence[str], dtypes: Sequence[str],
                                        shapes: Sequence[Sequence[int]], group_name: str = "weight_update_group",
                                        wait_s: float | None = None, interrupt: bool = False) -> int:
        """Receive tensors the trainer broadcasts over the group and load them; flush all KV."""
        if self.weight_spec is not None:
            self.weight_spec.check_metadata(names, dtypes, shapes, "update_weights_from_distributed")

        async def load(engine: Engine) -> None:
            await engine.update_weights_from_distributed(names, dtypes, shapes, group_name, str(self.policy_version + 1))

        return self._loop.run(self._exclusive_update(load, wait_s, interrupt, "update_weights_from_distributed"))

    def begin_weight_update(self, wait_s: float | None = None, interrupt: bool = False) -> float:
        """Open a streaming update (then `load_weights` any number of times, `end_weight_update`).
        While it is open no step starts; returns the seconds waited for steps in flight."""
        if self._session is not None:
            raise EngineError("a weight update is already open")
        session = _UpdateSession(self, wait_s, interrupt)
        self._session = session
        try:
            return self._loop.run(session.open())
        except BaseException:
            self._session = None
            raise

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load (name, tensor) pairs into the open update. Any failure - a refused tensor included -
        aborts the update (the runtime stays poisoned until a complete one)."""
        session = self._require_session("load_weights")
        try:
            named = self._checked(named_tensors, "load_weights")
            self._loop.run(self.engine.load_weights(named))
        except BaseException:
            self.abort_weight_update()
            raise

    def end_weight_update(self) -> int:
        """Close the open update: flush all KV, bump and return the policy version."""
        session = self._require_session("end_weight_update")
        self._session = None
        return self._loop.run(session.close(commit=True))

    def abort_weight_update(self) -> None:
        """Close the open update after a failure: the runtime stays poisoned until a complete update."""
        session, self._session = self._session, None
        if session is not None:
            self._loop.run(session.close(commit=False))

    def _require_session(self, what: str) -> "_UpdateSession":
        if self._session is None:
            raise EngineError(f"{what} needs an open weight update (begin_weight_update first)")
        return self._session

    def _checked(self, named_tensors: Iterable[tuple[str, Any]], what: str) -> list[tuple[str, Any]]:
        named = detached(named_tensors)
        if self.weight_spec is not None:
            check_named_tensors(self.weight_spec, named, what)
        elif not named:
            raise ValueError(f"{what}: no tensors given")
        return named

    async def _exclusive_update(self, load, wait_s, interrupt, what: str) -> int:
        async with self._gate.exclusive(wait_s, interrupt, self.engine.abort_all):
            self.poisoned = f"{what} did not complete"
            await load(self.engine)
            return self._commit()

    def _commit(self) -> int:
        self.policy_version += 1
        self.poisoned = None
        return self.policy_version

    # ------------------------------------------------------------------ cache, memory, store
    def flush_cache(self, wait_s: float | None = None) -> None:
        """Drop every cached KV entry (waits for the steps in flight)."""
        self._loop.run(self._exclusive(self.engine.flush_cache, wait_s))

    def release_memory(self, wait_s: float | None = None) -> None:
        """GPU: free weights and KV for a colocated trainer; steps fail until `resume_memory`."""

        async def release() -> None:
            await self.engine.flush_cache()
            await self.engine.release_memory()
            self.poisoned = "the engine released its memory (sleep); call resume_memory first"

        self._loop.run(self._exclusive(release, wait_s))

    def resume_memory(self, wait_s: float | None = None) -> None:
        async def resume() -> None:
            await self.engine.resume_memory()
            await self.engine.flush_cache()
            if self.poisoned and "released its memory" in self.poisoned:
                self.poisoned = None

        self._loop.run(self._exclusive(resume, wait_s))

    async def _exclusive(self, fn, wait_s) -> None:
        async with self._gate.exclusive(wait_s):
            await fn()

    def replace_store(self, store: DraftStore, wait_s: float | None = None, num_steps: int | None = None) -> DraftStore:
        """Swap the draft store between steps (restore, clear); returns the old one. `num_steps`
        (a restore) also sets the step counter, so acceptance randomness continues its stream."""
        check_store(store)
        if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0):
            raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")

        async def swap() -> DraftStore:
            async with self._gate.exclusive(wait_s):
                old, self.store = self.store, store
                if num_steps is not None:
                    self.num_steps = num_steps
                return old

        return self._loop.run(swap())

    def store_call(self, fn: Callable[[DraftStore], T]) -> T:
        """Run `fn(store)` on the rollout loop, between any two store operations of the steps in
        flight (e.g. a snapshot: consistent, without waiting for steps to end)."""
        return self._loop.call(lambda: fn(self.store))

    async def astore_call(self, fn: Callable[[DraftStore], T]) -> T:
        async def call() -> T:
            return fn(self.store)

        return await self._loop.wrap(call())

    # ------------------------------------------------------------------ views and lifecycle
    @property
    def busy(self) -> bool:
        return self._gate.busy

    def health(self) -> dict[str, Any]:
        return {
            "status": "poisoned" if self.poisoned else "ok",
            "reason": self.poisoned,
            "policy_version": self.policy_version,
            "num_steps": self.num_steps,
            "active_steps": self._gate.num_active_steps,
            "parked_steps": self._gate.num_parked_steps,
            "update_open": self._gate.section_open or self._session is not None,
            "engine": self.engine.description,
            "mode": self.config.mode,
            "lenience": self.config.lenience,
        }

    def close(self) -> None:
        """Shut the engine down and stop the rollout loop (steps in flight fail)."""
        engine = self.engine
        self._loop.close(finalizer=engine.shutdown)

    def __enter__(self) -> "RolloutRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _UpdateSession:
    """A streaming weight update: the gate's exclusive section held across several calls."""

    def __init__(self, runtime: RolloutRuntime, wait_s: float | None, interrupt: bool) -> None:
        self.runtime, self.wait_s, self.interrupt = runtime, wait_s, interrupt
        self._opened: asyncio.Future | None = None
        self._closing: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    async def open(self) -> float:
        loop = asyncio.get_running_loop()
        self._opened, self._closing = loop.create_future(), loop.create_future()
        self._task = loop.create_task(self._hold())
        return await self._opened

    async def _hold(self) -> int | None:
        rt = self.runtime
        try:
            async with rt._gate.exclusive(self.wait_s, self.interrupt, rt.engine.abort_all) as waited:
                rt.poisoned = "a streaming weight update did not complete"
                try:
                    await rt.engine.begin_weight_update()
                except BaseException as exc:
                    self._opened.set_exception(exc)
                    raise
                self._opened.set_result(waited)
                commit = await self._closing
                if not commit:
                    await rt.engine.abort_weight_update()
                    return None
                await rt.engine.end_weight_update(str(rt.policy_version + 1))
                return rt._commit()
        except BaseException as exc:
            if not self._opened.done():
                self._opened.set_exception(exc)
            raise

    async def close(self, commit: bool) -> int | None:
        if not self._closing.done():
            self._closing.set_result(commit)
        return await self._task
