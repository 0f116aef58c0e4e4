"""`specrl-sglang bench quality` on a tiny reversal configuration: arms x seeds, paired test."""

import json
import math

import pytest

from specrl_sglang.bench.quality import run_quality_bench, summarize
from specrl_sglang.workload.config import WorkloadConfig


def test_paired_verdicts_follow_the_stated_test():
    config = WorkloadConfig.for_task("reversal", epochs=2, num_prompts=2, prompts_per_step=1)  # 2 steps per epoch
    arms = [("vanilla", "vanilla", 1.0), ("exact", "exact", 1.0), ("spec_rl@1.649", "spec-rl", math.exp(0.5)),
            ("spec_rl@2.718", "spec-rl", math.e)]
    curves = {"vanilla": [[0.1, 0.1, 0.5, 0.6], [0.1, 0.2, 0.6, 0.6], [0.2, 0.1, 0.5, 0.7]],
              "exact": [[0.1, 0.1, 0.52, 0.6], [0.1, 0.2, 0.55, 0.6], [0.2, 0.1, 0.5, 0.72]],
              "spec_rl@1.649": [[0.1, 0.1, 0.5, 0.59], [0.1, 0.2, 0.6, 0.62], [0.2, 0.1, 0.52, 0.7]],
              "spec_rl@2.718": [[0.1, 0.1, 0.3, 0.3], [0.1, 0.2, 0.31, 0.3], [0.2, 0.1, 0.3, 0.32]]}
    rollout_s = {name: [1.0, 1.0, 1.0] for name in curves}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as out:
        result = summarize(config, arms, curves, rollout_s, Path(out))
        assert (Path(out) / "quality.json").exists() and (Path(out) / "quality.png").exists()
    assert result["comparisons"]["exact"]["within_2se"] and result["comparisons"]["spec_rl@1.649"]["within_2se"]
    assert result["comparisons"]["spec_rl@2.718"]["verdict"] == "worse than vanilla by > 2 SE"
    assert result["spec_arm"] == "spec_rl@1.649" and result["largest_lenience_within_2se"] == pytest.approx(math.exp(0.5))
    assert result["arms"]["vanilla"]["final_reward_mean"] == pytest.approx((0.55 + 0.6 + 0.6) / 3)


def test_quality_bench_runs_every_arm_for_every_seed(tmp_path):
    config = WorkloadConfig.for_task("reversal", cache_dir=str(tmp_path / "cache"), epochs=2, num_prompts=2,
                                     prompts_per_step=2, samples_per_prompt=2, max_response_len=12, warmup={"steps": 3})
    result = run_quality_bench(config, 2, [math.exp(0.5)], True, tmp_path / "q", log=lambda m: None)
    assert set(result["arms"]) == {"vanilla", "exact", "spec_rl@1.649"}
    for arm in result["arms"].values():
        assert len(arm["final_rewards"]) == 2 and len(arm["curve_mean"]) == 2 and math.isfinite(arm["final_reward_se"])
    for key in ("spec_minus_vanilla", "within_2se", "largest_lenience_within_2se", "num_seeds"):
        assert key in result
    json.loads((tmp_path / "q" / "quality.json").read_text())


def test_quality_flags_are_checked(capsys):
    from specrl_sglang.cli import main

    with pytest.raises(SystemExit, match="seeds"):
        main(["bench", "quality", "--seeds", "1"])
    with pytest.raises(SystemExit, match="lenience"):
        main(["bench", "quality", "--leniences", "0.5"])


def test_final_reward_is_the_evaluated_policy_when_given(tmp_path):
    config = WorkloadConfig.for_task("reversal", epochs=1, num_prompts=1, prompts_per_step=1)
    arms = [("vanilla", "vanilla", 1.0), ("spec_rl@1.649", "spec-rl", math.exp(0.5))]
    curves = {"vanilla": [[0.5], [0.5]], "spec_rl@1.649": [[0.9], [0.9]]}  # lossy rollouts look better ...
    evals = {"vanilla": [0.5, 0.52], "spec_rl@1.649": [0.5, 0.51]}  # ... than the policy they trained
    result = summarize(config, arms, curves, {n: [1.0, 1.0] for n in curves}, tmp_path, evals, [0.4, 0.4])
    spec = result["arms"]["spec_rl@1.649"]
    assert spec["final_reward_mean"] == pytest.approx(0.505) and spec["final_rollout_reward_mean"] == pytest.approx(0.9)
    assert spec["learning_gain_mean"] == pytest.approx(0.105) and result["within_2se"]
    # paired by seed: gains 0.10 and 0.11 -> SE = std([0.10, 0.11], ddof=1) / sqrt(2) = 0.005
    assert spec["learning_gain_se"] == pytest.approx(0.005)
    assert spec["initial_rewards"] == [0.4, 0.4]
