"""RolloutBatcher: concurrent per-sample calls -> one SpecRollout-shaped step, results back in order."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from integrations.openrlhf.batcher import RolloutBatcher
from specrl_sglang.sampling import SamplingConfig


class FakeStep:
    """Stands in for SpecRollout.step: sample j of request i carries token ids [i, j]."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, requests, sampling, max_new_tokens):
        self.calls.append(([(r.prompt_id, r.num_samples) for r in requests], sampling, max_new_tokens))
        if self.fail:
            raise ValueError("boom")
        samples = [
            SimpleNamespace(prompt_index=i, token_ids=np.array([i, j]))
            for i, r in enumerate(requests)
            for j in range(r.num_samples)
        ]
        return SimpleNamespace(samples=samples, stats=SimpleNamespace(step=len(self.calls)))


def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_concurrent_samples_become_one_step_with_n_per_prompt_and_contiguous_results():
    step = FakeStep()

    async def main():
        batcher = RolloutBatcher(step, ThreadPoolExecutor(1), asyncio.Lock(), window_s=0.01)
        calls = [batcher.submit(key, np.array([1, 2, ord(key)]), SamplingConfig(), 8) for key in "abab" for _ in range(2)]
        results = await asyncio.gather(*calls)
        batcher.close()
        return results, batcher

    results, batcher = run(main())
    assert step.calls == [([("a", 4), ("b", 4)], SamplingConfig(), 8)]  # one step, keys grouped, arrival order
    # callers of "a" got samples 0..3 of request 0 in arrival order, "b" those of request 1
    got = [tuple(s.token_ids) for s, _ in results]
    assert got == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert batcher.num_unfinished == 0 and batcher.num_steps == 1


def test_different_sampling_or_budget_runs_as_separate_steps():
    step = FakeStep()

    async def main():
        batcher = RolloutBatcher(step, ThreadPoolExecutor(1), asyncio.Lock(), window_s=0.01)
        await asyncio.gather(
            batcher.submit("a", np.array([1]), SamplingConfig(), 8),
            batcher.submit("b", np.array([2]), SamplingConfig(temperature=0.5), 8),
            batcher.submit("c", np.array([3]), SamplingConfig(), 4),
        )

    run(main())
    assert sorted((c[0][0][0], c[2]) for c in step.calls) == [("a", 8), ("b", 8), ("c", 4)]


def test_a_failing_step_fails_its_callers_and_the_next_step_still_runs():
    bad, good = FakeStep(fail=True), FakeStep()

    async def main():
        batcher = RolloutBatcher(bad, ThreadPoolExecutor(1), asyncio.Lock(), window_s=0.01)
        with pytest.raises(ValueError, match="boom"):
            await batcher.submit("a", np.array([1]), SamplingConfig(), 8)
        batcher._run_step = good
        sample, _ = await batcher.submit("a", np.array([1]), SamplingConfig(), 8)
        return sample

    assert tuple(run(main()).token_ids) == (0, 0)


def test_same_key_for_different_prompts_is_an_error_for_its_callers():
    async def main():
        batcher = RolloutBatcher(FakeStep(), ThreadPoolExecutor(1), asyncio.Lock(), window_s=0.01)
        return await asyncio.gather(
            batcher.submit("a", np.array([1]), SamplingConfig(), 8),
            batcher.submit("a", np.array([2]), SamplingConfig(), 8),
            return_exceptions=True,
        )

    assert all(isinstance(r, ValueError) and "two different prompts" in str(r) for r in run(main()))


def test_pause_holds_new_steps_until_resume():
    step = FakeStep()

    async def main():
        batcher = RolloutBatcher(step, ThreadPoolExecutor(1), asyncio.Lock(), window_s=0.01)
        await batcher.pause()
        task = asyncio.ensure_future(batcher.submit("a", np.array([1]), SamplingConfig(), 8))
        await asyncio.sleep(0.1)
        held = (len(step.calls), batcher.num_unfinished)
        batcher.resume()
        await task
        return held

    assert run(main()) == (0, 1) and len(step.calls) == 1
