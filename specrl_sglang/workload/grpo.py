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


def group_advantages(rewards: np.ndarray, group_size: int, eps: float = 1e-6) -> np.ndarray:
    """(r - mean(group)) / (std(group) + eps) for contiguous groups of `group_size` samples."""
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
    groups = rewards.reshape(-1, group_size)
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
    """One optimizer step of the clipped GRPO objective (token-mean); returns loss statistics."""
    torch = policy.torch
    lp, mask = policy.token_logprobs(prompts, responses)
    old = torch.zeros_like(lp)
    for i, (p, r) in enumerate(zip(prompts, rollout_logprobs)):
        old[i, len(p) : len(p) + len(r)] = torch.from_numpy(np.asarray(r, dtype=np.float32))
    adv = torch.from_numpy(advantages)[:, None]
    ratio = torch.exp((lp - old) * mask)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv)
    loss = -(surrogate * mask).sum() / mask.sum()
    policy.optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
    policy.optimizer.step()
    with torch.no_grad():
        mismatch = ((lp - old).abs() * mask).sum() / mask.sum()
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "logprob_mismatch": float(mismatch)}
