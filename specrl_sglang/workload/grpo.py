"""GRPO in torch for the demo: group-normalised advantages and a clipped policy-gradient step.

The rollout log-probs returned by SpecRollout (current policy's log-probs for reused prefixes and
sampled continuations alike) serve as the behaviour log-probs of the importance ratio, as OpenRLHF
and verl do for their rollout-correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from specrl_sglang.workload.policy import Policy


@dataclass(frozen=True)
class GRPOConfig:
    clip_eps: float = 0.2
    max_grad_norm: float = 1.0
    adv_eps: float = 1e-6
    micro_batch_size: int = 16  # samples per forward/backward, grouped by length (less padding)

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")


def prompt_groups(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """The step's rewards as (num_prompts, group_size): a step returns each prompt's samples
    contiguously, in request order. The one owner of that grouping (advantages, per-prompt means)."""
    rewards = np.asarray(rewards)
    if rewards.ndim != 1 or group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(f"rewards of shape {rewards.shape} do not split into groups of {group_size}")
    return rewards.reshape(-1, group_size)


def group_advantages(rewards: np.ndarray, group_size: int, eps: float = 1e-6) -> np.ndarray:
    """(r - mean(group)) / (std(group) + eps) for contiguous groups of `group_size` samples."""
    groups = prompt_groups(rewards, group_size)
    adv = (groups - groups.mean(axis=1, keepdims=True)) / (groups.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1).astype(np.float32)


def grpo_step(
    policy: Policy,
    prompts: Sequence[np.ndarray],
    responses: Sequence[np.ndarray],
    rollout_logprobs: Sequence[np.ndarray],
    advantages: np.ndarray,
    config: GRPOConfig = GRPOConfig(),
) -> dict[str, float]:
    """One optimizer step of the clipped GRPO objective (token mean over the whole batch); returns
    loss statistics. The batch is cut into micro-batches of similar length (sorted by sequence
    length) whose gradients accumulate, each loss scaled by the whole batch's token count, so the
    step is the full batch's step with less padding."""
    torch = policy.torch
    num_tokens = sum(len(r) for r in responses)
    if num_tokens == 0:
        raise ValueError("grpo_step needs at least one response token")
    order = np.argsort([len(p) + len(r) for p, r in zip(prompts, responses)], kind="stable")
    advantages = np.asarray(advantages, dtype=np.float32)
    policy.optimizer.zero_grad()
    loss_sum = mismatch_sum = 0.0
    for start in range(0, len(order), config.micro_batch_size):
        idx = order[start : start + config.micro_batch_size]
        lp, mask = policy.token_logprobs([prompts[i] for i in idx], [responses[i] for i in idx])
        old = torch.zeros_like(lp)
        for row, i in enumerate(idx):
            old[row, len(prompts[i]) : len(prompts[i]) + len(rollout_logprobs[i])] = torch.from_numpy(
                np.asarray(rollout_logprobs[i], dtype=np.float32))
        adv = torch.from_numpy(advantages[idx])[:, None]
        ratio = torch.exp((lp - old) * mask)
        surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv)
        loss = -(surrogate * mask).sum() / num_tokens
        loss.backward()
        loss_sum += float(loss.detach())
        with torch.no_grad():
            mismatch_sum += float(((lp - old).abs() * mask).sum()) / num_tokens
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
    policy.optimizer.step()
    return {"loss": loss_sum, "grad_norm": float(grad_norm), "logprob_mismatch": mismatch_sum}
