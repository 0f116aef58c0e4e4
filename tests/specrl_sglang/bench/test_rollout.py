"""`specrl-sglang bench rollout` on a small configuration (figures present, consistent)."""

import json
import math

from specrl_sglang.demo.config import DemoConfig


def small_config(tmp_path, **overrides):
    base = dict(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), epochs=3, num_prompts=4,
                prompts_per_step=4, samples_per_prompt=2, max_response_len=12, warmup_steps=3)
    base.update(overrides)
    return DemoConfig(**base)


def test_rollout_bench_reports_the_required_figures(tmp_path):
    from specrl_sglang.bench.rollout import run_rollout_bench

    result = run_rollout_bench(small_config(tmp_path, epochs=3), log=lambda m: None)
    for key in ("vanilla_s", "spec_s", "speedup", "tokens_decoded_vanilla", "tokens_decoded_spec",
                "full_reuse_ratio", "mean_accepted_len", "kv_hit_ratio"):
        assert key in result
    assert result["num_steps"] == 3
    assert result["tokens_decoded_spec"] < result["tokens_decoded_vanilla"]
    assert result["kv_hit_ratio"] == 1.0 or math.isnan(result["kv_hit_ratio"])
    json.dumps(result)
