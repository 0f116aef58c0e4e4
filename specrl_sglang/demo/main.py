"""`specrl-sglang demo`: GRPO on the reversal task, vanilla vs. speculative rollouts, side by side."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from specrl_sglang.demo.config import MODEL_SIZES, DemoConfig


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the embedded RL demo (vanilla vs. SPEC-RL arms)")
    d = DemoConfig()
    p.add_argument("--out", default=d.out_dir, help="output directory for report.json and report.png")
    add_training_args(p, d)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--arms", default=",".join(d.arms), help="comma-separated subset of vanilla,spec")
    p.set_defaults(func=run)


def add_training_args(p: argparse.ArgumentParser, d: DemoConfig) -> None:
    """The task/model/RL flags shared by `demo` and `bench rollout` (defaults from `d`)."""
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--num-prompts", type=int, default=d.num_prompts)
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step)
    p.add_argument("--samples", type=int, default=d.samples_per_prompt, help="samples per prompt (n)")
    p.add_argument("--max-response-len", type=int, default=d.max_response_len)
    p.add_argument("--lenience", type=float, default=d.lenience, help="l >= 1 (default e^0.5; 'inf' reuses all)")
    p.add_argument("--model-size", choices=sorted(MODEL_SIZES), default=d.model_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--cache-dir", default=d.cache_dir)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """A DemoConfig from parsed flags; flags a command does not have keep DemoConfig's defaults."""
    if math.isnan(args.lenience):
        raise SystemExit("--lenience must be a number >= 1")
    optional = {}
    if hasattr(args, "out"):
        optional["out_dir"] = args.out
    if hasattr(args, "warmup_steps"):
        optional["warmup_steps"] = args.warmup_steps
    if hasattr(args, "arms"):
        optional["arms"] = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    return DemoConfig(
        cache_dir=args.cache_dir,
        model_size=args.model_size,
        epochs=args.epochs,
        num_prompts=args.num_prompts,
        prompts_per_step=args.prompts_per_step,
        samples_per_prompt=args.samples,
        max_response_len=args.max_response_len,
        lenience=args.lenience,
        lr=args.lr,
        seed=args.seed,
        **optional,
    )


def run_demo(config: DemoConfig, show_progress: bool = True) -> dict:
    """Run every arm on one engine; returns the report (also written to config.out_dir)."""
    from tqdm import tqdm

    from specrl_sglang.demo.loop import run_arm
    from specrl_sglang.demo.report import build_report, plot_report, write_report
    from specrl_sglang.demo.task import make_problems
    from specrl_sglang.demo.warmup import task_config, warm_checkpoint
    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.runtime import RolloutRuntime

    warm = warm_checkpoint(config, log=lambda m: tqdm.write(m))
    problems = make_problems(task_config(config))
    logs = []
    tqdm.write(f"starting SGLang engine on {warm} ...")
    with RolloutRuntime.in_process(EngineConfig(model_path=str(warm), random_seed=config.seed)) as runtime:
        total = config.epochs * config.steps_per_epoch
        for arm in config.arms:
            with tqdm(total=total, desc=f"{arm:>7}", disable=not show_progress) as bar:
                log = run_arm(arm, config, runtime, str(warm), problems, progress=bar)
            logs.append(log)
            for e in range(config.epochs):
                s = log.epoch_summary(e)
                tqdm.write(
                    f"[{arm:>7}] epoch {e}: reward {s['reward']:.3f}  rollout {s['rollout_s']:.2f}s  "
                    f"full-reuse {s['full_reuse_ratio']:.2f}  decoded {s['tokens_decoded']}  reused {s['tokens_reused']}"
                )
    report = build_report(dataclasses.asdict(config), logs, config.epochs)
    out = Path(config.out_dir)
    json_path, png_path = write_report(report, out), plot_report(report, out)
    if "summary" in report:
        s = report["summary"]
        tqdm.write(
            f"rollout speedup (all epochs, verify included): {s['rollout_speedup']:.2f}x; after epoch 0: "
            f"{s['rollout_speedup_after_epoch_0']:.2f}x; final reward vanilla {s['final_reward_vanilla']:.3f} "
            f"vs spec {s['final_reward_spec']:.3f}"
        )
    tqdm.write(f"wrote {json_path} and {png_path}")
    return report


def run(args: argparse.Namespace) -> int:
    run_demo(config_from_args(args))
    return 0
