"""One arm of the demo: GRPO training with rollouts served by SpecRollout (vanilla or speculative)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.demo.config import ARM_MODES, DemoConfig
from specrl_sglang.demo.grpo import grpo_step, group_advantages
from specrl_sglang.demo.policy import Policy
from specrl_sglang.demo.task import Problem, reward
from specrl_sglang.rollout_types import RolloutRequest, Sample
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig


@dataclass
class ArmLog:
    """Per-step records of one arm (lists aligned by step)."""

    arm: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def epoch_summary(self, epoch: int) -> dict[str, float]:
        rows = [s for s in self.steps if s["epoch"] == epoch]
        num_samples = sum(r["num_samples"] for r in rows)
        return {
            "epoch": epoch,
            "reward": float(np.mean([r["reward"] for r in rows])),
            "rollout_s": float(sum(r["rollout_s"] for r in rows)),
            "full_reuse_ratio": sum(r["num_fully_reused"] for r in rows) / num_samples,
            "tokens_decoded": int(sum(r["num_tokens_decoded"] for r in rows)),
            "tokens_reused": int(sum(r["num_tokens_reused"] for r in rows)),
            "mean_accepted_len": float(np.mean([r["mean_accepted_len"] for r in rows])),
        }


def epoch_batches(
    config: DemoConfig, problems: list[Problem], prompt_ids: dict[str, np.ndarray], epoch: int
) -> Iterator[tuple[list[Problem], list[RolloutRequest]]]:
    """The epoch's step batches: problems shuffled by (seed, epoch), so every arm sees the same order."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(problems))
    for start in range(0, len(order), config.prompts_per_step):
        batch = [problems[i] for i in order[start : start + config.prompts_per_step]]
        yield batch, [RolloutRequest(p.prompt_id, prompt_ids[p.prompt_id], config.samples_per_prompt) for p in batch]


def sample_rewards(policy: Policy, batch: list[Problem], samples: list[Sample]) -> np.ndarray:
    """The task reward of every sample (0 for a truncated one), float32 [num_samples]."""
    return np.array(
        [reward(policy.decode(s.token_ids), batch[s.prompt_index].answer, s.finish_reason == "stop") for s in samples],
        dtype=np.float32,
    )


def train_on_samples(
    policy: Policy, requests: list[RolloutRequest], samples: list[Sample], rewards: np.ndarray, group_size: int
) -> dict[str, float]:
    """One GRPO step on a rollout step's samples (rollout log-probs as behaviour log-probs)."""
    return grpo_step(
        policy,
        [requests[s.prompt_index].prompt_ids for s in samples],
        [s.token_ids for s in samples],
        [s.logprobs for s in samples],
        group_advantages(rewards, group_size),
    )


def run_arm(
    arm: str,
    config: DemoConfig,
    runtime: RolloutRuntime,
    warm_path: str,
    problems: list[Problem],
    progress=None,
) -> ArmLog:
    """Train from the warm checkpoint for `config.epochs` epochs; the engine gets new weights each step."""
    policy = Policy(warm_path, seed=config.seed, lr=config.lr)
    runtime.update_weights(policy.named_weights())  # every arm starts from identical weights, cold KV
    runtime.replace_store(TrajectoryStore(max_tokens=None))
    runtime.config = SpecConfig(mode=ARM_MODES[arm], lenience=config.lenience, seed=config.seed)
    runtime.num_steps = 0  # the same acceptance randomness stream in every arm
    sampling = SamplingConfig(temperature=config.temperature)
    prompt_ids = {p.prompt_id: policy.encode(p.prompt) for p in problems}
    log = ArmLog(arm)
    step = 0
    for epoch in range(config.epochs):
        for batch, requests in epoch_batches(config, problems, prompt_ids, epoch):
            result = runtime.step(requests, sampling, config.max_response_len)
            rewards = sample_rewards(policy, batch, result.samples)
            t = time.perf_counter()
            losses = train_on_samples(policy, requests, result.samples, rewards, config.samples_per_prompt)
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            runtime.update_weights(policy.named_weights())
            sync_s = time.perf_counter() - t
            stats = result.stats
            log.steps.append(
                {
                    "arm": arm,
                    "epoch": epoch,
                    "step": step,
                    "reward": float(rewards.mean()),
                    "rollout_s": stats.total_s,
                    "train_s": train_s,
                    "sync_s": sync_s,
                    **{k: v for k, v in stats.to_dict().items() if k not in ("histogram_edges",)},
                    **losses,
                }
            )
            step += 1
            if progress is not None:
                progress.set_postfix(arm=arm, epoch=epoch, reward=f"{rewards.mean():.3f}", reuse=f"{stats.full_reuse_ratio:.2f}")
                progress.update(1)
    return log
