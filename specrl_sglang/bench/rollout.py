"""`specrl-sglang bench rollout`: vanilla vs. speculative rollouts, side by side, same weights.

For every training step both arms roll out the same prompts under the same policy weights on the
same engine: first vanilla (no drafts), then - after a KV flush, so the speculative arm gets no
help from the vanilla arm's cache - SPEC-RL with drafts from its own store. The speculative arm's
samples then train the policy with one GRPO step (the demo's trainer), and the new weights are
pushed for the next step: the weight sequence is that of a real SPEC-RL training run. Times
include the verify pass. Epoch 0 has no drafts; figures are reported over all epochs and over
epochs >= 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any

import numpy as np

from specrl_sglang.demo.config import DemoConfig
from specrl_sglang.demo.main import add_training_args, config_from_args
from specrl_sglang.stdout_guard import stdout_to_stderr


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("rollout", help="vanilla vs. SPEC-RL rollout time on the demo task")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_training_args(p, DemoConfig(epochs=3))
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.json:
        with stdout_to_stderr():  # SGLang and its subprocesses log to stdout
            result = run_rollout_bench(config, log=lambda m: print(m, file=sys.stderr))
    else:
        result = run_rollout_bench(config)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for key in ("vanilla_s", "spec_s", "speedup", "speedup_after_epoch_0", "tokens_decoded_vanilla",
                    "tokens_decoded_spec", "full_reuse_ratio", "mean_accepted_len", "kv_hit_ratio"):
            print(f"{key:>24}: {result[key]}")
        print(f"{'spec time split':>24}: {result['spec_time_split']}")
    return 0


def _sum(rows: list[dict[str, Any]], key: str) -> float:
    return float(sum(r[key] for r in rows))


def run_rollout_bench(config: DemoConfig, log=print) -> dict[str, Any]:
    """Run the side-by-side benchmark; returns the figures (see module docstring)."""
    from radix_cache.trajectory_store import TrajectoryStore
    from specrl_sglang.demo.loop import epoch_batches, sample_rewards, train_on_samples
    from specrl_sglang.demo.policy import Policy
    from specrl_sglang.demo.task import make_problems
    from specrl_sglang.demo.warmup import task_config, warm_checkpoint
    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.runtime import RolloutRuntime
    from specrl_sglang.sampling import SamplingConfig
    from specrl_sglang.spec_config import SpecConfig

    warm = str(warm_checkpoint(config, log=log))
    problems = make_problems(task_config(config))
    policy = Policy(warm, seed=config.seed, lr=config.lr)
    prompt_ids = {p.prompt_id: policy.encode(p.prompt) for p in problems}
    sampling = SamplingConfig(temperature=config.temperature)
    rows: list[dict[str, Any]] = []
    spec_config = SpecConfig(lenience=config.lenience, seed=config.seed)
    with RolloutRuntime.in_process(EngineConfig(model_path=warm, random_seed=config.seed), config=spec_config) as rt:
        rt.update_weights(policy.named_weights())
        step = 0
        for epoch in range(config.epochs):
            for batch, reqs in epoch_batches(config, problems, prompt_ids, epoch):
                rt.flush_cache()
                rt.config = SpecConfig(mode="vanilla", record=False)
                van = rt.step(reqs, sampling, config.max_response_len).stats
                rt.flush_cache()
                rt.config = spec_config
                res = rt.step(reqs, sampling, config.max_response_len)
                st = res.stats
                rewards = sample_rewards(policy, batch, res.samples)
                train_on_samples(policy, reqs, res.samples, rewards, config.samples_per_prompt)
                rt.update_weights(policy.named_weights())
                rows.append({
                    "epoch": epoch, "step": step, "vanilla_s": van.total_s, "spec_s": st.total_s,
                    "verify_s": st.verify_s, "continue_s": st.continue_s, "assemble_s": st.host_s,
                    "decoded_vanilla": van.num_tokens_decoded, "decoded_spec": st.num_tokens_decoded,
                    "reused": st.num_tokens_reused, "draft_tokens": st.num_draft_tokens,
                    "num_samples": st.num_samples, "num_full": st.num_fully_reused, "num_with_draft": st.num_with_draft,
                    "accepted_total": st.mean_accepted_len * st.num_with_draft,
                    "kv_cached": st.kv_cached_tokens, "kv_expected": st.kv_expected_tokens, "reward": float(rewards.mean()),
                })
                log(f"epoch {epoch} step {step}: vanilla {van.total_s:.2f}s spec {st.total_s:.2f}s "
                    f"(verify {st.verify_s:.2f}s) full-reuse {st.full_reuse_ratio:.2f} reward {rewards.mean():.3f}")
                step += 1
    return summarize(rows, config)


def summarize(rows: list[dict[str, Any]], config: DemoConfig) -> dict[str, Any]:
    later = [r for r in rows if r["epoch"] >= 1] or rows
    drafted = sum(r["num_with_draft"] for r in rows)
    kv_expected = _sum(rows, "kv_expected")
    spec_s = _sum(rows, "spec_s")
    return {
        "vanilla_s": _sum(rows, "vanilla_s"),
        "spec_s": spec_s,
        "speedup": _sum(rows, "vanilla_s") / spec_s,
        "speedup_after_epoch_0": _sum(later, "vanilla_s") / _sum(later, "spec_s"),
        "tokens_decoded_vanilla": int(_sum(rows, "decoded_vanilla")),
        "tokens_decoded_spec": int(_sum(rows, "decoded_spec")),
        "tokens_reused_spec": int(_sum(rows, "reused")),
        "full_reuse_ratio": _sum(later, "num_full") / _sum(later, "num_samples"),
        "mean_accepted_len": _sum(rows, "accepted_total") / drafted if drafted else 0.0,
        "kv_hit_ratio": _sum(rows, "kv_cached") / kv_expected if kv_expected else math.nan,
        "spec_time_split": {k: round(_sum(rows, k), 4) for k in ("verify_s", "continue_s", "assemble_s")},
        "reward_first_epoch": float(np.mean([r["reward"] for r in rows if r["epoch"] == 0])),
        "reward_last_epoch": float(np.mean([r["reward"] for r in rows if r["epoch"] == config.epochs - 1])),
        "num_steps": len(rows),
        "config": dataclasses.asdict(config),
        "steps": rows,
    }
