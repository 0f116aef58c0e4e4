"""SpecRollout end to end on a real CPU sglang.Engine (one engine for the module)."""

import math

import numpy as np
import pytest
import torch

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.engine import RolloutEngine
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_rollout import SpecConfig, SpecRollout

MAX_LEN = 24
SAMPLING = SamplingConfig()


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    with RolloutEngine(EngineConfig(model_path=tiny_model_path, max_total_tokens=16384)) as eng:
        yield eng


@pytest.fixture(scope="module")
def base_weights(tiny_model_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    return [(k, v.detach().clone()) for k, v in model.named_parameters()]


@pytest.fixture
def fresh_weights(engine, base_weights):
    engine.update_weights(base_weights)
    yield base_weights


def perturbed(weights, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    return [(k, v + scale * torch.randn(v.shape, generator=gen)) for k, v in weights]


def requests(num_prompts=4, n=4, salt=0):
    rng = np.random.default_rng(salt)
    return [
        RolloutRequest(f"p{salt}-{i}", rng.integers(3, 200, size=8 + i).astype(np.int32), n) for i in range(num_prompts)
    ]


def test_first_step_is_plain_rollout_and_records_drafts(engine, fresh_weights):
    store = TrajectoryStore(max_tokens=None)
    rollout = SpecRollout(engine, store, SpecConfig(lenience=math.inf))
    reqs = requests()
    result = rollout.step(reqs, SAMPLING, MAX_LEN)
    assert len(result.samples) == 16
    assert [s.prompt_index for s in result.samples] == [i for i in range(4) for _ in range(4)]  # n contiguous
    assert all(s.draft_len == 0 and s.accepted_len == 0 for s in result.samples)
    assert result.stats.num_tokens_decoded == sum(s.response_len for s in result.samples)
    for s in result.samples:
        assert len(s.logprobs) == s.response_len and np.all(s.logprobs <= 0)
        assert s.finish_reason in ("stop", "length")
    for req in reqs:
        drafts = store.lookup(req.prompt_id, req.prompt_ids, 4)
        assert sum(d is not None for d in drafts) == 4


def test_infinite_lenience_with_unchanged_weights_reuses_everything(engine, fresh_weights):
    rollout = SpecRollout(engine, TrajectoryStore(max_tokens=None), SpecConfig(lenience=math.inf))
    reqs = requests(salt=1)
    first = rollout.step(reqs, SAMPLING, MAX_LEN)
    second = rollout.step(reqs, SAMPLING, MAX_LEN)
    assert second.stats.full_reuse_ratio == 1.0
    assert second.stats.num_tokens_decoded == 0
    assert second.stats.continue_s == 0.0
    assert sorted(tuple(s.token_ids) for s in second.samples) == sorted(tuple(s.token_ids) for s in first.samples)
    for s in second.samples:  # log-probs are re-scored under the current policy (same weights: same values)
        assert s.fully_reused and s.accepted_len == s.draft_len == s.response_len


def test_lenience_one_with_unchanged_weights_accepts_nearly_everything(engine, fresh_weights):
    rollout = SpecRollout(engine, TrajectoryStore(max_tokens=None), SpecConfig(lenience=1.0, seed=3))
    reqs = requests(num_prompts=6, salt=2)
    rollout.step(reqs, SAMPLING, MAX_LEN)
    second = rollout.step(reqs, SAMPLING, MAX_LEN)
    assert second.stats.num_tokens_reused / second.stats.num_draft_tokens > 0.99
    assert second.stats.full_reuse_ratio > 0.9


def test_continuations_reuse_verify_kv_after_a_weight_update(engine, fresh_weights, tiny_model_path):
    rollout = SpecRollout(engine, TrajectoryStore(max_tokens=None), SpecConfig(lenience=1.0, seed=5))
    reqs = requests(num_prompts=4, salt=3)
    first = rollout.step(reqs, SAMPLING, MAX_LEN)
    new_weights = perturbed(fresh_weights, 0.2, seed=1)
    engine.update_weights(new_weights)
    # No KV computed under the old weights survives the update.
    probe = first.samples[0]
    stale = engine.generate([np.concatenate([reqs[0].prompt_ids, probe.token_ids])], [1], SAMPLING)[0]
    assert stale.cached_tokens == 0
    second = rollout.step(reqs, SAMPLING, MAX_LEN)
    partial = [s for s in second.samples if not s.fully_reused]
    assert partial, "a 0.2-scale weight change should reject some drafts"
    assert second.stats.kv_hit_ratio == 1.0  # every continuation served prompt + accepted - 1 from the verify KV
    assert second.stats.num_tokens_reused < second.stats.num_draft_tokens
    # Reused prefixes carry log-probs of the *new* policy, matching transformers under the new weights.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model.load_state_dict(dict(new_weights), strict=False)
    for s in second.samples[:4]:
        ids = torch.tensor([np.concatenate([reqs[s.prompt_index].prompt_ids, s.token_ids]).tolist()])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0], -1)
        p = len(reqs[s.prompt_index].prompt_ids)
        want = lp[p - 1 : -1].gather(-1, ids[0, p:, None])[:, 0].numpy()
        np.testing.assert_allclose(s.logprobs, want, atol=2e-4)


