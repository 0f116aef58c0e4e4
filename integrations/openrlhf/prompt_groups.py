"""Per-sample `generate` calls -> one rollout step per prompt group, groups running concurrently.

OpenRLHF's executors call `llm_engine.generate(prompt_ids, params)` once per sample: the n samples
of a prompt arrive together (asyncio.gather in generate_responses), and many prompts are in flight
at once. `PromptGroups` turns the n calls of one prompt into ONE `RolloutRequest(num_samples=n)`,
so the n slots are paired with n distinct drafts of that prompt, and runs every group as its own
step: the runtime batches concurrent steps inside SGLang, none waits for another.

- `submit(key, prompt_ids, expected)` queues one sample and resolves to (Sample, the group's
  result): `run_group` returns an object with a `samples` list (e.g. `GroupResult`).
- A group starts as soon as `expected` samples of its key are queued (a single-turn prompt's n
  samples arrive in one event-loop pass), or `window_s` after its last arrival when fewer come
  (e.g. later turns of multi-turn agents, whose prompts differ per sample).
- Results go back in arrival order: caller i of a group gets sample i (the runtime returns a
  request's samples contiguously). An exception is delivered to every caller of the group.
- Runs on one event loop (the actor's); holds no lock. `num_unfinished` counts queued and running
  samples (OpenRLHF balances prompts over engines by it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Hashable, NamedTuple

import numpy as np



class GroupKey(NamedTuple):
    """Samples with equal keys share one step: same prompt, same sampling, same budget, same purpose."""

    prompt_id: str
    sampling: Hashable  # SamplingConfig
    max_new_tokens: int
    purpose: str  # "train" | "eval"


class GroupResult(NamedTuple):
    samples: list  # the group's n samples (specrl_sglang.rollout_types.Sample), one prompt
    stats: Any  # the step's StepStats
    fresh_reason: str | None  # why the group was drawn fresh (fresh_draws), None: the configured rule


RunGroup = Callable[[GroupKey, np.ndarray, int], Awaitable[GroupResult]]


class _Open:
    def __init__(self, prompt_ids: np.ndarray, expected: int) -> None:
        self.prompt_ids, self.expected = prompt_ids, expected
        self.futures: list[asyncio.Future] = []
        self.timer: asyncio.TimerHandle | None = None


class PromptGroups:
    def __init__(self, run_group: RunGroup, window_s: float = 0.02) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self._run_group, self.window_s = run_group, window_s
        self._open: dict[GroupKey, _Open] = {}
        self._tasks: set[asyncio.Task] = set()
        self.num_running = 0
        self.num_groups = 0

    @property
    def num_unfinished(self) -> int:
        return self.num_running + sum(len(g.futures) for g in self._open.values())

    async def submit(self, key: GroupKey, prompt_ids: np.ndarray, expected: int = 1) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        ids = np.asarray(prompt_ids, dtype=np.int32)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Open(ids, max(1, int(expected)))
        elif not np.array_equal(group.prompt_ids, ids):
            raise ValueError(f"prompt key {key.prompt_id} names two different prompts")
        future = loop.create_future()
        group.futures.append(future)
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if len(group.futures) >= group.expected:
            self._launch(key)
        else:
            group.timer = loop.call_later(self.window_s, self._launch, key)
        return await future

    def _launch(self, key: GroupKey) -> None:
        group = self._open.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        self.num_running += len(group.futures)
        self.num_groups += 1
        task = asyncio.get_running_loop().create_task(self._run(key, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: GroupKey, group: _Open) -> None:
        try:
            result = await self._run_group(key, group.prompt_ids, len(group.futures))
            if len(result.samples) != len(group.futures) or any(s.prompt_index != 0 for s in result.samples):
                raise AssertionError(f"a one-prompt step returned {len(result.samples)} samples for {len(group.futures)}")
        except asyncio.CancelledError:
            for future in group.futures:
                future.cancel()
            raise
        except Exception as exc:  # delivered to every caller of this group
            for future in group.futures:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self.num_running -= len(group.futures)
        for future, sample in zip(group.futures, result.samples):
            if not future.done():
                future.set_result((sample, result))
