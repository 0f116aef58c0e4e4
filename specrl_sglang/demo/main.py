"""`specrl-sglang demo`: GRPO on the long-response carry-addition task, one arm per rollout mode
(vanilla, SPEC-RL at l = e^0.5, exact), side by side on one SGLang engine.

Every arm starts from the same cached warm policy, sees the same problems in the same order and
the same seed; see workload.training.run_arm. Writes report.json and report.png to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from specrl_sglang.demo.config import DEFAULT_ARMS, DemoConfig
from specrl_sglang.workload.cli_args import add_workload_args, workload_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the embedded RL demo (vanilla, SPEC-RL and exact arms side by side)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DemoConfig()
    p.add_argument("--out", default=d.out_dir, help=f"output directory for report.json and report.png (default {d.out_dir})")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated rollout modes (default {','.join(DEFAULT_ARMS)})")
    add_workload_args(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    try:
        return DemoConfig(workload=workload_from_args(args), out_dir=args.out,
                          arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()))
    except ValueError as exc:
        raise SystemExit(f"error: --arms: {exc}") from None


def run_demo(config: DemoConfig, show_progress: bool = True) -> dict:
    """Run every arm on one engine; returns the report (also written to config.out_dir)."""
    from tqdm import tqdm

    from specrl_sglang.demo.report import build_report, plot_report, write_report
    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.runtime import RolloutRuntime
    from specrl_sglang.workload.training import Workload, run_arm

    w = config.workload
    workload = Workload(w, log=tqdm.write)
    tqdm.write(f"task {w.task}: {w.num_prompts} prompts x {w.samples_per_prompt} samples, {w.epochs} epochs of "
               f"{w.steps_per_epoch} steps; starting SGLang on {workload.warm_path} ...")
    arms: dict[str, list[dict]] = {}
    engine = EngineConfig(model_path=workload.warm_path, random_seed=w.seed,
                          max_total_tokens=w.kv_pool_tokens)
    with RolloutRuntime.in_process(engine) as runtime:
        for arm in config.arms:
            with tqdm(total=w.epochs * w.steps_per_epoch, desc=f"{arm:>7}", disable=not show_progress) as bar:
                def progress(row: dict) -> None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{row['reward']:.3f}", rollout=f"{row['rollout_s']:.1f}s",
                                    reuse=f"{row['full_reuse_ratio']:.2f}")
                arms[arm] = run_arm(workload, runtime, arm, on_step=progress)
    report = build_report({"workload": dataclasses.asdict(w), "arms": list(config.arms)}, arms)
    out = Path(config.out_dir)
    json_path, png_path = write_report(report, out), plot_report(report, out)
    for arm, data in report["arms"].items():
        r = data["reward"]
        tqdm.write(f"[{arm:>7}] reward {r['initial']:.3f} -> {r['final']:.3f} (gain {r['gain']:+.3f} +- {_num(r['gain_se'])} SE); "
                   f"rollout {sum(e['rollout_s'] for e in data['epochs']):.1f} s; decoded "
                   f"{sum(e['tokens_decoded'] for e in data['epochs'])} tokens")
    for arm, s in report.get("summary", {}).items():
        if arm != "reward_vanilla":
            tqdm.write(f"[{arm:>7}] rollout speedup vs vanilla {s['rollout_speedup']:.2f}x (after epoch 0: "
                       f"{_num(s['rollout_speedup_after_epoch_0'], '.2f')}x), final reward minus vanilla's "
                       f"{s['final_reward_minus_vanilla']:+.3f} (one seed: see bench quality for several)")
    tqdm.write(f"wrote {json_path} and {png_path}")
    return report


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def run(args: argparse.Namespace) -> int:
    run_demo(config_from_args(args))
    return 0