def test_vanilla_mode_goes_through_the_same_path_without_drafts(engine, fresh_weights):
    store = TrajectoryStore(max_tokens=None)
    rollout = SpecRollout(engine, store, SpecConfig(enabled=False))
    reqs = requests(salt=4)
    rollout.step(reqs, SAMPLING, MAX_LEN)
    second = rollout.step(reqs, SAMPLING, MAX_LEN)
    assert all(s.draft_len == 0 for s in second.samples)
    assert second.stats.full_reuse_ratio == 0.0 and second.stats.verify_s == 0.0


def _seeded_store(req, token_ids, logprobs):
    store = TrajectoryStore(max_tokens=None)
    store.put(req.prompt_id, req.prompt_ids, [Response(np.asarray(token_ids, np.int32), np.asarray(logprobs, np.float32), None)])
    return store


def _store_state(store, req):
    return [(d.token_ids.tolist(), d.logprobs.tolist()) for d in store.lookup(req.prompt_id, req.prompt_ids, 1) if d is not None]


def test_draft_outside_vocabulary_is_rejected_and_store_kept(engine, fresh_weights):
    req = requests(num_prompts=1, n=1, salt=5)[0]
    store = _seeded_store(req, [3, engine.vocab_size + 7], [-1.0, -1.0])
    before = _store_state(store, req)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        SpecRollout(engine, store).step([req], SAMPLING, MAX_LEN)
    assert _store_state(store, req) == before


def test_draft_longer_than_max_response_len_is_rejected(engine, fresh_weights):
    req = requests(num_prompts=1, n=1, salt=6)[0]
    store = _seeded_store(req, list(range(3, 3 + MAX_LEN + 2)), [-1.0] * (MAX_LEN + 2))
    before = _store_state(store, req)
    with pytest.raises(ValueError, match="max_response_len"):
        SpecRollout(engine, store).step([req], SAMPLING, MAX_LEN)
    assert _store_state(store, req) == before


def test_prompt_id_collision_is_rejected_and_store_kept(engine, fresh_weights):
    req = requests(num_prompts=1, n=2, salt=7)[0]
    rollout = SpecRollout(engine, TrajectoryStore(max_tokens=None))
    rollout.step([req], SAMPLING, MAX_LEN)
    before = _store_state(rollout.store, req)
    impostor = RolloutRequest(req.prompt_id, req.prompt_ids[::-1].copy(), 2)
    with pytest.raises(ValueError, match=req.prompt_id):
        rollout.step([impostor], SAMPLING, MAX_LEN)
    assert _store_state(rollout.store, req) == before
    with pytest.raises(ValueError, match="twice"):
        rollout.step([req, req], SAMPLING, MAX_LEN)


def test_missing_log_probs_and_context_overflow_are_rejected(engine, fresh_weights):
    req = requests(num_prompts=1, n=1, salt=8)[0]
    with pytest.raises((ValueError, TypeError), match="log"):
        TrajectoryStore(max_tokens=None).put(req.prompt_id, req.prompt_ids, [Response(np.array([3, 4], np.int32), None, None)])
    with pytest.raises(ValueError, match="context length"):
        SpecRollout(engine, TrajectoryStore(max_tokens=None)).step([req], SAMPLING, engine.context_len)


def test_identical_and_prefix_drafts_share_one_verify_request(engine, fresh_weights):
    req = RolloutRequest("dedupe", np.arange(10, 22, dtype=np.int32), 4)
    long = engine.generate([req.prompt_ids], [12], SamplingConfig(ignore_eos=True))[0]
    other = engine.generate([req.prompt_ids], [6], SamplingConfig(ignore_eos=True))[0]
    store = TrajectoryStore(max_tokens=None)
    store.put(req.prompt_id, req.prompt_ids, [
        Response(long.token_ids, long.logprobs, None),
        Response(long.token_ids.copy(), long.logprobs.copy(), None),
        Response(long.token_ids[:5].copy(), long.logprobs[:5].copy(), None),
        Response(other.token_ids, other.logprobs, None),
    ])
    result = SpecRollout(engine, store, SpecConfig(lenience=math.inf)).step([req], SAMPLING, MAX_LEN)
    unique = 1 if np.array_equal(other.token_ids, long.token_ids[:6]) else 2
    assert result.stats.num_verify_requests == unique
    for s in result.samples:  # each slot's re-scored prefix equals a verify of that draft alone
        alone = engine.verify([req.prompt_ids], [s.token_ids[: s.draft_len]])[0].logprobs
        np.testing.assert_allclose(s.logprobs[: s.draft_len], alone, atol=1e-5)


def test_a_weight_update_inside_a_step_is_detected_and_nothing_is_recorded(engine, fresh_weights, monkeypatch):
    from specrl_sglang.engine import EngineError

    store = TrajectoryStore(max_tokens=None)
    rollout = SpecRollout(engine, store, SpecConfig(lenience=1.0))
    reqs = requests(num_prompts=2, n=2, salt=9)
    rollout.step(reqs, SAMPLING, MAX_LEN)
    engine.update_weights(perturbed(fresh_weights, 0.3, seed=3))  # so that some drafts need a continuation
    before = [_store_state(store, r) for r in reqs]
    real_generate = engine.generate

    def generate_after_an_update(*args, **kwargs):  # another thread's update, landing mid-step
        engine.update_weights(perturbed(fresh_weights, 0.3, seed=4))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(engine, "generate", generate_after_an_update)
    with pytest.raises(EngineError, match="policy changed during a rollout step"):
        rollout.step(reqs, SAMPLING, MAX_LEN)
    assert [_store_state(store, r) for r in reqs] == before
    assert not any(store.is_locked(r.prompt_id) for r in reqs)
