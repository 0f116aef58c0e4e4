"""The demo's outputs: a JSON report and a PNG plot (reward and rollout time per step, per arm)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from specrl_sglang.demo.loop import ArmLog


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def build_report(config: dict[str, Any], logs: list[ArmLog], num_epochs: int) -> dict[str, Any]:
    arms = {log.arm: {"epochs": [log.epoch_summary(e) for e in range(num_epochs)], "steps": log.steps} for log in logs}
    report: dict[str, Any] = {"config": config, "arms": arms}
    if "vanilla" in arms and "spec" in arms:
        van = sum(e["rollout_s"] for e in arms["vanilla"]["epochs"])
        spec = sum(e["rollout_s"] for e in arms["spec"]["epochs"])
        later = slice(1, None)  # epoch 0 has no drafts in either arm
        van_later = sum(e["rollout_s"] for e in arms["vanilla"]["epochs"][later])
        spec_later = sum(e["rollout_s"] for e in arms["spec"]["epochs"][later])
        report["summary"] = {
            "rollout_speedup": van / spec if spec else None,
            "rollout_speedup_after_epoch_0": van_later / spec_later if spec_later else None,
            "final_reward_vanilla": arms["vanilla"]["epochs"][-1]["reward"],
            "final_reward_spec": arms["spec"]["epochs"][-1]["reward"],
            "tokens_decoded_vanilla": sum(e["tokens_decoded"] for e in arms["vanilla"]["epochs"]),
            "tokens_decoded_spec": sum(e["tokens_decoded"] for e in arms["spec"]["epochs"]),
        }
    return _clean(report)


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def plot_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Two panels: reward per step and rollout seconds per step, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"vanilla": "tab:blue", "spec": "tab:orange"}
    for arm, data in report["arms"].items():
        steps = [s["step"] for s in data["steps"]]
        lenience = report["config"]["lenience"]  # None when infinite (JSON has no inf)
        label = arm if arm == "vanilla" else f"spec (l={'inf' if lenience is None else f'{lenience:.2f}'})"
        ax_r.plot(steps, [s["reward"] for s in data["steps"]], marker="o", ms=3, color=colors[arm], label=label)
        ax_t.plot(steps, [s["rollout_s"] for s in data["steps"]], marker="o", ms=3, color=colors[arm], label=label)
    ax_r.set(title="Mean reward per step", xlabel="training step", ylabel="reward")
    ax_t.set(title="Rollout time per step (verify included)", xlabel="training step", ylabel="seconds")
    for ax in (ax_r, ax_t):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out_dir / "report.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
