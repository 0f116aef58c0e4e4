"""PromptGroups: per-sample calls -> one step per prompt group, groups concurrent, results in order."""

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from integrations.openrlhf.prompt_groups import GroupKey, GroupResult, PromptGroups
from specrl_sglang.sampling import SamplingConfig

S = SamplingConfig()


class Steps:
    """run_group: sample j of a group carries token ids [j]; records calls and overlap."""

    def __init__(self, delay=0.05, fail=None):
        self.calls, self.delay, self.fail, self.active, self.max_active = [], delay, fail, 0, 0

    async def __call__(self, key, prompt_ids, n):
        self.calls.append((key.prompt_id, n))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await asyncio.sleep(self.delay)
        self.active -= 1
        if key.prompt_id == self.fail:
            raise ValueError("boom")
        samples = [SimpleNamespace(prompt_index=0, token_ids=np.array([j])) for j in range(n)]
        return GroupResult(samples, SimpleNamespace(step=key.prompt_id), None)


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def key(p, purpose="train", max_new=8):
    return GroupKey(p, S, max_new, purpose)


def test_n_calls_of_a_prompt_become_one_group_and_groups_run_concurrently():
    steps = Steps()
    groups = PromptGroups(steps, window_s=1.0)  # a long window: full groups must not wait for it

    async def go():
        calls = [groups.submit(key(p), np.array([1, i]), expected=3) for i, p in enumerate("abc") for _ in range(3)]
        return await asyncio.gather(*calls)

    loop = asyncio.new_event_loop()
    t0 = loop.time()
    out = loop.run_until_complete(go())
    assert loop.time() - t0 < 0.5
    assert sorted(steps.calls) == [("a", 3), ("b", 3), ("c", 3)] and steps.max_active == 3
    assert [int(s.token_ids[0]) for s, _ in out] == [0, 1, 2] * 3  # caller i of a group gets sample i
    assert groups.num_unfinished == 0 and groups.num_groups == 3


def test_a_partial_group_starts_after_the_window_and_keys_separate_purposes():
    steps = Steps(delay=0)
    groups = PromptGroups(steps, window_s=0.02)

    async def go():
        return await asyncio.gather(groups.submit(key("a"), np.array([1]), expected=4),
                                    groups.submit(key("a", purpose="eval"), np.array([1]), expected=4),
                                    groups.submit(key("a", max_new=9), np.array([1]), expected=4))

    run(go())
    assert sorted(steps.calls) == [("a", 1)] * 3


def test_a_failing_group_fails_all_its_callers_only():
    groups = PromptGroups(Steps(fail="b"), window_s=0.01)

    async def go():
        return await asyncio.gather(*(groups.submit(key(p), np.array([1]), expected=2) for p in "abb"),
                                    return_exceptions=True)

    a, b1, b2 = run(go())
    assert not isinstance(a, Exception) and isinstance(b1, ValueError) and isinstance(b2, ValueError)


def test_one_key_for_two_prompts_is_an_error():
    groups = PromptGroups(Steps(), window_s=0.05)

    async def go():
        first = asyncio.ensure_future(groups.submit(key("a"), np.array([1]), expected=2))
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="two different prompts"):
            await groups.submit(key("a"), np.array([2]), expected=2)
        return await first

    run(go())
