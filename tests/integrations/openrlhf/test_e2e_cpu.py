"""End to end on CPU: examples/openrlhf/train_tiny_cpu.sh trains for real through OpenRLHF.

Real Ray, real DeepSpeed (CPU accelerator, gloo), OpenRLHF's own train_ppo_ray / PPOTrainer /
PPOTrainerAsync / PolicyModelActor, our SGLang engine actors; GRPO (group_norm), 4 samples per
prompt, 2 passes over the prompts (4 training steps). One Ray cluster for the module, started by a
child process of the test; every run joins it through RAY_ADDRESS. Three runs:
- "sync": two engines (sharded draft store), eval on the training set at temperature 0.6 every 2
  steps, checkpoints every 2 steps, --vllm.enable_sleep (OpenRLHF turns it off without colocation),
  lenience 1 and a large learning rate so that drafts are really cut, token-level IS correction
  (OpenRLHF compares our rollout log-probs with its trainer's);
- "resumed": a copy of the sync run's checkpoint directory rewound to global_step2 (as if the run
  had died after that checkpoint), resumed with --ckpt.load_enable;
- "async": --train.async_enable --train.partial_rollout_enable with long responses and one
  request decoding at a time (weight syncs land while rollouts are in flight) and DAPO dynamic filtering with a reward that is constant 1.0
  for the 2-letter prompts (their groups are always dropped).
Assertions read OpenRLHF's TensorBoard log, its console log, our per-step JSONL and the draft saves.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "examples/openrlhf/train_tiny_cpu.sh"
PYTHON = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable
CLUSTER = """
import sys, ray
ctx = ray.init(num_cpus=8, num_gpus=4, include_dashboard=False, object_store_memory=300 * 1024 * 1024)
print("ADDRESS", ctx.address_info["gcs_address"], flush=True)
sys.stdin.read()  # until the test closes our stdin
ray.shutdown()
"""
SYNC = ["--vllm.num_engines", "2", "--eval.temperature", "0.6", "--eval.steps", "2", "--eval.n_samples_per_prompt", "2",
        "--ckpt.save_steps", "2", "--vllm.enable_sleep", "--spec.lenience", "1.0", "--actor.adam.lr", "0.01",
        "--algo.advantage.is_correction_level", "token"]
DAPO_REWARD = '''"""The tiny task's reward, except that 2-letter prompts always score 1.0 (DAPO drops such groups)."""
import importlib.util
import torch

_spec = importlib.util.spec_from_file_location("task_reward", {task_reward!r})
_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_task)


def reward_func(queries, prompts, labels):
    rewards = _task.reward_func(queries, prompts, labels)["rewards"]
    const = torch.tensor([len(label.split()) == 2 for label in labels])
    rewards = torch.where(const, torch.ones_like(rewards), rewards)
    return {{"rewards": rewards, "scores": rewards, "extra_logs": {{"task_reward": rewards}}}}
