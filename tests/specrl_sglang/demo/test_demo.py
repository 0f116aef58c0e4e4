"""The embedded RL demo and the rollout benchmark, end to end on a small configuration."""

import json
import math

import numpy as np
import pytest

from specrl_sglang.demo.config import DemoConfig
from specrl_sglang.demo.grpo import group_advantages
from specrl_sglang.demo.task import TaskConfig, make_problems, reward


def small_config(tmp_path, **overrides):
    base = dict(
        out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        epochs=2,
        num_prompts=4,
        prompts_per_step=4,
        samples_per_prompt=2,
        max_response_len=12,
        warmup_steps=3,
    )
    base.update(overrides)
    return DemoConfig(**base)


def test_task_rewards_and_prompt_ids():
    problems = make_problems(TaskConfig(num_prompts=10, seed=3))
    assert len({p.prompt_id for p in problems}) == 10
    p = problems[0]
    assert reward(p.answer, p.answer, finished=True) == 1.0
    assert reward(p.answer, p.answer, finished=False) == 0.0
    assert 0.0 <= reward(" a", p.answer, finished=True) < 1.0


def test_group_advantages_are_normalised_per_group():
    adv = group_advantages(np.array([1.0, 0.0, 0.5, 0.5], dtype=np.float32), 2)
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0], atol=1e-4)
    with pytest.raises(ValueError, match="groups"):
        group_advantages(np.zeros(3, dtype=np.float32), 2)


def test_bad_demo_settings_get_clear_errors():
    with pytest.raises(ValueError, match="model_size"):
        DemoConfig(model_size="huge")
    with pytest.raises(ValueError, match="samples_per_prompt"):
        DemoConfig(samples_per_prompt=1)
    with pytest.raises(ValueError, match="arms"):
        DemoConfig(arms=("fast",))


def test_demo_runs_both_arms_and_writes_report_and_plot(tmp_path):
    from specrl_sglang.demo.main import run_demo

    config = small_config(tmp_path, lenience=math.inf)
    report = run_demo(config, show_progress=False)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    spec_epochs = report["arms"]["spec"]["epochs"]
    assert spec_epochs[0]["tokens_reused"] == 0  # epoch 0 has no drafts
    assert spec_epochs[1]["tokens_reused"] > 0 and spec_epochs[1]["full_reuse_ratio"] == 1.0  # l = inf
    assert report["arms"]["vanilla"]["epochs"][1]["tokens_reused"] == 0
    for arm in ("vanilla", "spec"):
        for step in report["arms"][arm]["steps"]:
            assert math.isfinite(step["loss"]) and 0.0 <= step["reward"] <= 1.0
