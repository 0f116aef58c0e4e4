"""RolloutRuntime end to end on a real CPU sglang.Engine: the step's stages, its modes, and its
atomicity with respect to weight updates (concurrent steps, interrupts, timeouts)."""

import math
import threading
import time

import numpy as np
import pytest

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig
from specrl_sglang.step_gate import GateTimeout

MAX_LEN = 24
SAMPLING = SamplingConfig()


@pytest.fixture(scope="module")
def rt(tiny_model_path):
    with RolloutRuntime.in_process(EngineConfig(model_path=tiny_model_path, max_total_tokens=32768)) as runtime:
        yield runtime


@pytest.fixture
def fresh(rt, base_weights):
    """Base weights, an empty store and the default config before each test."""
    rt.update_weights(base_weights)
    rt.replace_store(TrajectoryStore(max_tokens=None))
    rt.config = SpecConfig()
    return base_weights


def requests(num_prompts=4, n=4, salt=0, length=8):
    rng = np.random.default_rng(salt)
    return [RolloutRequest(f"p{salt}-{i}", rng.integers(3, 200, size=length + i).astype(np.int32), n) for i in range(num_prompts)]


def stored(rt, req):
    return rt.store_call(lambda s: [(d.token_ids.tolist(), d.logprobs.tolist()) for d in s.samples(req.prompt_id)]
                         if req.prompt_id in s else None)


def check_logprobs_under(ref, reqs, samples, atol=2e-4):
    for s in samples:
        np.testing.assert_allclose(s.logprobs, ref.logprobs(reqs[s.prompt_index].prompt_ids, s.token_ids), atol=atol)


def test_first_step_is_plain_rollout_and_records_drafts(rt, fresh):
    reqs = requests()
    result = rt.step(reqs, SAMPLING, MAX_LEN)
    assert len(result.samples) == 16
    assert [s.prompt_index for s in result.samples] == [i for i in range(4) for _ in range(4)]  # n contiguous
    assert all(s.draft_len == 0 and s.accepted_len == 0 for s in result.samples)
    assert result.stats.num_tokens_decoded == sum(s.response_len for s in result.samples)
    assert result.stats.mode == "spec-rl" and result.stats.num_rounds == 1
    for s in result.samples:
        assert len(s.logprobs) == s.response_len and np.all(s.logprobs <= 0)
        assert s.finish_reason in ("stop", "length")
    for req in reqs:
        assert len(stored(rt, req)) == 4


def test_infinite_lenience_with_unchanged_weights_reuses_everything(rt, fresh):
    rt.config = SpecConfig(lenience=math.inf)
    reqs = requests(salt=1)
    first = rt.step(reqs, SAMPLING, MAX_LEN)
    second = rt.step(reqs, SAMPLING, MAX_LEN)
    assert second.stats.full_reuse_ratio == 1.0 and second.stats.num_tokens_decoded == 0
    assert second.stats.continue_s == 0.0
    assert sorted(tuple(s.token_ids) for s in second.samples) == sorted(tuple(s.token_ids) for s in first.samples)


@pytest.mark.parametrize("pipelined", [True, False])
def test_lenience_one_with_unchanged_weights_accepts_nearly_everything(rt, fresh, pipelined):
    rt.config = SpecConfig(lenience=1.0, seed=3, pipelined=pipelined)
    reqs = requests(num_prompts=6, salt=2)
    rt.step(reqs, SAMPLING, MAX_LEN)
    second = rt.step(reqs, SAMPLING, MAX_LEN)
    assert second.stats.num_tokens_reused / second.stats.num_draft_tokens > 0.99
    assert second.stats.full_reuse_ratio > 0.9 and second.stats.pipelined is pipelined


@pytest.mark.parametrize("mode", ["spec-rl", "exact"])
def test_continuations_reuse_verify_kv_after_a_weight_update(rt, fresh, hf_reference, mode):
    rt.config = SpecConfig(mode=mode, lenience=1.0, seed=5)
    reqs = requests(num_prompts=4, salt=3)
    first = rt.step(reqs, SAMPLING, MAX_LEN)
    new_weights = hf_reference.perturbed(fresh, 0.2, seed=1)
    rt.update_weights(new_weights)
    probe = first.samples[0]
    stale = rt.run(rt.engine.generate("k", np.concatenate([reqs[0].prompt_ids, probe.token_ids]), 1, SAMPLING))
    assert stale.cached_tokens == 0  # no KV computed under the old weights survives the update
    second = rt.step(reqs, SAMPLING, MAX_LEN)
    assert second.stats.mode == mode and second.stats.policy_version == rt.policy_version
    assert [s for s in second.samples if not s.fully_reused], "a 0.2-scale weight change should reject some drafts"
    assert second.stats.kv_hit_ratio == 1.0  # every continuation served prompt + accepted - 1 from the verify KV
    check_logprobs_under(hf_reference(new_weights), reqs, second.samples)  # reused prefixes re-scored too


