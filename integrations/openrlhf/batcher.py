"""Micro-batching of OpenRLHF's per-sample `generate` calls into SpecRollout steps.

OpenRLHF's executors call `llm_engine.generate(prompt_ids, params)` once per sample, concurrently
(asyncio.gather over the n samples of a prompt, and over every prompt dispatched to this engine).
SPEC-RL wants the opposite shape: one step over many prompts with n samples each, so that one
verify prefill and one continuation batch serve them all, and so that the n slots of a prompt are
paired with n distinct drafts. `RolloutBatcher` bridges the two:

- `submit()` queues one sample request and returns an awaitable of (Sample, StepStats);
- a background task waits until no new request arrived for `window_s` (a burst from one dispatch
  arrives within one event-loop turn), then groups the queue by (sampling, max_new_tokens) and,
  within a group, by prompt key: equal keys become ONE RolloutRequest with num_samples = count;
- each group runs as one `run_step(requests, sampling, max_new_tokens)` on the engine thread while
  holding `step_lock` (weight updates take the same lock, so a step never spans two policies);
- results go back to the waiting callers in arrival order; SpecRollout returns a prompt's samples
  contiguously, so caller i of a key gets sample i of that key.
An exception in a step is delivered to every caller of that step; later steps are unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import SamplingConfig

StepFn = Callable[[list[RolloutRequest], SamplingConfig, int], Any]  # -> RolloutResult


class _Pending(NamedTuple):
    key: str
    prompt_ids: np.ndarray
    sampling: SamplingConfig
    max_new_tokens: int
    future: asyncio.Future


class RolloutBatcher:
    """Collects concurrent sample requests into steps; one step runs at a time."""

    def __init__(self, run_step: StepFn, executor: Executor, step_lock: asyncio.Lock, window_s: float = 0.02) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self._run_step, self._executor, self.step_lock = run_step, executor, step_lock
        self.window_s = window_s
        self._pending: list[_Pending] = []
        self._arrived: asyncio.Event | None = None
        self._resumed: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.num_running = 0
        self.num_steps = 0

    @property
    def num_unfinished(self) -> int:
        """Sample requests queued or in the running step."""
        return len(self._pending) + self.num_running

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._arrived = self._arrived or asyncio.Event()
            if self._resumed is None:
                self._resumed = asyncio.Event()
                self._resumed.set()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, key: str, prompt_ids: np.ndarray, sampling: SamplingConfig, max_new_tokens: int):
        """Queue one sample of prompt `key`; resolves to (Sample, StepStats) when its step ends."""
        self._start()
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(key, np.asarray(prompt_ids, dtype=np.int32), sampling, int(max_new_tokens), future))
        self._arrived.set()
        return await future

    async def pause(self) -> None:
        """Start no new step until `resume()`; returns once the running step (if any) finished."""
        self._start()
        self._resumed.clear()
        async with self.step_lock:
            pass

    def resume(self) -> None:
        self._start()
        self._resumed.set()

    def close(self) -> None:
        """Stop the background task (queued callers are not answered)."""
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            await self._arrived.wait()
            while True:  # debounce: wait for the burst to end
                seen = len(self._pending)
                await asyncio.sleep(self.window_s)
                if len(self._pending) == seen:
                    break
            await self._resumed.wait()
            batch, self._pending = self._pending, []
            self._arrived.clear()
            groups: dict[tuple[SamplingConfig, int], list[_Pending]] = {}
            for item in batch:
                groups.setdefault((item.sampling, item.max_new_tokens), []).append(item)
            for (sampling, max_new_tokens), items in groups.items():
                await self._run_group(items, sampling, max_new_tokens)

    async def _run_group(self, items: list[_Pending], sampling: SamplingConfig, max_new_tokens: int) -> None:
        by_key: dict[str, list[_Pending]] = {}
        for item in items:
            by_key.setdefault(item.key, []).append(item)
        self.num_running = len(items)
        try:
            requests = []
            for key, same in by_key.items():
                if any(not np.array_equal(s.prompt_ids, same[0].prompt_ids) for s in same):
                    raise ValueError(f"prompt key {key} names two different prompts")
                requests.append(RolloutRequest(key, same[0].prompt_ids, len(same)))
            async with self.step_lock:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_step, requests, sampling, max_new_tokens
                )
        except Exception as exc:  # delivered to every caller of this step
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self.num_running = 0
        self.num_steps += 1
        samples = iter(result.samples)
        for index, same in enumerate(by_key.values()):
            for item in same:
                sample = next(samples)
                if sample.prompt_index != index:
                    raise AssertionError("SpecRollout must return a prompt's samples contiguously, in request order")
                if not item.future.done():
                    item.future.set_result((sample, result.stats))
