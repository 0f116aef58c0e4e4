"""TrajectoryStore: exact drafts, prefix sharing, replacement, LRU budget, locks, pages, stats."""

from __future__ import annotations

import numpy as np
import pytest

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from radix_cache.tree import LockedError

PROMPT = [11, 12, 13]


def resp(tokens: list[int], versions: list[int] | None = None, scale: float = 1.0) -> Response:
    """A response whose log-probs are a function of its prefix (so shared prefixes agree)."""
    token_ids = np.array(tokens, dtype=np.int32)
    logprobs = -scale * np.cumsum(token_ids + 1).astype(np.float32) / 100
    return Response(token_ids, logprobs, None if versions is None else np.array(versions, dtype=np.int32))


def same(draft, response: Response) -> bool:
    return (
        draft.token_ids.dtype == np.int32
        and draft.logprobs.dtype == np.float32
        and draft.token_ids.tolist() == response.token_ids.tolist()
        and draft.logprobs.tobytes() == response.logprobs.tobytes()
        and (
            draft.versions is None
            if response.versions is None
            else draft.versions.tolist() == response.versions.tolist()
        )
    )


def test_put_lookup_roundtrip_shares_prefixes(check):
    store = TrajectoryStore(max_tokens=None)
    responses = [resp([1, 2, 3, 4]), resp([1, 2]), resp([1]), resp([1, 2, 3, 5, 6]), resp([7])]
    assert store.put("p", PROMPT, responses) == 5
    check(store.tree)
    drafts = store.lookup("p", PROMPT, num_samples=5)
    assert all(same(d, r) for d, r in zip(drafts, responses))  # terminal nodes survived the splits
    assert store.total_tokens() == 4 + 2 + 1 < sum(len(r.token_ids) for r in responses)
    stats = store.stats()
    assert (stats.num_prompts, stats.num_samples, stats.total_tokens) == (1, 5, 7)
    assert (stats.num_drafts_returned, stats.num_draft_tokens_returned) == (5, 13)


def test_versions_roundtrip(check):
    store = TrajectoryStore(max_tokens=None)
    responses = [resp([1, 2, 3], [4, 4, 5]), resp([1, 2, 9], [4, 4, 6])]
    store.put("p", PROMPT, responses)
    assert all(same(d, r) for d, r in zip(store.samples("p"), responses))
    check(store.tree)


def test_lookup_slots_fill_with_none_and_count():
    store = TrajectoryStore(max_tokens=None)
    store.put("p", PROMPT, [resp([1, 2]), resp([3])])
    drafts = store.lookup("p", PROMPT, 4)
    assert [d is None for d in drafts] == [False, False, True, True]
    assert len(store.lookup("p", PROMPT, 1)) == 1 and store.lookup("p", PROMPT, 0) == []
    assert store.lookup("q", [1], 3) == [None, None, None]
    stats = store.stats()
    assert stats.num_lookups == 4 and stats.num_lookups_with_draft == 2
    assert stats.num_slots_requested == 8 and stats.num_drafts_returned == 3
    assert stats.num_draft_tokens_returned == 3 + 2
    assert stats.slot_hit_rate == pytest.approx(3 / 8)
    store.reset_stats()
    assert store.stats().num_lookups == 0 and store.stats().num_samples == 2


def test_drafts_are_fresh_copies():
    store = TrajectoryStore(max_tokens=None)
    store.put("p", PROMPT, [resp([1, 2, 3])])
    draft = store.lookup("p", PROMPT, 1)[0]
    draft.token_ids[:] = 0
    draft.logprobs[:] = 0
    assert same(store.samples("p")[0], resp([1, 2, 3]))


def test_put_replaces_completely(check):
    store = TrajectoryStore(max_tokens=None)
    store.put("p", PROMPT, [resp([1, 2, 3], [0, 0, 0]), resp([4, 5], [0, 0])])
    new = [resp([1, 2, 3], scale=2.0)]
    store.put("p", PROMPT, new)
    assert len(store.samples("p")) == 1 and same(store.samples("p")[0], new[0])
    assert store.total_tokens() == 3 and store.stats().num_samples == 1
    check(store.tree)


def test_budget_evicts_least_recently_used_prompts(check):
    store = TrajectoryStore(max_tokens=10)
    store.put("a", [1], [resp([1, 2, 3, 4])])
    store.put("b", [2], [resp([1, 2, 3, 4])])
    store.lookup("a", [1], 1)  # b is now least recently used
    store.put("c", [3], [resp([5, 6, 7])])
    assert list(store.prompt_ids()) == ["a", "c"] and "b" not in store
    stats = store.stats()
    assert (stats.num_evicted_prompts, stats.num_evicted_tokens, stats.total_tokens) == (1, 4, 7)
    store.put("d", [4], [resp(list(range(20)))])  # larger than the budget on its own
    assert len(store) == 0 and store.total_tokens() == 0
    assert store.stats().num_evicted_prompts == 4
    check(store.tree)


