"""`specrl-sglang bench store` on a small configuration: figures present and consistent."""

import json
import subprocess
import sys


def test_store_bench_reports_put_lookup_memory_and_bytes_per_token():
    from specrl_sglang.bench.store import run_store_bench

    result = run_store_bench(num_prompts=16, num_samples=4, min_len=64, max_len=256, num_steps=2)
    for key in ("put_s_per_step", "lookup_s_per_step", "peak_rss_mb", "bytes_per_token", "store_mb", "share_of_gpu_step"):
        assert result[key] > 0, key
    assert result["sharing_ratio"] > 1.0  # samples of a prompt share prefixes, stored once
    assert result["response_tokens"] > result["stored_tokens"]
    assert 8.0 < result["bytes_per_token"] < 40.0  # ids + log-probs at least; node overhead dominates short samples


def test_store_bench_cli_prints_one_json_line_and_refuses_bad_flags():
    out = subprocess.run([sys.executable, "-m", "specrl_sglang.cli", "bench", "store", "--json", "--num-prompts", "4",
                          "--min-len", "16", "--max-len", "32", "--num-steps", "1"], capture_output=True, text=True, check=True)
    assert set(json.loads(out.stdout.strip().splitlines()[-1])) >= {"put_s_per_step", "bytes_per_token"}
    bad = subprocess.run([sys.executable, "-m", "specrl_sglang.cli", "bench", "store", "--num-prompts", "0"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--num-prompts must be >= 1" in bad.stderr
