"""GRPO's grouping of a step's rewards by prompt (pure numpy; no engine)."""

import numpy as np
import pytest

from specrl_sglang.workload.grpo import group_advantages, prompt_groups


def test_group_advantages_are_normalised_per_group():
    adv = group_advantages(np.array([1.0, 0.0, 0.5, 0.5], dtype=np.float32), 2)
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0], atol=1e-4)
    with pytest.raises(ValueError, match="groups"):
        group_advantages(np.zeros(3, dtype=np.float32), 2)


def test_prompt_groups_keep_each_prompts_samples_contiguous_in_request_order():
    rewards = np.array([1.0, 1.0, 0.0, 0.0, 0.5, 1.0])
    groups = prompt_groups(rewards, 2)
    assert groups.shape == (3, 2)
    np.testing.assert_allclose(groups.mean(axis=1), [1.0, 0.0, 0.75])


@pytest.mark.parametrize("rewards, size", [(np.zeros(5), 2), (np.zeros(4), 0), (np.zeros((2, 2)), 2)])
def test_prompt_groups_refuse_rewards_that_do_not_split(rewards, size):
    with pytest.raises(ValueError, match="groups of"):
        prompt_groups(rewards, size)


def test_micro_batched_step_is_the_full_batch_step(tiny_model_path):
    """Length-sorted micro-batches accumulate the same gradient and statistics as one padded batch."""
    from specrl_sglang.workload.grpo import GRPOConfig, grpo_step
    from specrl_sglang.workload.policy import Policy

    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 200, int(rng.integers(3, 9))).astype(np.int32) for _ in range(7)]
    responses = [rng.integers(3, 200, int(rng.integers(1, 30))).astype(np.int32) for _ in range(7)]
    behaviour = [rng.normal(-3.0, 0.5, len(r)).astype(np.float32) for r in responses]
    advantages = rng.normal(0.0, 1.0, 7).astype(np.float32)
    results, grads = [], []
    for size in (64, 3):
        policy = Policy(tiny_model_path, seed=0)
        results.append(grpo_step(policy, prompts, responses, behaviour, advantages, GRPOConfig(micro_batch_size=size)))
        grads.append([p.grad.clone() for p in policy.model.parameters()])
    for key in ("loss", "grad_norm", "logprob_mismatch"):
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-4, abs=1e-6), key
    for full, micro in zip(*grads):
        np.testing.assert_allclose(micro.numpy(), full.numpy(), rtol=1e-3, atol=1e-6)


def test_grpo_refuses_bad_settings():
    from specrl_sglang.workload.grpo import GRPOConfig

    with pytest.raises(ValueError, match="micro_batch_size"):
        GRPOConfig(micro_batch_size=0)
