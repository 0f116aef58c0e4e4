"""End to end on CPU: OpenRLHF's trainer rolling out through two running SGLang servers.

examples/openrlhf/train_tiny_cpu.sh with `--spec.sglang_urls URL,URL`: real Ray (started by the
launcher), real DeepSpeed, OpenRLHF's own trainer, one rollout actor over two real
`python -m sglang.launch_server` CPU workers serving the task's model. GRPO, 8 prompts x 4
samples, two passes (4 training steps, a weight sync after each), lenience 1 and a large learning
rate so that drafts are really cut, token-level IS correction (OpenRLHF compares the servers'
rollout log-probs with its trainer's: they agree only if every sync reached the servers).
"""

import json
import math
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.sglang_workers import start_workers

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "examples/openrlhf/train_tiny_cpu.sh"
PYTHON = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [p for p in tb_dir.iterdir() if p.is_dir()]
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("servers")
    subprocess.run([PYTHON, str(REPO / "examples/openrlhf/make_tiny_task.py"), str(out / "task"), "--num-prompts", "8"],
                   check=True, capture_output=True, cwd=REPO)
    config = EngineConfig(model_path=str(out / "task" / "model"), max_total_tokens=8192)
    with start_workers(config, 2, log_dir=out / "sglang-logs") as workers:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the launcher starts its own Ray
        proc = subprocess.run(
            ["bash", str(SCRIPT), str(out), "--spec.sglang_urls", ",".join(workers.urls), "--spec.lenience", "1.0",
             "--actor.adam.lr", "0.01", "--algo.advantage.is_correction_level", "token"],
            cwd=REPO, env={**env, "PYTHON": PYTHON}, capture_output=True, text=True, timeout=1500)
        log = proc.stdout + proc.stderr
        (out / "run.log").write_text(log)
        assert proc.returncode == 0, log[-6000:]
        versions = {}
        for url in workers.urls:
            with urllib.request.urlopen(url + "/model_info", timeout=60) as resp:
                versions[url] = json.loads(resp.read())["weight_version"]
        yield out, log, workers.urls, versions


def test_grpo_trains_through_the_servers_and_every_sync_reaches_them(run):
    out, log, urls, versions = run
    assert f"one rollout actor over SGLang HTTP workers {', '.join(urls)}" in log
    tb = scalars(out / "tb")
    assert [s for s, _ in tb["train/policy_loss"]] == [1, 2, 3, 4]
    assert all(math.isfinite(v) and v > 0 for _, v in tb["train/actor_grad_norm"])  # the policy really trained
    assert [v for _, v in tb["train/spec_policy_version"]] == [0.0, 1.0, 2.0, 3.0]  # one weight sync per step
    # Rollout log-probs (from the servers) vs the trainer's: equal only under the trainer's current weights.
    assert len(tb["train/vllm_kl"]) == 4 and all(abs(v) < 0.01 for _, v in tb["train/vllm_kl"])
    assert len(set(versions.values())) == 1 and next(iter(versions.values())).startswith("4@")  # 4 syncs, both servers


def test_pass_two_reuses_drafts_and_finds_the_verify_kv_on_each_prompts_server(run):
    out, _, _, _ = run
    tb = scalars(out / "tb")
    hit = dict(tb["train/spec_draft_hit"])
    assert hit[1] == hit[2] == 0.0 and hit[3] == hit[4] == 1.0
    records = [json.loads(line) for line in (out / "spec_steps.jsonl").read_text().splitlines()]
    second = [s for s in records if s["purpose"] == "train" and s["policy_version"] >= 2]
    assert len(second) == 8 and {s["engine_index"] for s in second} == {0}  # one actor for both servers
    cut = [a < d for s in second for a, d in zip(s["accepted_lens"], s["draft_lens"])]
    assert any(cut) and not all(cut)  # lenience 1 after real updates: some drafts cut, some reused whole
    expected = sum(s["kv_expected_tokens"] for s in second)
    assert expected > 0 and sum(s["kv_cached_tokens"] for s in second) / expected >= 0.95
