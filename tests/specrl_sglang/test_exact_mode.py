"""Exact mode is lossless: on a real CPU sglang.Engine, samples drawn from a fixed draft under the
exact rule follow the policy's own distribution (chi-square against the distribution computed
with transformers, fixed seed), while the lossy SPEC-RL rule measurably does not.

Set-up: the tiny test model with its final norm scaled by 5 (a peaked next-token distribution:
top token ~0.44 after the test prompt, so both the accept and the residual path are exercised),
N = 2000 samples of one prompt, every slot offered the same 2-token draft (y1, y2) = the most
likely continuation, max_response_len 2, EOS ignored. Test: Pearson chi-square over the tokens
with expected count >= 5 plus one "other" bin; exact mode must not be rejected at p < 1e-3.
"""

import math

import numpy as np
import pytest
from scipy.stats import chisquare

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig

PROMPT = np.array([5, 9, 13, 17, 21, 25, 29, 33], dtype=np.int32)
N = 2000
SAMPLING = SamplingConfig(ignore_eos=True)


@pytest.fixture(scope="module")
def peaked(base_weights):
    return [(k, v * 5.0 if k == "model.norm.weight" else v) for k, v in base_weights]


@pytest.fixture(scope="module")
def rt(tiny_model_path, peaked):
    config = EngineConfig(model_path=tiny_model_path, max_total_tokens=65536, random_seed=1)
    with RolloutRuntime.in_process(config) as runtime:
        runtime.update_weights(peaked)
        yield runtime


@pytest.fixture(scope="module")
def reference(hf_reference, peaked):
    ref = hf_reference(peaked)
    p1 = ref.next_token_probs(PROMPT)
    y1 = int(np.argmax(p1))
    p2 = ref.next_token_probs(np.append(PROMPT, y1))
    return p1, y1, p2, int(np.argmax(p2))


def draw(rt, mode, draft, draft_logprobs, lenience=1.0):
    req = RolloutRequest(f"exact-{mode}-{lenience}", PROMPT, N)
    store = TrajectoryStore(max_tokens=None)
    store.put(req.prompt_id, PROMPT, [Response(np.array(draft, np.int32), np.array(draft_logprobs, np.float32))] * N)
    rt.replace_store(store)
    rt.config = SpecConfig(mode=mode, lenience=lenience, seed=7, record=False)
    return rt.step([req], SAMPLING, 2)


def chi2_pvalue(observed_tokens, probs):
    counts = np.bincount(np.asarray(observed_tokens), minlength=probs.shape[0])
    n = counts.sum()
    keep = probs * n >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(probs[keep] * n, probs[~keep].sum() * n)
    return chisquare(observed, expected).pvalue


def test_exact_mode_first_and_second_tokens_follow_the_policy(rt, reference):
    p1, y1, p2, y2 = reference
    result = draw(rt, "exact", [y1, y2], [-1.0, -1.0])  # p_old is irrelevant to the exact rule
    tokens = np.array([s.token_ids for s in result.samples])
    assert tokens.shape == (N, 2)
    assert chi2_pvalue(tokens[:, 0], p1) > 1e-3
    after_y1 = tokens[tokens[:, 0] == y1, 1]  # second position, given the first draft token was kept
    assert after_y1.shape[0] > 500 and chi2_pvalue(after_y1, p2) > 1e-3
    assert abs(float(np.mean(tokens[:, 0] == y1)) - p1[y1]) < 4 * math.sqrt(p1[y1] * (1 - p1[y1]) / N)
    for s, (z1, z2) in zip(result.samples, tokens):  # the banned token never appears where it was rejected
        if s.accepted_len == 0:
            assert z1 != y1
        elif s.accepted_len == 1:
            assert z1 == y1 and z2 != y2
    assert result.stats.kv_hit_ratio >= 0.99  # continuations still reuse the verify pass's KV
    assert result.stats.num_verify_requests == 1


def test_exact_mode_log_probs_are_the_policys_marginals(rt, reference, hf_reference, peaked):
    p1, y1, p2, y2 = reference
    result = draw(rt, "exact", [y1, y2], [-1.0, -1.0])
    for s in result.samples[:50]:
        want = [math.log(p1[s.token_ids[0]]), math.log(hf_reference(peaked).next_token_probs(np.append(PROMPT, s.token_ids[0]))[s.token_ids[1]])]
        np.testing.assert_allclose(s.logprobs, want, atol=2e-4)


def test_the_lossy_rule_is_detectably_not_the_policy(rt, reference):
    # A draft whose producing policy gave y1 less mass than the current one is always accepted by
    # SPEC-RL's rule (ratio > 1): the first token is y1 in every sample instead of ~44%.
    p1, y1, p2, y2 = reference
    result = draw(rt, "spec-rl", [y1, y2], [math.log(p1[y1] / 2), math.log(p2[y2] / 2)])
    tokens = np.array([s.token_ids for s in result.samples])
    assert chi2_pvalue(tokens[:, 0], p1) < 1e-6


def test_exact_mode_refuses_other_sampling_settings_before_anything_is_sent(rt, reference):
    req = RolloutRequest("exact-refused", PROMPT, 2)
    steps = rt.num_steps
    for sampling in (SamplingConfig(top_p=0.9), SamplingConfig(temperature=0.7), SamplingConfig(top_k=5),
                     SamplingConfig(min_p=0.1)):
        with pytest.raises(ValueError, match="lossless only for temperature 1"):
            rt.step([req], sampling, 2, mode="exact")
    assert rt.num_steps == steps
