"""`specrl-sglang bench rollout` on a small reversal configuration: every arm on the same steps."""

import json
import math

from specrl_sglang.workload.config import WorkloadConfig


def small_workload(tmp_path, **overrides):
    base = dict(cache_dir=str(tmp_path / "cache"), epochs=3, num_prompts=4, prompts_per_step=4, samples_per_prompt=2,
                max_response_len=12, warmup={"steps": 3})
    return WorkloadConfig.for_task("reversal", **{**base, **overrides})


def test_rollout_bench_reports_every_arm_on_the_same_steps(tmp_path):
    from specrl_sglang.bench.rollout import ARMS, run_rollout_bench

    result = run_rollout_bench(small_workload(tmp_path), ARMS, log=lambda m: None)
    for key in ("mean_response_len", "vanilla_s", "spec_s", "speedup", "speedup_after_epoch_0", "tokens_decoded_vanilla",
                "tokens_decoded_spec", "tokens_decoded_exact", "full_reuse_ratio", "mean_accepted_len", "kv_hit_ratio",
                "floor_s", "floor_speedup", "speedup_over_floor", "exact_speedup", "barrier_s", "pipelined_over_barrier",
                "spec_time_split_after_epoch_0"):
        assert key in result, key
    assert result["num_steps"] == 3 and len(result["steps"]) == 3
    first, later = result["steps"][0], result["steps"][1:]
    assert all(first[arm]["num_with_draft"] == 0 for arm in ARMS)  # epoch 0: no drafts anywhere
    assert all(r["vanilla"]["num_with_draft"] == 0 for r in later)
    assert all(r["floor"]["full_reuse_ratio"] == 1.0 for r in later)  # l = inf accepts every draft whole
    assert all(r["spec-rl"]["num_with_draft"] == r["spec-rl"]["num_samples"] for r in later)
    assert result["tokens_decoded_spec"] < result["tokens_decoded_vanilla"]
    assert result["kv_hit_ratio"] == 1.0 or math.isnan(result["kv_hit_ratio"])
    json.dumps(result)


def test_rollout_bench_flags_are_checked_before_anything_starts(capsys):
    import pytest

    from specrl_sglang.cli import main

    with pytest.raises(SystemExit, match="unknown --arms"):
        main(["bench", "rollout", "--arms", "vanilla,fast"])
    with pytest.raises(SystemExit, match="--workers"):
        main(["bench", "rollout", "--workers", "2"])


def test_rollout_bench_through_an_sglang_http_server(tmp_path):
    from specrl_sglang.bench.rollout import run_rollout_bench

    result = run_rollout_bench(small_workload(tmp_path, epochs=2), ("vanilla", "spec-rl"), "http", 1, log=lambda m: None)
    assert result["backend"] == "http" and result["num_workers"] == 1 and result["num_steps"] == 2
    later = result["steps"][1]
    assert later["spec-rl"]["num_with_draft"] == later["spec-rl"]["num_samples"] == 8
    assert later["vanilla"]["num_with_draft"] == 0
    assert result["tokens_decoded_spec"] < result["tokens_decoded_vanilla"]
