"""`specrl-sglang bench fidelity`: distance statistics, and the benchmark end to end on a tiny setup."""

import math

import pytest

from specrl_sglang.bench.fidelity import homogeneity, tv_distance
from specrl_sglang.workload.config import WorkloadConfig


def test_tv_distance_and_homogeneity_test():
    assert tv_distance(list("aabb"), list("aabb")) == 0.0
    assert tv_distance(list("aaaa"), list("bbbb")) == 1.0
    assert tv_distance(list("aab"), list("abb")) == pytest.approx(1 / 3)
    same = [(["x"] * 50 + ["y"] * 50, ["x"] * 48 + ["y"] * 52)]
    different = [(["x"] * 90 + ["y"] * 10, ["x"] * 10 + ["y"] * 90)]
    assert homogeneity(same) > 0.5 and homogeneity(different) < 1e-6


def test_fidelity_bench_reports_every_mode(tmp_path):
    from specrl_sglang.bench.fidelity import SWEEP, run_fidelity_bench

    config = WorkloadConfig.for_task("reversal", cache_dir=str(tmp_path / "cache"), num_prompts=2, samples_per_prompt=2,
                                     max_response_len=12, warmup={"steps": 3})
    result = run_fidelity_bench(config, num_prompts=2, num_samples=16, policy_steps=1, log=lambda m: None)
    assert 0.0 <= result["tv_noise"] <= 1.0
    assert set(result["modes"]["spec_rl"]) == {f"{l:.4g}" for l in SWEEP}
    inf = result["modes"]["spec_rl"]["inf"]
    assert inf["full_reuse_ratio"] == 1.0 and inf["tv"] >= 0.0  # every draft of A returned whole
    assert 0.0 <= result["modes"]["exact"]["p_answer"] <= 1.0 and isinstance(result["exact_indistinguishable"], bool)
    for m in [result["modes"]["exact"], *result["modes"]["spec_rl"].values()]:
        for key in ("tv", "tv_answer", "logp_mean", "reward_mean", "mean_accepted_len", "speedup", "p_answer"):
            assert key in m and (m[key] is None or math.isfinite(m[key]))
