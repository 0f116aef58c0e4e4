"""One arm of the demo: GRPO training with rollouts served by SpecRollout (vanilla or speculative)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.demo.config import DemoConfig
from specrl_sglang.demo.grpo import grpo_step, group_advantages
from specrl_sglang.demo.policy import Policy
from specrl_sglang.demo.task import Problem, reward
from specrl_sglang.engine import RolloutEngine
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_rollout import SpecConfig, SpecRollout


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


def run_arm(
    arm: str,
    config: DemoConfig,
    engine: RolloutEngine,
    warm_path: str,
    problems: list[Problem],
    progress=None,
) -> ArmLog:
    """Train from the warm checkpoint for `config.epochs` epochs; the engine gets new weights each step."""
    policy = Policy(warm_path, seed=config.seed, lr=config.lr)
    engine.update_weights(policy.named_weights())  # both arms start from identical weights, cold KV
    spec = SpecConfig(lenience=config.lenience, enabled=(arm == "spec"), seed=config.seed)
    rollout = SpecRollout(engine, TrajectoryStore(max_tokens=None), spec)
    sampling = SamplingConfig(temperature=config.temperature)
    prompt_ids = {p.prompt_id: policy.encode(p.prompt) for p in problems}
    log = ArmLog(arm)
    step = 0
    for epoch in range(config.epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(problems))  # same for both arms
        for start in range(0, len(order), config.prompts_per_step):
            batch = [problems[i] for i in order[start : start + config.prompts_per_step]]
            requests = [RolloutRequest(p.prompt_id, prompt_ids[p.prompt_id], config.samples_per_prompt) for p in batch]
            result = rollout.step(requests, sampling, config.max_response_len)
            rewards = np.array(
                [
                    reward(policy.decode(s.token_ids), batch[s.prompt_index].answer, s.finish_reason == "stop")
                    for s in result.samples
                ],
                dtype=np.float32,
            )
            t = time.perf_counter()
            prompts = [requests[s.prompt_index].prompt_ids for s in result.samples]
            losses = grpo_step(
                policy,
                prompts,
                [s.token_ids for s in result.samples],
                [s.logprobs for s in result.samples],
                group_advantages(rewards, config.samples_per_prompt),
            )
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            engine.update_weights(policy.named_weights())
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
