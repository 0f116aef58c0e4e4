"""The workload's command-line flags, shared by `demo`, `bench rollout`, `bench quality` and
`bench fidelity` (one owner: each flag, its help and its default is written here once)."""

from __future__ import annotations

import argparse
import math

from specrl_sglang.workload.config import MODEL_SIZES, WorkloadConfig
from specrl_sglang.workload.tasks import TASK_NAMES


# flag -> WorkloadConfig field; flags default to None = the task's default (WorkloadConfig.for_task).
_FLAGS = {"model_size": "model_size", "epochs": "epochs", "num_prompts": "num_prompts",
          "prompts_per_step": "prompts_per_step", "samples": "samples_per_prompt",
          "max_response_len": "max_response_len", "lenience": "lenience", "lr": "lr", "seed": "seed",
          "cache_dir": "cache_dir"}


def add_workload_args(p: argparse.ArgumentParser, **defaults) -> None:
    """The workload flags; `defaults` (WorkloadConfig field -> value) replace the task's defaults
    for one command (e.g. a shorter benchmark)."""
    d = WorkloadConfig()
    g = p.add_argument_group("workload (defaults depend on --task)")
    g.add_argument("--task", choices=TASK_NAMES, default=d.task, help=f"default {d.task}")
    g.add_argument("--model-size", choices=sorted(MODEL_SIZES), default=None, help=f"default {d.model_size}")
    g.add_argument("--epochs", type=int, default=None, help=f"default {defaults.get('epochs', d.epochs)} for {d.task}")
    g.add_argument("--num-prompts", type=int, default=None, help=f"default {d.num_prompts} for {d.task}")
    g.add_argument("--prompts-per-step", type=int, default=None, help=f"default {d.prompts_per_step} for {d.task}")
    g.add_argument("--samples", type=int, default=None, help=f"samples per prompt, the GRPO group (default {d.samples_per_prompt})")
    g.add_argument("--max-response-len", type=int, default=None, help=f"default {d.max_response_len} for {d.task}")
    g.add_argument("--lenience", type=float, default=None, help="spec-rl lenience l >= 1 (default e^0.5; 'inf' reuses all)")
    g.add_argument("--lr", type=float, default=None, help=f"GRPO learning rate (default {d.lr} for {d.task})")
    g.add_argument("--seed", type=int, default=None, help="RL seed: problems, order, sampling, acceptance (default 0)")
    g.add_argument("--warmup-steps", type=int, default=None, help=f"supervised warm-up steps, cached (default {d.warmup.steps} for {d.task})")
    g.add_argument("--cache-dir", default=None, help=f"where warm checkpoints are cached (default {d.cache_dir})")
    p.set_defaults(workload_defaults=defaults)


def workload_from_args(args: argparse.Namespace, **overrides) -> WorkloadConfig:
    """A WorkloadConfig from parsed flags (SystemExit with the reason for bad values)."""
    given = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if "lenience" in given and math.isnan(given["lenience"]):
        raise SystemExit("--lenience must be a number >= 1")
    warmup = {"steps": args.warmup_steps} if args.warmup_steps is not None else {}
    try:
        return WorkloadConfig.for_task(args.task, **{**getattr(args, "workload_defaults", {}), **given, **overrides},
                                       warmup=warmup)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"error: {exc}") from None