'''


@pytest.fixture(scope="module")
def cluster():
    proc = subprocess.Popen([PYTHON, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = next(line.split()[1] for line in proc.stdout if line.startswith("ADDRESS"))
        yield address
    finally:
        proc.stdin.close()  # the child shuts down the Ray processes it started
        proc.wait(timeout=120)


def train(out: Path, cluster: str, *flags: str, num_prompts: int = 8) -> str:
    env = {**os.environ, "PYTHON": PYTHON, "RAY_ADDRESS": cluster, "NUM_PROMPTS": str(num_prompts)}
    proc = subprocess.run(["bash", str(SCRIPT), str(out), *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    log = proc.stdout + proc.stderr
    (out / "run.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    return log


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [p for p in tb_dir.iterdir() if p.is_dir()]
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def steps(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "spec_steps.jsonl").read_text().splitlines()]


def task_keys(out: Path) -> dict[str, str]:
    """{label: prompt id} of the task's prompts, as the engines key them."""
    from transformers import AutoTokenizer

    from specrl_sglang.prompt_identity import prompt_key

    tok = AutoTokenizer.from_pretrained(out / "task" / "model")
    rows = [json.loads(line) for line in (out / "task" / "prompts.jsonl").read_text().splitlines()]
    return {r["label"]: prompt_key(r["label"], tok(r["input"], add_special_tokens=False)["input_ids"]) for r in rows}


@pytest.fixture(scope="module")
def sync_run(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("sync")
    return out, train(out, cluster, *SYNC, "--eval.dataset", str(out / "task" / "prompts.jsonl"))


@pytest.fixture(scope="module")
def resumed_run(cluster, sync_run, tmp_path_factory):
    src, _ = sync_run
    out = tmp_path_factory.mktemp("resumed")
    shutil.copytree(src / "ckpt" / "ds", out / "ckpt" / "ds")
    (out / "ckpt" / "ds" / "_actor" / "latest").write_text("global_step2")  # the run "died" after step 2's checkpoint
    return out, train(out, cluster, *SYNC, "--eval.dataset", str(out / "task" / "prompts.jsonl"), "--ckpt.load_enable")


@pytest.fixture(scope="module")
def async_run(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("async")
    reward = out / "dapo_reward.py"
    reward.write_text(DAPO_REWARD.format(task_reward=str(out / "task" / "reward.py")))
    # One request decodes at a time: a batch's rollout then outlasts a training step of this tiny model,
    # so OpenRLHF's weight syncs land while rollouts are in flight (what partial rollouts are for). With 2
    # at a time, a loaded machine once finished every rollout between two syncs and nothing was resumed.
    log = train(out, cluster, "--train.async_enable", "--train.partial_rollout_enable", "--algo.dynamic_filtering_enable",
                "--reward.remote_url", str(reward), "--rollout.max_new_tokens", "200", "--data.max_len", "256",
                "--spec.engine_kwargs", '{"max_running_requests": 1}', num_prompts=10)
    return out, log


def test_sync_grpo_trains_on_two_engines_and_reuses_drafts_in_pass_two(sync_run):
    out, log = sync_run
    tb = scalars(out / "tb")
    assert [s for s, _ in tb["train/policy_loss"]] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for _, v in tb["train/policy_loss"])
    assert all(math.isfinite(v) and v > 0 for _, v in tb["train/actor_grad_norm"])  # the policy really trained
    assert [v for _, v in tb["train/spec_policy_version"]] == [0.0, 1.0, 2.0, 3.0]  # one weight sync per step
    # Token-level IS correction: OpenRLHF's mean (rollout - trainer) log-prob gap; drafts re-scored, not stale.
    assert all(abs(v) < 0.01 for _, v in tb["train/vllm_kl"]) and len(tb["train/vllm_kl"]) == 4
    hit, accepted = dict(tb["train/spec_draft_hit"]), dict(tb["train/spec_accepted_len"])
    assert hit[1] == hit[2] == 0.0 and hit[3] == hit[4] == 1.0 and accepted[3] > 0 and accepted[4] > 0
    train_steps = [s for s in steps(out) if s["purpose"] == "train"]
    assert {s["engine_index"] for s in train_steps} == {0, 1} and all(s["num_prompts"] == 1 for s in train_steps)
    cut = [a < d for s in train_steps if s["policy_version"] >= 2 for a, d in zip(s["accepted_lens"], s["draft_lens"])]
    assert any(cut) and not all(cut)  # lenience 1 after real updates: some drafts cut, some reused whole
    assert "[specrl] Ray joined" in log and "draft-store calls to other engines" in log
    assert "Set args.vllm.enable_sleep to False" in log  # OpenRLHF's own handling of --vllm.enable_sleep


def test_eval_is_plain_at_its_temperature_and_never_replaces_training_drafts(sync_run):
    out, _ = sync_run
    records = steps(out)
    evals = [s for s in records if s["purpose"] == "eval"]
    assert len(evals) == 2 * 8  # two evals over the 8 training prompts
    assert all(s["mode"] == "vanilla" and s["temperature"] == 0.6 and s["num_with_draft"] == 0 for s in evals)
    assert all(s["prompt_id"].startswith("scratch:") and s["num_samples"] == 2 for s in evals)
    assert "eval/eval_default_pass1" in scalars(out / "tb") or any(t.startswith("eval/") for t in scalars(out / "tb"))
    train = {}
    for s in records:
        if s["purpose"] == "train":
            train.setdefault(s["prompt_id"], []).append(s)
    for prompt_id, (first, second) in train.items():  # pass 2's drafts are exactly pass 1's 4 training samples
        assert sorted(second["draft_lens"]) == sorted(first["response_lens"]) and len(second["draft_lens"]) == 4


def test_drafts_are_saved_with_every_deepspeed_checkpoint(sync_run):
    out, log = sync_run
    ds = out / "ckpt" / "ds"
    tags = sorted(p.name for p in (ds / "_actor").iterdir() if p.is_dir())
    assert "global_step2" in tags and "global_step4" in tags
    assert [t for t in tags if t.startswith("best_")] in (["best_global_step2"], ["best_global_step4"])
    saved = sorted(p.name for p in (ds / "_specrl_drafts").iterdir())
    assert saved == tags  # one draft save per checkpoint (best ones included), none orphaned
    for tag in saved:
        manifest = json.loads((ds / "_specrl_drafts" / tag / "manifest.json").read_text())
        assert manifest["num_shards"] == 2 and sum(s["num_prompts"] for s in manifest["shards"]) == 8
        assert all((ds / "_specrl_drafts" / tag / f"shard{i}-of-2.snap").is_file() for i in range(2))
    # Every save is logged. The first eval (step 2) is always a best; if step 4's eval beat it (this varies
    # between machines), OpenRLHF replaced best_global_step2 and its draft save was pruned with it.
    logged = re.findall(r"\[specrl\] draft store saved to \S*/_specrl_drafts/(\S+)", log)
    assert "best_global_step2" in logged and set(saved) <= set(logged)
    assert set(logged) - set(saved) == ({"best_global_step2"} if "best_global_step4" in saved else set())


def test_a_resumed_run_reuses_drafts_exactly_as_the_uninterrupted_run(sync_run, resumed_run):
    sync_out, _ = sync_run
    out, log = resumed_run
    assert "[specrl] restored 8 prompts' drafts" in log
    assert [s for s, _ in scalars(out / "tb")["train/policy_loss"]] == [3, 4]

    def first_rollout_after_step2(records, version):
        return {s["prompt_id"]: (s["engine_index"], s["step_index"], s["draft_lens"], s["accepted_lens"])
                for s in records if s["purpose"] == "train" and s["policy_version"] == version}

    uninterrupted = first_rollout_after_step2(steps(sync_out), 2)
    resumed = first_rollout_after_step2(steps(out), 1)  # the resumed engines count versions from their own start
    assert len(uninterrupted) == 4 and resumed == uninterrupted  # same drafts, same randomness, same cuts
    assert any(a != d for _, _, ds, acc in resumed.values() for a, d in zip(acc, ds))


def test_async_partial_rollouts_resume_interrupted_groups_under_the_new_policy(async_run):
    out, log = async_run
    tb = scalars(out / "tb")
    assert [s for s, _ in tb["train/policy_loss"]] == [1, 2, 3, 4]
    records = [s for s in steps(out) if s["purpose"] == "train"]
    resumed = [s for s in records if s["num_rounds"] == 2]
    assert resumed, "no weight sync landed while a rollout was in flight"
    for s in resumed:  # interrupted, parked, then finished under the new weights (one version per group)
        assert s["policy_version"] >= 1 and s["parked_s"] > 0
    # A sample interrupted mid-decode resumes from its partial response, re-verified as a draft (a group
    # still queued when the sync came decoded nothing in round 1 and keeps its old draft): decoded work
    # the rule accepts is kept.
    mid_decode = [s for s in resumed
                  if s["mode"] == "spec-rl" and s["num_tokens_decoded_all_rounds"] > s["num_tokens_decoded"]]
    assert any(sum(s["accepted_lens"]) > 0 for s in mid_decode), "no decoded work kept across a weight sync"
    assert "'interrupting': 4" in log  # every weight sync came through pause_generation


def test_dynamic_filtering_draws_filtered_groups_fresh(async_run):
    out, log = async_run
    keys = task_keys(out)
    constant = {keys[label] for label in keys if len(label.split()) == 2}
    assert len(constant) == 2 and log.count("Filtered out: avg_reward=1.00") >= 4
    records = [s for s in steps(out) if s["purpose"] == "train"]
    for prompt_id in constant:
        first, *later = [s for s in records if s["prompt_id"] == prompt_id]
        assert first["fresh_reason"] is None and later, "the filtered prompt was not asked for again"
        for s in later:  # never re-drafted from its own filtered samples: an exact (lossless) draw instead
            assert s["fresh_reason"] in ("filtered", "repeat") and s["mode"] == "exact"
            assert s["num_fully_reused"] == 0
        assert any(s["fresh_reason"] == "filtered" for s in later)
    others = [s for s in records if s["prompt_id"] not in constant and s["draft_lens"][0] > 0 and s["num_rounds"] == 1]
    assert any(s["mode"] == "spec-rl" and s["num_fully_reused"] > 0 for s in others)  # the rest keeps SPEC-RL reuse


def test_joining_a_cluster_without_enough_gpu_slots_is_refused(cluster):
    code = ("from integrations.openrlhf.ray_start import start_or_join, RayStartError\n"
            "try:\n    start_or_join(4, 99, None)\nexcept RayStartError as e:\n    print('REFUSED', e)\n")
    proc = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": cluster})
    assert "REFUSED" in proc.stdout and "offers 4 GPU slots; this run needs 99" in proc.stdout, proc.stderr[-2000:]
