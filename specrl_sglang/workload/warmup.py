"""Build the tiny policy for a task and warm it up with a short supervised phase (cached on disk).

The checkpoint is keyed by (task, model spec, warm-up settings), not by the RL seed: every run of
the demo and of the benchmarks, whatever its seed, starts from the same warm policy, so the second
run starts in seconds. Written to a temporary sibling directory and renamed into place, so a crash
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from specrl_sglang.tiny_model import build_tiny_model
from specrl_sglang.workload.config import WorkloadConfig
from specrl_sglang.workload.tasks import get_task

WARMUP_SEED = 0


def warm_checkpoint(config: WorkloadConfig, log: Callable[[str], None] = print) -> Path:
    """Path of the task's tiny policy after `config.warmup.steps` SFT steps (built if absent)."""
    from specrl_sglang.workload.policy import Policy

    task = get_task(config.task)
    spec = dataclasses.replace(config.model_spec, vocab_size=task.vocab_size)
    root = Path(config.cache_dir)
    base = build_tiny_model(root / f"base-{task.name}-{config.model_size}", task.corpus(WARMUP_SEED), spec)
    key = hashlib.sha1(json.dumps([task.name, task.fingerprint(), dataclasses.asdict(spec),
                                   dataclasses.asdict(config.warmup), WARMUP_SEED]).encode()).hexdigest()[:12]
    out = root / f"warm-{task.name}-{config.model_size}-{key}"
    if (out / "config.json").exists():
        return out
    policy = Policy(str(base), seed=WARMUP_SEED, lr=config.warmup.lr)
    rng = np.random.default_rng(WARMUP_SEED + 7)
    t0 = time.perf_counter()
    for step in range(config.warmup.steps):
        for group in policy.optimizer.param_groups:
            group["lr"] = config.warmup.lr_at(step + 1)
        problems = [task.training_problem(rng) for _ in range(config.warmup.batch)]
        prompts = [policy.encode(p.prompt) for p in problems]
        targets = [np.append(policy.encode(task.target(p)), policy.eos_id).astype(np.int32) for p in problems]
        loss = policy.sft_step(prompts, targets, max_grad_norm=config.warmup.max_grad_norm)
        if step % 100 == 0 or step == config.warmup.steps - 1:
            log(f"warm-up step {step + 1}/{config.warmup.steps}: token NLL {loss:.3f} ({time.perf_counter() - t0:.0f} s)")
    tmp = out.with_name(out.name + ".tmp")
    policy.model.save_pretrained(tmp)
    policy.tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out
