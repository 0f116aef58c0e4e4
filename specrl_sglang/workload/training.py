"""The RL loop of the workload: GRPO on the task, rollouts served by a RolloutRuntime.

`Workload` prepares a run (task, warm checkpoint, problems, prompt token ids and identities);
`run_arm` trains a fresh copy of the warm policy for the configured epochs with one rollout mode,
pushing the new weights to the runtime after every optimizer step. Every arm of a comparison sees
the same warm weights, the same problems in the same order (shuffled by (seed, epoch)) and the
same acceptance randomness stream; only the rollout mode differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.prompt_identity import prompt_key
from specrl_sglang.rollout_types import RolloutRequest, Sample
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig
from specrl_sglang.workload.config import WorkloadConfig
from specrl_sglang.workload.grpo import group_advantages, grpo_step, prompt_groups
from specrl_sglang.workload.tasks import get_task
from specrl_sglang.workload.warmup import warm_checkpoint


class Batch(NamedTuple):
    problems: list[Any]
    requests: list[RolloutRequest]


class Workload:
    """A prepared workload; cheap to share between arms (read-only after construction)."""

    def __init__(self, config: WorkloadConfig, log: Callable[[str], None] = print) -> None:
        from transformers import AutoTokenizer

        self.config = config
        self.task = get_task(config.task)
        self.warm_path = str(warm_checkpoint(config, log))
        self.tokenizer = AutoTokenizer.from_pretrained(self.warm_path)
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.problems = self.task.problems(config.num_prompts, config.seed)
        self.prompt_ids = [np.asarray(self.tokenizer.encode(p.prompt, add_special_tokens=False), np.int32)
                           for p in self.problems]
        self.prompt_keys = [prompt_key(p.answer, ids) for p, ids in zip(self.problems, self.prompt_ids)]
        self.sampling = SamplingConfig(temperature=config.temperature)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's step batches, problems shuffled by (seed, epoch): every arm sees the same order."""
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.problems))
        n = self.config.samples_per_prompt
        for start in range(0, len(order), self.config.prompts_per_step):
            idx = order[start : start + self.config.prompts_per_step]
            yield Batch([self.problems[i] for i in idx],
                        [RolloutRequest(self.prompt_keys[i], self.prompt_ids[i], n) for i in idx])

    def decode(self, token_ids: np.ndarray) -> str:
        return self.tokenizer.decode([int(t) for t in token_ids if int(t) != self.eos_id])

    def rewards(self, batch: Batch, samples: list[Sample]) -> np.ndarray:
        """The task reward of every sample (0 for a truncated one), float32 [num_samples]."""
        return np.array([self.task.reward(self.decode(s.token_ids), batch.problems[s.prompt_index], s.finish_reason == "stop")
                         for s in samples], dtype=np.float32)

    def new_policy(self):
        from specrl_sglang.workload.policy import Policy

        return Policy(self.warm_path, seed=self.config.seed, lr=self.config.lr)


def grpo_update(policy, batch: Batch, samples: list[Sample], rewards: np.ndarray, group_size: int) -> dict[str, float]:
    """One GRPO step on a rollout step's samples (their rollout log-probs as behaviour log-probs)."""
    return grpo_step(policy, [batch.requests[s.prompt_index].prompt_ids for s in samples],
                     [s.token_ids for s in samples], [s.logprobs for s in samples],
                     group_advantages(rewards, group_size))


def run_arm(workload: Workload, runtime: RolloutRuntime, mode: str, lenience: float | None = None,
            on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train a fresh warm policy for `config.epochs` epochs with rollouts in `mode`; one row per step.

    Resets the runtime's store, config (mode, lenience, seed) and step counter first, and pushes
    the warm weights, so consecutive arms on one runtime start alike (cold KV, no drafts).
    A row's `prompt_rewards` maps each of the step's prompt ids to its samples' mean reward."""
    config = workload.config
    policy = workload.new_policy()
    runtime.update_weights(policy.named_weights())
    runtime.replace_store(TrajectoryStore(max_tokens=None))
    runtime.config = SpecConfig(mode=mode, lenience=config.lenience if lenience is None else lenience, seed=config.seed)
    runtime.num_steps = 0
    rows: list[dict[str, Any]] = []
    for epoch in range(config.epochs):
        for batch in workload.batches(epoch):
            result = runtime.step(batch.requests, workload.sampling, config.max_response_len)
            rewards = workload.rewards(batch, result.samples)
            t = time.perf_counter()
            losses = grpo_update(policy, batch, result.samples, rewards, config.samples_per_prompt)
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            runtime.update_weights(policy.named_weights())
            sync_s = time.perf_counter() - t
            stats = result.stats.to_dict()
            stats.pop("histogram_edges")
            per_prompt = prompt_groups(rewards, config.samples_per_prompt).mean(axis=1)
            row = {"mode": mode, "epoch": epoch, "step": len(rows), "reward": float(rewards.mean()),
                   "prompt_rewards": {r.prompt_id: float(m) for r, m in zip(batch.requests, per_prompt, strict=True)},
                   "rollout_s": result.stats.total_s, "train_s": train_s, "sync_s": sync_s,
                   "accepted_lens": [s.accepted_len for s in result.samples if s.draft_len],
                   **stats, **losses}
            rows.append(row)
            if on_step is not None:
                on_step(row)
    return rows


def evaluate(workload: Workload, runtime: RolloutRuntime) -> float:
    """Mean reward of fresh samples of the runtime's current policy: every prompt of the workload,
    `samples_per_prompt` each, vanilla, nothing recorded. This is the policy's quality; a lossy
    arm's own rollout rewards are not (they lean toward the drafts' older policy). Restores the
    runtime's config afterwards; the store is not touched."""
    config = workload.config
    saved = runtime.config
    runtime.config = SpecConfig(mode="vanilla", record=False, seed=config.seed)
    try:
        rewards = []
        n, per_step = config.samples_per_prompt, config.prompts_per_step
        for start in range(0, len(workload.problems), per_step):
            idx = range(start, min(start + per_step, len(workload.problems)))
            batch = Batch([workload.problems[i] for i in idx],
                          [RolloutRequest(workload.prompt_keys[i], workload.prompt_ids[i], n) for i in idx])
            result = runtime.step(batch.requests, workload.sampling, config.max_response_len)
            rewards.append(workload.rewards(batch, result.samples))
        return float(np.concatenate(rewards).mean())
    finally:
        runtime.config = saved
