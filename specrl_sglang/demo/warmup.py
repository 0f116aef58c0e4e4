"""Build the demo's tiny policy and warm it up with a short supervised phase on the task.

The warmed checkpoint is cached on disk by (model spec, task, warm-up settings), so the second run
of the demo (and the rollout benchmark) starts in seconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from specrl_sglang.demo.config import DemoConfig
from specrl_sglang.demo.task import LETTERS, TaskConfig, corpus, make_problem
from specrl_sglang.tiny_model import build_tiny_model


def task_config(config: DemoConfig) -> TaskConfig:
    return TaskConfig(num_prompts=config.num_prompts, seed=config.seed)


def warm_checkpoint(config: DemoConfig, log=print) -> Path:
    """Path of a checkpoint of the tiny policy after `config.warmup_steps` SFT steps (built if absent)."""
    from specrl_sglang.demo.policy import Policy

    task = task_config(config)
    base = build_tiny_model(Path(config.cache_dir) / f"base-{config.model_size}", corpus(task), config.model_spec)
    key = hashlib.sha1(
        json.dumps([asdict(config.model_spec), config.warmup_steps, config.warmup_batch, config.seed, asdict(task), LETTERS]).encode()
    ).hexdigest()[:12]
    out = Path(config.cache_dir) / f"warm-{config.model_size}-{key}"
    if (out / "config.json").exists():
        return out
    policy = Policy(str(base), seed=config.seed, lr=1e-3)
    rng = np.random.default_rng(config.seed + 7)
    loss = float("nan")
    for step in range(config.warmup_steps):
        prompts, targets = [], []
        for _ in range(config.warmup_batch):
            n = int(rng.integers(task.min_letters, task.max_letters + 1))
            problem = make_problem([LETTERS[i] for i in rng.integers(0, len(LETTERS), n)])
            prompts.append(policy.encode(problem.prompt))
            targets.append(np.append(policy.encode(problem.answer), policy.eos_id).astype(np.int32))
        loss = policy.sft_step(prompts, targets)
        if step % 100 == 0 or step == config.warmup_steps - 1:
            log(f"warm-up step {step + 1}/{config.warmup_steps}: token NLL {loss:.3f}")
    tmp = out.with_name(out.name + ".tmp")
    policy.model.save_pretrained(tmp)
    policy.tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out
