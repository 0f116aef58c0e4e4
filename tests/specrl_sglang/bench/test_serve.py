"""`bench serve` end to end on a tiny configuration: a real server, real client processes."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bench_serve_json_reports_both_client_counts(tiny_model_path):
    proc = subprocess.run(
        [sys.executable, "-m", "specrl_sglang", "bench", "serve", "--clients", "1,2", "--rounds", "1", "--prompts", "1",
         "--samples", "2", "--max-len", "8", "--repeats", "2", "--model", tiny_model_path, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]  # stdout holds the JSON line only
    result = json.loads(lines[0])
    assert result["clients"] == [1, 2] and result["mode"] == "vanilla" and result["ratio_name"] == "2_vs_1"
    assert set(result["samples_per_s"]) == {"1", "2"} and all(v > 0 for v in result["samples_per_s"].values())
    assert [r["samples"] for r in result["runs"]["1"]] == [2, 2] and [r["samples"] for r in result["runs"]["2"]] == [4, 4]
    assert abs(result["ratio"] - result["samples_per_s"]["2"] / result["samples_per_s"]["1"]) < 1e-9
    assert len(result["ratios_per_repeat"]) == 2 and result["config"]["repeats"] == 2
    assert len(result["runs"]["2"][0]["step_latency_s"]) == 2 and result["cpus"] >= 1
    assert len(result["load_avg_before"]) == 3 and result["config"]["max_len"] == 8
    assert result["one_client_batched_samples_per_s"] > 0


def test_bench_serve_refuses_bad_client_counts():
    proc = subprocess.run([sys.executable, "-m", "specrl_sglang", "bench", "serve", "--clients", "0,x"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--clients must be" in proc.stderr
