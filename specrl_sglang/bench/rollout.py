"""`specrl-sglang bench rollout`: vanilla vs. speculative rollouts on the same steps, same weights.

The weight sequence is that of a real SPEC-RL run: after every step the spec-rl arm's samples
train the policy with one GRPO step and the new weights are pushed. Within a step every arm rolls
out the same prompts under the same weights on the same engine, each after a KV flush (no arm is
helped by another's cache); times include the verify pass:
- vanilla: no drafts;
- spec-rl: drafts from its own store (the arm that trains), at --lenience;
- exact: drafts from its own store (exact samples of the same steps), lossless rule;
- floor: the spec-rl arm's drafts with l = inf (every draft accepted whole, record nothing): the
  physical limit of reuse on this machine; speedup / floor_speedup says how close we are to it;
- barrier: the spec-rl rule with the two-barrier flow (all verifies, then all continuations;
  record nothing) instead of the pipelined one (a sample continues as soon as its verify is in).
Epoch 0 has no drafts; figures are over all epochs and over epochs >= 1 (`*_after_epoch_0`).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from specrl_sglang.plain_json import dumps
from specrl_sglang.stdout_guard import stdout_to_stderr
from specrl_sglang.workload.cli_args import add_workload_args, workload_from_args

ARMS = ("vanilla", "spec-rl", "exact", "floor", "barrier")
BENCH_DEFAULTS = {"epochs": 4}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("rollout", help="rollout time of vanilla / spec-rl / exact / reuse floor, same steps",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)} (vanilla and "
                                                           "spec-rl always run)")
    p.add_argument("--backend", choices=("in-process", "http"), default="in-process",
                   help="in-process: an offline sglang.Engine here; http: local SGLang HTTP servers (launch_server)")
    p.add_argument("--workers", type=int, default=1, help="--backend http: number of SGLang servers (prompt-affinity routed)")
    add_workload_args(p, **BENCH_DEFAULTS)
    p.set_defaults(func=_run_cli)


def _arms(text: str) -> tuple[str, ...]:
    chosen = {a.strip() for a in text.split(",") if a.strip()}
    unknown = chosen - set(ARMS)
    if unknown:
        raise SystemExit(f"bench rollout: unknown --arms {', '.join(sorted(unknown))} (choose from {', '.join(ARMS)})")
    return tuple(a for a in ARMS if a in chosen | {"vanilla", "spec-rl"})


def _run_cli(args: argparse.Namespace) -> int:
    config = workload_from_args(args)
    arms = _arms(args.arms)
    if args.workers < 1 or (args.workers > 1 and args.backend != "http"):
        raise SystemExit("bench rollout: --workers N >= 1, and N > 1 only with --backend http")
    if args.json:
        with stdout_to_stderr():  # SGLang and its subprocesses log to stdout
            result = run_rollout_bench(config, arms, args.backend, args.workers, log=lambda m: print(m, file=sys.stderr))
        print(dumps(result), flush=True)
        return 0
    result = run_rollout_bench(config, arms, args.backend, args.workers)
    for key, value in result.items():
        if key not in ("steps", "config"):
            print(f"{key:>28}: {value}")
    return 0


def run_rollout_bench(config, arms: tuple[str, ...] = ARMS, backend: str = "in-process", num_workers: int = 1,
                      log=print) -> dict[str, Any]:
    """Run the side-by-side benchmark; returns the figures (see module docstring and `summarize`)."""
    import contextlib

    from specrl_sglang.bench.rollout_arms import measure_step
    from specrl_sglang.bench.rollout_backend import open_runtime
    from specrl_sglang.workload.training import Workload, grpo_update

    workload = Workload(config, log)
    policy = workload.new_policy()
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        runtime = stack.enter_context(open_runtime(workload, backend, num_workers, log))
        runtime.update_weights(policy.named_weights())
        stores = {}
        for epoch in range(config.epochs):
            for batch in workload.batches(epoch):
                row, samples = measure_step(runtime, workload, batch, arms, stores)
                rewards = workload.rewards(batch, samples)
                grpo_update(policy, batch, samples, rewards, config.samples_per_prompt)
                runtime.update_weights(policy.named_weights())
                rows.append({"epoch": epoch, "step": len(rows), "reward": float(rewards.mean()), **row})
                log(f"epoch {epoch} step {len(rows) - 1}: " + "  ".join(
                    f"{a} {row[a]['total_s']:.2f}s" for a in arms) + f"  full-reuse {row['spec-rl']['full_reuse_ratio']:.2f}"
                    f"  reward {rewards.mean():.3f}")
    return summarize(rows, arms, config, backend, num_workers)


def _total(rows, arm: str, key: str) -> float:
    return float(sum(r[arm][key] for r in rows))


def summarize(rows: list[dict[str, Any]], arms: tuple[str, ...], config, backend: str, num_workers: int) -> dict[str, Any]:
    import dataclasses

    later = [r for r in rows if r["epoch"] >= 1] or rows
    out: dict[str, Any] = {"backend": backend, "num_workers": num_workers, "num_steps": len(rows),
                           "mean_response_len": _total(rows, "spec-rl", "response_tokens") / _total(rows, "spec-rl", "num_samples")}
    for arm in arms:
        name = arm.replace("-", "_")
        out[f"{name}_s"] = _total(rows, arm, "total_s")
        out[f"{name}_s_after_epoch_0"] = _total(later, arm, "total_s")
    out["vanilla_s"], out["spec_s"] = out["vanilla_s"], out.pop("spec_rl_s")
    out["spec_s_after_epoch_0"] = out.pop("spec_rl_s_after_epoch_0")
    out["speedup"] = out["vanilla_s"] / out["spec_s"]
    out["speedup_after_epoch_0"] = out["vanilla_s_after_epoch_0"] / out["spec_s_after_epoch_0"]
    for arm in arms[2:]:
        name = arm.replace("-", "_")
        out[f"{name}_speedup"] = out["vanilla_s"] / out[f"{name}_s"]
        out[f"{name}_speedup_after_epoch_0"] = out["vanilla_s_after_epoch_0"] / out[f"{name}_s_after_epoch_0"]
    if "floor" in arms:  # how close to the physical limit of reuse (1 = every draft accepted whole)
        out["speedup_over_floor"] = out["speedup"] / out["floor_speedup"]
        out["speedup_over_floor_after_epoch_0"] = out["speedup_after_epoch_0"] / out["floor_speedup_after_epoch_0"]
    for arm in ("vanilla", "spec-rl", "exact"):
        if arm in arms:
            out[f"tokens_decoded_{arm.replace('-', '_').replace('spec_rl', 'spec')}"] = int(_total(rows, arm, "num_tokens_decoded"))
    spec = "spec-rl"
    drafted = _total(later, spec, "num_with_draft")
    out["full_reuse_ratio"] = _total(later, spec, "num_fully_reused") / _total(later, spec, "num_samples")
    out["mean_accepted_len"] = _total(later, spec, "accepted_tokens") / drafted if drafted else 0.0
    kv_expected = _total(rows, spec, "kv_expected_tokens")
    out["kv_hit_ratio"] = _total(rows, spec, "kv_cached_tokens") / kv_expected if kv_expected else math.nan
    if "exact" in arms:
        drafted_x = _total(later, "exact", "num_with_draft")
        out["exact_full_reuse_ratio"] = _total(later, "exact", "num_fully_reused") / _total(later, "exact", "num_samples")
        out["exact_mean_accepted_len"] = _total(later, "exact", "accepted_tokens") / drafted_x if drafted_x else 0.0
    out["spec_time_split_after_epoch_0"] = {k: round(_total(later, spec, k), 3) for k in ("verify_s", "continue_s", "host_s")}
    if "barrier" in arms:
        out["pipelined_over_barrier"] = out["barrier_s_after_epoch_0"] / out["spec_s_after_epoch_0"]
    out["reward_first_epoch"] = float(sum(r["reward"] for r in rows if r["epoch"] == 0) / sum(r["epoch"] == 0 for r in rows))
    out["config"] = dataclasses.asdict(config)
    out["steps"] = rows
    return out