def test_vanilla_mode_goes_through_the_same_path_without_drafts(rt, fresh):
    rt.config = SpecConfig(mode="vanilla")
    reqs = requests(salt=4)
    rt.step(reqs, SAMPLING, MAX_LEN)
    second = rt.step(reqs, SAMPLING, MAX_LEN)
    assert all(s.draft_len == 0 for s in second.samples)
    assert second.stats.full_reuse_ratio == 0.0 and second.stats.verify_s == 0.0
    assert second.stats.mode == "vanilla" and math.isnan(second.stats.lenience)
    assert rt.step(reqs, SAMPLING, MAX_LEN, mode="spec-rl").stats.num_with_draft == 16  # per-step override


def _seed(rt, req, token_ids, logprobs):
    rt.store_call(lambda s: s.put(req.prompt_id, req.prompt_ids, [Response(np.asarray(token_ids, np.int32), np.asarray(logprobs, np.float32))]))


def test_unusable_stored_drafts_are_dropped_not_fatal(rt, fresh):
    req = requests(num_prompts=1, n=1, salt=5)[0]
    _seed(rt, req, [3, rt.engine.limits.vocab_size + 7], [-1.0, -1.0])  # e.g. from a snapshot of another model
    result = rt.step([req], SAMPLING, MAX_LEN)
    assert result.stats.num_drafts_dropped == 1 and result.samples[0].draft_len == 0
    long = list(range(3, 3 + MAX_LEN + 2))
    _seed(rt, req, long, [-1.0] * len(long))
    result = rt.step([req], SAMPLING, MAX_LEN)  # a longer draft is cut to this step's budget
    assert result.samples[0].draft_len == MAX_LEN


def test_bad_requests_are_refused_before_anything_changes(rt, fresh):
    reqs = requests(num_prompts=2, n=2, salt=7)
    rt.step(reqs, SAMPLING, MAX_LEN)
    before = [stored(rt, r) for r in reqs]
    num_steps = rt.num_steps
    impostor = RolloutRequest(reqs[1].prompt_id, reqs[1].prompt_ids[::-1].copy(), 2)
    newcomer = requests(num_prompts=1, n=2, salt=70)[0]
    with pytest.raises(ValueError, match=reqs[1].prompt_id):  # the collision is found before the step records
        rt.step([newcomer, impostor], SAMPLING, MAX_LEN)
    assert newcomer.prompt_id not in rt.store_call(lambda s: list(s.prompt_ids()))  # nothing recorded
    with pytest.raises(ValueError, match="twice"):
        rt.step([reqs[0], reqs[0]], SAMPLING, MAX_LEN)
    with pytest.raises(ValueError, match="context length"):
        rt.step(reqs, SAMPLING, rt.engine.limits.context_len)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        rt.step([RolloutRequest("v", np.array([1, rt.engine.limits.vocab_size]), 1)], SAMPLING, MAX_LEN)
    with pytest.raises(ValueError, match="lossless only for temperature 1"):
        rt.step(reqs, SamplingConfig(top_p=0.9), MAX_LEN, mode="exact")
    with pytest.raises(ValueError, match="mode must be one of"):
        rt.step(reqs, SAMPLING, MAX_LEN, mode="fast")
    assert [stored(rt, r) for r in reqs] == before
    assert not any(rt.store_call(lambda s: s.is_locked(r.prompt_id)) for r in reqs)
    assert rt.num_steps <= num_steps + 1  # the collision step was numbered; the others never started


