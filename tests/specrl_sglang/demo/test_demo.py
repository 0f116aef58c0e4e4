"""The embedded RL demo end to end on a small reversal-task configuration (every arm, real SGLang)."""

import json
import math

import numpy as np
import pytest

from specrl_sglang.cli import main
from specrl_sglang.demo.config import DemoConfig
from specrl_sglang.workload.config import WorkloadConfig


def small_workload(tmp_path, **overrides):
    base = dict(cache_dir=str(tmp_path / "cache"), epochs=2, num_prompts=4, prompts_per_step=4, samples_per_prompt=2,
                max_response_len=12, warmup={"steps": 3})
    return WorkloadConfig.for_task("reversal", **{**base, **overrides})


def test_bad_demo_settings_get_clear_errors(capsys):
    with pytest.raises(ValueError, match="arms"):
        DemoConfig(arms=("fast",))
    with pytest.raises(ValueError, match="arms"):
        DemoConfig(arms=("vanilla", "vanilla"))
    with pytest.raises(SystemExit, match="arms"):
        main(["demo", "--arms", "vanilla,turbo"])
    with pytest.raises(SystemExit, match="samples_per_prompt"):
        main(["demo", "--samples", "1"])


def test_demo_runs_every_arm_and_writes_report_and_plot(tmp_path):
    from specrl_sglang.demo.main import run_demo
    from specrl_sglang.inspect.sources import from_report

    config = DemoConfig(workload=small_workload(tmp_path, lenience=math.inf), out_dir=str(tmp_path / "out"))
    report = run_demo(config, show_progress=False)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["summary"] == report["summary"] and set(on_disk["arms"]) == {"vanilla", "spec-rl", "exact"}
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    spec = report["arms"]["spec-rl"]["epochs"]
    assert spec[0]["tokens_reused"] == 0  # epoch 0 has no drafts
    assert spec[1]["tokens_reused"] > 0 and spec[1]["full_reuse_ratio"] == 1.0  # l = inf
    assert report["arms"]["vanilla"]["epochs"][1]["tokens_reused"] == 0
    exact = report["arms"]["exact"]["steps"][1]  # an almost untrained policy rejects most draft tokens exactly
    assert exact["num_with_draft"] == exact["num_samples"] == 8 and exact["mode"] == "exact"
    for arm, data in report["arms"].items():
        assert [s["mode"] for s in data["steps"]] == [arm] * 2
        for step in data["steps"]:
            assert math.isfinite(step["loss"]) and 0.0 <= step["reward"] <= 1.0
            assert len(step["prompt_rewards"]) == config.workload.prompts_per_step
            assert math.isclose(np.mean(list(step["prompt_rewards"].values())), step["reward"], rel_tol=1e-6)
        assert data["reward"]["num_prompts_paired"] == config.workload.num_prompts
    s = report["summary"]["spec-rl"]
    assert s["tokens_decoded_ratio"] < 1 and s["rollout_speedup"] > 0
    rows = from_report(tmp_path / "out" / "report.json").rows  # `specrl-sglang stats --report` reads it
    assert {r["series"] for r in rows} == {"vanilla", "spec-rl", "exact"} and len(rows) == 6
