"""ShardedDraftStore: the DraftStore protocol, ownership by prompt, scratch ids never stored.

(Its Ray path - an awaitable per peer call, served on the owner's rollout loop - runs in
test_engine_actor.py against a real Ray actor and the real runtime, and in the two-engine e2e run.)
"""

import numpy as np
import pytest

from integrations.openrlhf.sharded_store import ShardedDraftStore, is_scratch, owner_of, scratch_id
from radix_cache.responses import Response
from radix_cache.trajectory_store import PromptCollisionError, TrajectoryStore
from specrl_sglang.draft_store import DraftStore, check_store
from specrl_sglang.prompt_identity import prompt_key

IDS = np.array([1, 2, 3], dtype=np.int32)


def response(*tokens):
    return Response(np.array(tokens, np.int32), np.full(len(tokens), -0.5, np.float32))


def test_is_a_draft_store_and_with_one_engine_is_the_local_store():
    store = ShardedDraftStore(TrajectoryStore(max_tokens=None), 0)
    assert isinstance(check_store(store), DraftStore)
    key = prompt_key("l", IDS)
    assert store.lookup(key, IDS, 2, lock=True) == [None, None]
    assert store.put_many([(key, IDS, [response(4, 5)])]) == [1]
    drafts = store.lookup(key, IDS, 2)
    assert drafts[0].token_ids.tolist() == [4, 5] and drafts[1] is None and store.num_remote_calls == 0
    assert store.stats().num_prompts == 1
    with pytest.raises(PromptCollisionError):
        store.lookup(key, IDS[::-1].copy(), 1)


def test_scratch_ids_are_never_stored():
    local = TrajectoryStore(max_tokens=None)
    store = ShardedDraftStore(local, 0)
    eval_id = scratch_id(prompt_key("l", IDS))
    assert is_scratch(eval_id) and not is_scratch(prompt_key("l", IDS))
    assert store.put(eval_id, IDS, [response(4)]) == 0
    assert store.put_many([(eval_id, IDS, [response(4)])]) == [0]
    assert store.lookup(eval_id, IDS, 3) == [None] * 3 and store.release(eval_id) == 0
    assert local.stats().num_prompts == 0 and local.stats().num_puts == 0


def test_owner_is_stable_and_shards_are_even():
    keys = [prompt_key(str(i), IDS) for i in range(400)]
    owners = [owner_of(k, 4) for k in keys]
    assert set(owners) == {0, 1, 2, 3} and max(np.bincount(owners)) < 140
    assert [owner_of(k, 4) for k in keys] == owners and owner_of(scratch_id(keys[0]), 4) == owners[0]


def test_peers_calls_are_limited_to_store_methods():
    store = ShardedDraftStore(TrajectoryStore(max_tokens=None), 1)
    key = prompt_key("x", IDS)
    assert store.serve("put", key, IDS, [response(7)]) == 1
    assert store.serve("lookup", key, IDS, 1, False)[0].token_ids.tolist() == [7]
    with pytest.raises(ValueError, match="not a draft-store method"):
        store.serve("remove", key)
