"""The demo's outputs: report.json (config, per-arm step rows and epoch summaries, a summary
comparing every arm with vanilla) and report.png (reward, rollout time and tokens decoded per
step, accepted-length distribution). `specrl-sglang stats --report report.json` reads it too."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from specrl_sglang.mean_se import mean_se
from specrl_sglang.plain_json import dumps, plain

COLORS = {"vanilla": "tab:blue", "spec-rl": "tab:orange", "exact": "tab:green"}


def epoch_summary(rows: list[dict[str, Any]], epoch: int) -> dict[str, Any]:
    rows = [r for r in rows if r["epoch"] == epoch]
    return {
        "epoch": epoch,
        "reward": float(np.mean([r["reward"] for r in rows])),
        "rollout_s": float(sum(r["rollout_s"] for r in rows)),
        "tokens_decoded": int(sum(r["num_tokens_decoded"] for r in rows)),
        "tokens_reused": int(sum(r["num_tokens_reused"] for r in rows)),
        "full_reuse_ratio": float(np.mean([r["full_reuse_ratio"] for r in rows])),
        "mean_response_len": float(np.mean([r["mean_response_len"] for r in rows])),
    }


def reward_change(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Last epoch's mean reward minus the first epoch's, paired by prompt: every prompt is rolled
    out once per epoch, so the gain is the mean over prompts of (last-epoch reward - first-epoch
    reward), and its standard error is their spread / sqrt(num prompts). (Step rewards differ
    mostly by which prompts a step drew, so a step-to-step spread would overstate the noise.)"""
    first_epoch, last_epoch = rows[0]["epoch"], rows[-1]["epoch"]
    first = {k: v for r in rows if r["epoch"] == first_epoch for k, v in r["prompt_rewards"].items()}
    last = {k: v for r in rows if r["epoch"] == last_epoch for k, v in r["prompt_rewards"].items()}
    common = sorted(first.keys() & last.keys())
    gain = mean_se([last[k] - first[k] for k in common])
    return {"initial": float(np.mean(list(first.values()))), "final": float(np.mean(list(last.values()))),
            "gain": gain.mean, "gain_se": gain.se if first_epoch != last_epoch else math.nan,
            "num_prompts_paired": len(common)}


def build_report(config: dict[str, Any], arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`arms`: arm -> run_arm's step rows."""
    num_epochs = config["workload"]["epochs"]
    out: dict[str, Any] = {"config": config, "arms": {}}
    for arm, rows in arms.items():
        out["arms"][arm] = {"epochs": [epoch_summary(rows, e) for e in range(num_epochs)], "steps": rows,
                            "reward": reward_change(rows)}
    if "vanilla" in arms:
        van = out["arms"]["vanilla"]["epochs"]
        summary = {"reward_vanilla": out["arms"]["vanilla"]["reward"]}
        for arm in arms:
            if arm == "vanilla":
                continue
            eps = out["arms"][arm]["epochs"]
            later = slice(1, None)  # epoch 0 has no drafts in any arm
            summary[arm] = {
                "rollout_speedup": sum(e["rollout_s"] for e in van) / sum(e["rollout_s"] for e in eps),
                "rollout_speedup_after_epoch_0": (sum(e["rollout_s"] for e in van[later]) / sum(e["rollout_s"] for e in eps[later])
                                                  if num_epochs > 1 else math.nan),
                "tokens_decoded_ratio": sum(e["tokens_decoded"] for e in eps) / max(1, sum(e["tokens_decoded"] for e in van)),
                "reward": out["arms"][arm]["reward"],
                "final_reward_minus_vanilla": out["arms"][arm]["reward"]["final"] - out["arms"]["vanilla"]["reward"]["final"],
            }
        out["summary"] = summary
    return plain(out)


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(report, indent=2))
    tmp.replace(path)
    return path


def arm_label(arm: str, config: dict[str, Any]) -> str:
    if arm != "spec-rl":
        return arm
    lenience = config["workload"]["lenience"]  # None when infinite (JSON has no inf)
    return f"spec-rl (l={'inf' if lenience is None else f'{lenience:.2f}'})"


def plot_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Four panels, one colour per arm: reward per step, rollout seconds per step, tokens decoded
    per step, and the accepted-length distribution of drafted samples after epoch 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_r, ax_t), (ax_d, ax_a) = axes
    max_len = report["config"]["workload"]["max_response_len"]
    bins = np.linspace(0, max_len, 33)
    for arm, data in report["arms"].items():
        steps, color, label = [s["step"] for s in data["steps"]], COLORS.get(arm), arm_label(arm, report["config"])
        ax_r.plot(steps, [s["reward"] for s in data["steps"]], marker="o", ms=3, color=color, label=label)
        ax_t.plot(steps, [s["rollout_s"] for s in data["steps"]], marker="o", ms=3, color=color, label=label)
        ax_d.plot(steps, [s["num_tokens_decoded"] for s in data["steps"]], marker="o", ms=3, color=color, label=label)
        accepted = [a for s in data["steps"] if s["epoch"] > 0 for a in s["accepted_lens"]]
        if accepted:
            ax_a.hist(accepted, bins=bins, histtype="step", linewidth=1.5, color=color, label=label)
    ax_r.set(title="Mean reward per step", xlabel="training step", ylabel="reward")
    ax_t.set(title="Rollout time per step (verify included)", xlabel="training step", ylabel="seconds")
    ax_d.set(title="Tokens decoded per step", xlabel="training step", ylabel="tokens")
    ax_a.set(title="Accepted draft length (samples with a draft)", xlabel="accepted tokens", ylabel="samples")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    path = out_dir / "report.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
