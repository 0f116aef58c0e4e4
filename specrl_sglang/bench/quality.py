"""``specrl-sglang bench quality``: does speculative reuse cost policy quality? Arms over K seeds.

For each seed (the problems, their order, the sampling and acceptance randomness; the warm policy
is shared) every arm trains the same warm policy with GRPO on the workload, on one engine:
vanilla, exact, and spec-rl at each lenience of the sweep. Per arm: the final reward - the mean
reward of fresh (vanilla) samples of the arm's final policy on every prompt, not the arm's own
rollouts, which for a lossy mode lean toward the drafts' older policy - per seed, its mean and
standard error over seeds, the learning gain over the warm policy (same evaluation), and the
rollout-reward-per-step curve with a +-1 SE band (quality.png). Test, per spec-rl lenience and for exact: the paired
difference d_s = final(arm, s) - final(vanilla, s); the arm is "within 2 SE" of vanilla when
|mean d| <= 2 SE(d) (SE = sd / sqrt(K)), "worse" when mean d < -2 SE(d), "better" otherwise. With
K = 3 seeds this only detects large differences; the JSON says so (`num_seeds`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from specrl_sglang.mean_se import mean_se
from specrl_sglang.plain_json import dumps
from specrl_sglang.spec_config import DEFAULT_LENIENCE
from specrl_sglang.stdout_guard import stdout_to_stderr
from specrl_sglang.workload.cli_args import add_workload_args, workload_from_args

DEFAULT_SWEEP = (math.exp(0.2), DEFAULT_LENIENCE, math.exp(1.0))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("quality", help="final reward of vanilla / exact / spec-rl arms over several seeds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds K (seeds 0..K-1)")
    p.add_argument("--leniences", default=",".join(f"{l:.4f}" for l in DEFAULT_SWEEP), help="spec-rl lenience sweep")
    p.add_argument("--no-exact", action="store_true", help="skip the exact arm")
    p.add_argument("--out", default="runs/quality", help="where quality.json and quality.png go")
    add_workload_args(p)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.seeds < 2:
        raise SystemExit("bench quality: --seeds must be >= 2 (a standard error needs two)")
    try:
        sweep = [float(x) for x in args.leniences.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"bench quality: --leniences must be comma-separated numbers, got {args.leniences!r}") from None
    if not sweep or any(not l >= 1 for l in sweep):
        raise SystemExit("bench quality: every lenience must be >= 1")
    config = workload_from_args(args)
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.json:
        with stdout_to_stderr():
            result = run_quality_bench(config, args.seeds, sweep, not args.no_exact, Path(args.out), log)
        print(dumps(result), flush=True)
    else:
        result = run_quality_bench(config, args.seeds, sweep, not args.no_exact, Path(args.out), log)
        for arm, a in result["arms"].items():
            print(f"{arm:>16}: final reward {a['final_reward_mean']:.3f} +- {a['final_reward_se']:.3f} "
                  f"(initial {a['initial_reward_mean']:.3f}, gain {a['learning_gain_mean']:+.3f} +- {a['learning_gain_se']:.3f}); "
                  f"rollout {a['rollout_s_mean']:.1f} s")
        for line in result["verdicts"]:
            print(line)
    return 0


def arm_names(sweep: list[float], exact: bool) -> list[tuple[str, str, float]]:
    """(arm name, mode, lenience) of every arm, vanilla first."""
    arms = [("vanilla", "vanilla", DEFAULT_LENIENCE)]
    if exact:
        arms.append(("exact", "exact", DEFAULT_LENIENCE))
    arms += [(f"spec_rl@{l:.4g}", "spec-rl", l) for l in sweep]
    return arms


def run_quality_bench(config, num_seeds: int, sweep: list[float], exact: bool, out: Path, log=print) -> dict[str, Any]:
    import dataclasses

    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.runtime import RolloutRuntime
    from specrl_sglang.workload.training import Workload, evaluate, run_arm

    arms = arm_names(sweep, exact)
    curves: dict[str, list[list[float]]] = {name: [] for name, _, _ in arms}
    rollout_s: dict[str, list[float]] = {name: [] for name, _, _ in arms}
    evals: dict[str, list[float]] = {name: [] for name, _, _ in arms}
    warm: list[float] = []
    for seed in range(num_seeds):
        workload = Workload(dataclasses.replace(config, seed=seed), log)
        engine = EngineConfig(model_path=workload.warm_path, random_seed=seed, max_total_tokens=workload.config.kv_pool_tokens)
        with RolloutRuntime.in_process(engine) as rt:
            warm.append(evaluate(workload, rt))  # the engine starts with the warm weights
            for name, mode, lenience in arms:
                rows = run_arm(workload, rt, mode, lenience)
                evals[name].append(evaluate(workload, rt))  # the final policy, fresh samples
                curves[name].append([r["reward"] for r in rows])
                rollout_s[name].append(float(sum(r["rollout_s"] for r in rows)))
                log(f"seed {seed} {name}: rollout reward {rows[0]['reward']:.3f} -> {rows[-1]['reward']:.3f}, "
                    f"final policy (fresh samples) {evals[name][-1]:.3f}, rollout {rollout_s[name][-1]:.1f} s")
    return summarize(config, arms, curves, rollout_s, out, evals, warm)


def summarize(config, arms, curves, rollout_s, out: Path, evals: dict[str, list[float]] | None = None,
              warm: list[float] | None = None) -> dict[str, Any]:
    """`evals` (arm -> per-seed reward of fresh samples of the final policy) and `warm` (per seed,
    the same for the warm policy) are the final and initial rewards when given; else the last and
    first epochs' rollout rewards stand in (the unit tests' synthetic curves)."""
    steps_per_epoch = config.steps_per_epoch
    rollout_finals = {name: [float(np.mean(c[-steps_per_epoch:])) for c in curves[name]] for name, _, _ in arms}
    finals = evals if evals is not None else rollout_finals
    initials = ({name: list(warm) for name, _, _ in arms} if warm is not None else
                {name: [float(np.mean(c[:steps_per_epoch])) for c in curves[name]] for name, _, _ in arms})
    result: dict[str, Any] = {"num_seeds": len(finals["vanilla"]), "arms": {}, "comparisons": {}, "verdicts": []}
    van_s = float(np.mean(rollout_s["vanilla"]))
    for name, mode, lenience in arms:
        mean, se = mean_se(finals[name])
        init_mean, init_se = mean_se(initials[name])
        curve = np.asarray(curves[name], dtype=np.float64)
        result["arms"][name] = {
            "mode": mode, "lenience": lenience if mode == "spec-rl" else None,
            "final_reward_mean": mean, "final_reward_se": se, "final_rewards": finals[name],
            "final_reward_source": "fresh samples of the final policy" if evals is not None else "last epoch's rollouts",
            "final_rollout_reward_mean": float(np.mean(rollout_finals[name])),
            "initial_reward_mean": init_mean, "initial_reward_se": init_se, "initial_rewards": initials[name],
            "learning_gain_mean": mean - init_mean,
            "learning_gain_se": mean_se(np.asarray(finals[name]) - np.asarray(initials[name])).se,  # paired by seed
            "curve_mean": curve.mean(axis=0).tolist(),
            "curve_se": [mean_se(column).se for column in curve.T],
            "rollout_s_mean": float(np.mean(rollout_s[name])),
            "rollout_speedup": van_s / float(np.mean(rollout_s[name])),
        }
        if name == "vanilla":
            continue
        d = np.asarray(finals[name]) - np.asarray(finals["vanilla"])
        d_mean, d_se = mean_se(d)
        within = abs(d_mean) <= 2 * d_se
        verdict = "within 2 SE of vanilla" if within else ("worse than vanilla by > 2 SE" if d_mean < 0 else "better than vanilla by > 2 SE")
        result["comparisons"][name] = {"minus_vanilla": d_mean, "se": d_se, "within_2se": bool(within), "verdict": verdict}
        result["verdicts"].append(f"{name}: final reward {mean:.3f} vs vanilla {result['arms']['vanilla']['final_reward_mean']:.3f} "
                                  f"(paired difference {d_mean:+.3f} +- {d_se:.3f} over {len(d)} seeds): {verdict}")
    default = next((n for n, m, l in arms if m == "spec-rl" and abs(l - DEFAULT_LENIENCE) < 1e-3), None)
    main = default or next(n for n, m, _ in arms if m == "spec-rl")
    result["spec_arm"] = main
    result["spec_minus_vanilla"] = result["comparisons"][main]["minus_vanilla"]
    result["within_2se"] = result["comparisons"][main]["within_2se"]
    holding = [l for n, m, l in arms if m == "spec-rl" and result["comparisons"][n]["within_2se"]]
    result["largest_lenience_within_2se"] = max(holding) if holding else None
    result["config"] = {**{k: v for k, v in config.__dict__.items() if k != "warmup"}, "warmup": config.warmup.__dict__}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(dumps(result, indent=2))
    result["plot"] = str(plot_quality(result, out / "quality.png"))
    return result


def plot_quality(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, arm in result["arms"].items():
        mean, se = np.asarray(arm["curve_mean"]), np.asarray(arm["curve_se"])
        steps = np.arange(len(mean))
        ax.plot(steps, mean, label=f"{name} (final {arm['final_reward_mean']:.3f} +- {arm['final_reward_se']:.3f})")
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
    ax.set(title=f"Reward per step, mean +- 1 SE over {result['num_seeds']} seeds", xlabel="training step", ylabel="reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