def test_zero_budget_keeps_nothing():
    store = TrajectoryStore(max_tokens=0)
    store.put("a", [1], [resp([1, 2])])
    assert len(store) == 0 and store.lookup("a", [1], 1) == [None]


def test_locked_prompts_survive_eviction_until_released(check):
    store = TrajectoryStore(max_tokens=5)
    store.put("a", [1], [resp([1, 2, 3])])
    drafts = store.lookup("a", [1], 2, lock=True)
    assert store.is_locked("a") and store.tree.protected_size() == 3
    store.put("b", [2], [resp([4, 5, 6])])  # over budget: a is locked, so b itself goes
    assert list(store.prompt_ids()) == ["a"] and same(drafts[0], resp([1, 2, 3]))
    with pytest.raises(LockedError):
        store.remove("a")
    assert store.release("a") == 1 and not store.is_locked("a")
    assert store.tree.protected_size() == 0
    store.put("b", [2], [resp([4, 5, 6])])
    assert list(store.prompt_ids()) == ["b"]
    check(store.tree)


def test_put_releases_locks_of_that_prompt(check):
    store = TrajectoryStore(max_tokens=None)
    store.put("a", [1], [resp([1, 2, 3])])
    store.lookup("a", [1], 1, lock=True)
    store.lookup("a", [1], 1, lock=True)
    store.put("a", [1], [resp([1, 2, 4])])
    assert not store.is_locked("a") and store.tree.protected_size() == 0
    assert store.remove("a") == 3 and len(store) == 0
    check(store.tree)


@pytest.mark.parametrize("page_size", [2, 4])
def test_page_size_keeps_partial_page_tails(page_size, check):
    store = TrajectoryStore(max_tokens=None, page_size=page_size)
    responses = [resp([1, 2, 3, 4, 5]), resp([1, 2, 3]), resp([1]), resp([])]
    store.put("p", PROMPT, responses)
    assert all(same(d, r) for d, r in zip(store.lookup("p", PROMPT, 4), responses))
    tails = sum(len(r.token_ids) % page_size for r in responses)
    assert store.tree.total_size() == 4  # [1, 2, 3, 4]; every shorter whole-page run is its prefix
    assert store.total_tokens() == 4 + tails
    check(store.tree)


def test_samples_per_prompt_cap_and_empty_responses():
    store = TrajectoryStore(max_tokens=None, samples_per_prompt=2)
    assert store.put("p", PROMPT, [resp([]), resp([1]), resp([2])]) == 2
    drafts = store.lookup("p", PROMPT, 3)
    assert len(drafts[0].token_ids) == 0 and drafts[0].logprobs.dtype == np.float32
    assert same(drafts[1], resp([1])) and drafts[2] is None
    assert store.put("q", [1], []) == 0 and "q" in store and store.lookup("q", [1], 1) == [None]


def test_container_protocol():
    store = TrajectoryStore(max_tokens=None)
    for name in ("x", "y", "z"):
        store.put(name, [ord(name)], [resp([1])])
    store.lookup("x", [ord("x")], 1)
    assert len(store) == 3 and "y" in store and "w" not in store and 5 not in store
    assert list(store.prompt_ids()) == ["y", "z", "x"]
    with pytest.raises(KeyError):
        store.samples("w")


def test_random_puts_and_lookups_match_dict_oracle(check):
    rng = np.random.default_rng(0)
    store = TrajectoryStore(max_tokens=None, page_size=2)
    oracle: dict[str, list[Response]] = {}
    for step in range(300):
        prompt_id = f"p{int(rng.integers(8))}"
        if rng.random() < 0.5:
            num_responses = int(rng.integers(0, 5))
            responses = [resp(rng.integers(0, 3, int(rng.integers(0, 12))).tolist()) for _ in range(num_responses)]
            store.put(prompt_id, [int(prompt_id[1:])], responses)
            oracle[prompt_id] = responses
        else:
            num_samples = int(rng.integers(0, 6))
            drafts = store.lookup(prompt_id, [int(prompt_id[1:])], num_samples)
            expected = oracle.get(prompt_id, [])[:num_samples]
            assert all(same(d, r) for d, r in zip(drafts, expected))
            assert drafts[len(expected) :] == [None] * (num_samples - len(expected))
        if step % 25 == 0:
            check(store.tree)
    assert store.stats().num_samples == sum(len(v) for v in oracle.values())
