"""`specrl-sglang bench tree` on a small config: both trees agree, the report has its keys."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sglang.srt.mem_cache.radix_cache")

from specrl_sglang.bench.tree import run_tree_bench  # noqa: E402
from specrl_sglang.bench.tree_trace import build_trace  # noqa: E402
from specrl_sglang.cli import main  # noqa: E402

KEYS = {"ours_ops_per_s", "sglang_ops_per_s", "speedup", "identical", "bytes_per_token", "num_ops", "total_tokens"}


@pytest.mark.parametrize("page_size", [1, 4])
def test_small_config_is_identical(page_size):
    result = run_tree_bench(num_prompts=6, num_samples=3, min_len=16, max_len=64, seed=1, page_size=page_size, repeats=1)
    assert KEYS <= result.keys()
    assert result["identical"] is True and result["num_mismatches"] == 0
    assert result["num_ops"] > 0 and result["total_tokens"] > 0 and result["bytes_per_token"] > 0


def test_trace_is_deterministic_and_exercises_every_op():
    first, second = build_trace(5, 3, 16, 48, seed=3), build_trace(5, 3, 16, 48, seed=3)
    assert first.ops == second.ops
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first.keys, second.keys))
    assert {op.kind for op in first.ops} == {"insert", "match", "lock", "unlock", "evict"}


def test_cli_json(capsys):
    argv = ["bench", "tree", "--json", "--num-prompts", "4", "--samples", "2", "--min-len", "8", "--max-len", "32"]
    assert main([*argv, "--repeats", "1"]) == 0
    assert KEYS <= json.loads(capsys.readouterr().out).keys()