def test_identical_and_prefix_drafts_share_one_verify_request(rt, fresh):
    rt.config = SpecConfig(lenience=math.inf)
    req = RolloutRequest("dedupe", np.arange(10, 22, dtype=np.int32), 4)
    long = rt.run(rt.engine.generate("k", req.prompt_ids, 12, SamplingConfig(ignore_eos=True)))
    other = rt.run(rt.engine.generate("k", req.prompt_ids, 6, SamplingConfig(ignore_eos=True)))
    rt.store_call(lambda s: s.put(req.prompt_id, req.prompt_ids, [
        Response(long.token_ids, long.logprobs), Response(long.token_ids.copy(), long.logprobs.copy()),
        Response(long.token_ids[:5].copy(), long.logprobs[:5].copy()), Response(other.token_ids, other.logprobs),
    ]))
    result = rt.step([req], SAMPLING, MAX_LEN)
    unique = 1 if np.array_equal(other.token_ids, long.token_ids[:6]) else 2
    assert result.stats.num_verify_requests == unique
    for s in result.samples:  # each slot's re-scored prefix equals a verify of that draft alone
        alone = rt.run(rt.engine.verify("k", req.prompt_ids, s.token_ids[: s.draft_len])).logprobs
        np.testing.assert_allclose(s.logprobs[: s.draft_len], alone, atol=1e-5)


def test_concurrent_steps_and_weight_updates_never_mix_policies(rt, fresh, hf_reference):
    rt.config = SpecConfig(lenience=1.0, seed=11)
    weights = {0: fresh}
    for v in range(1, 5):
        weights[v] = hf_reference.perturbed(fresh, 0.1, seed=100 + v)
    start_version = rt.policy_version
    results, errors = [], []

    def client(salt):
        reqs = requests(num_prompts=3, n=3, salt=salt)
        try:
            for _ in range(4):
                results.append((reqs, rt.step(reqs, SAMPLING, MAX_LEN)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(20 + i,)) for i in range(4)]
    for t in threads:
        t.start()
    for v in range(1, 5):
        time.sleep(0.2)
        assert rt.update_weights(weights[v]) == start_version + v
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 16
    versions = {r.stats.policy_version for _, r in results}
    assert len(versions) > 1  # the updates really raced the steps
    refs = {v: hf_reference(weights[v - start_version]) for v in versions}
    for reqs, result in results:  # every sample is entirely under its step's version
        check_logprobs_under(refs[result.stats.policy_version], reqs, result.samples)
    for reqs, _ in results:  # and so is every recorded draft
        for req in reqs:
            versions_stored = rt.store_call(lambda s: {int(v) for d in s.samples(req.prompt_id) for v in d.versions})
            assert len(versions_stored) == 1


def test_an_interrupting_update_resumes_steps_under_the_new_policy(rt, fresh, hf_reference):
    rt.config = SpecConfig(mode="exact", seed=2)
    reqs = requests(num_prompts=2, n=4, salt=30, length=6)
    long = SamplingConfig(ignore_eos=True)
    out = []
    step = threading.Thread(target=lambda: out.append(rt.step(reqs, long, 400)))
    step.start()
    time.sleep(1.0)  # decoding 400 tokens takes several seconds here
    new = hf_reference.perturbed(fresh, 0.05, seed=7)
    t0 = time.perf_counter()
    version = rt.update_weights(new, interrupt=True)
    waited = time.perf_counter() - t0
    step.join(timeout=300)
    (result,) = out
    assert result.stats.num_rounds == 2 and result.stats.policy_version == version
    assert result.stats.parked_s > 0
    assert all(s.response_len == 400 for s in result.samples)
    check_logprobs_under(hf_reference(new), reqs, result.samples)  # nothing of the old policy survives
    assert result.stats.num_tokens_decoded_all_rounds > result.stats.num_tokens_decoded  # partial work was reused
    assert waited < result.stats.total_s


def test_an_update_that_cannot_wait_is_refused_and_changes_nothing(rt, fresh, hf_reference):
    reqs = requests(num_prompts=2, n=2, salt=40, length=6)
    out = []
    step = threading.Thread(target=lambda: out.append(rt.step(reqs, SamplingConfig(ignore_eos=True), 300)))
    step.start()
    time.sleep(0.5)
    version = rt.policy_version
    with pytest.raises(GateTimeout, match="still in flight"):
        rt.update_weights(hf_reference.perturbed(fresh, 0.05, seed=8), wait_s=0.05)
    assert rt.policy_version == version and not rt.poisoned
    step.join(timeout=300)
    assert out[0].stats.policy_version == version and out[0].stats.num_rounds == 1
