"""The workload's tasks and settings: problems, targets, rewards, defaults and bad values."""

import argparse

import numpy as np
import pytest

from specrl_sglang.workload import carry_add_task as ca
from specrl_sglang.workload.cli_args import add_workload_args, workload_from_args
from specrl_sglang.workload.config import WarmupConfig, WorkloadConfig
from specrl_sglang.workload.tasks import TASK_NAMES, get_task


def test_carry_add_working_writes_every_carry():
    p = ca.make_problem([7, 3, 9, 1], [2, 5, 8, 4])  # 1937 + 4852, units first
    assert p.prompt == "add:\nx = D1 C9 B3 A7\ny = N4 M8 L5 K2\n"
    assert p.answer.splitlines() == [
        "a: A7+K2+0=9 write 9 carry 0", "b: B3+L5+0=8 write 8 carry 0", "c: C9+M8+0=17 write 7 carry 1",
        "d: D1+N4+1=6 write 6 carry 0", "answer: d6 c7 b8 a9"]
    carried = ca.make_problem([9, 9], [9, 9])  # a final carry adds a place
    assert carried.answer.splitlines()[-1] == "answer: c1 b9 a8" and carried.total == 198
    with pytest.raises(ValueError, match="same number of digits"):
        ca.make_problem([1, 2], [3])


def test_carry_add_reward_reads_the_answer_line_only():
    p = ca.make_problem([7, 3, 9, 1], [2, 5, 8, 4])  # 6789
    assert ca.reward(p.answer, p, finished=True) == 1.0
    assert ca.reward(p.answer, p, finished=False) == 0.0  # truncated
    assert ca.reward("a: nonsense\nanswer: d6 c7 b8 a9\n", p, True) == 1.0  # working not scored
    assert ca.reward("answer: d6 c7 b0 a9\n", p, True) == pytest.approx(0.5 * 3 / 4)
    assert ca.reward("answer: e1 d6 c7 b8 a9\n", p, True) == pytest.approx(0.5 * 4 / 5)
    assert ca.reward("no answer here", p, True) == 0.0 and ca.parse_answer("answer:\n") is None
    assert ca.parse_answer("answer: b1 a2\nanswer: a3\n") == "3"  # the last answer line counts


def test_carry_add_problems_are_long_varied_and_distinct():
    task = get_task("carry-add")
    problems = task.problems(64, seed=5)
    assert len({p.prompt for p in problems}) == 64 and problems == task.problems(64, seed=5)
    lengths = np.array([len(task.target(p)) + 1 for p in problems])  # characters = tokens (no merges) + EOS
    assert lengths.mean() >= 150 and lengths.max() <= 512 and lengths.std() > 30
    assert task.problems(64, seed=6)[0].prompt != problems[0].prompt


def test_every_task_answers_its_own_target_with_full_reward():
    for name in TASK_NAMES:
        task = get_task(name)
        for p in task.problems(8, seed=1):
            assert task.reward(task.target(p), p, finished=True) == 1.0
            assert task.answer_of(task.target(p))
    with pytest.raises(ValueError, match="task must be one of"):
        get_task("sudoku")


def test_workload_defaults_come_from_the_task_and_bad_values_are_named():
    assert WorkloadConfig().task == "carry-add" and WorkloadConfig().max_response_len == 512
    rev = WorkloadConfig.for_task("reversal", seed=3)
    assert (rev.max_response_len, rev.num_prompts, rev.seed, rev.warmup.steps, rev.model_size) == (24, 64, 3, 400, "tiny")
    assert WorkloadConfig.for_task("carry-add").model_size == "small"
    for bad, match in [({"task": "x"}, "task"), ({"model_size": "huge"}, "model_size"), ({"epochs": 0}, "epochs"),
                       ({"samples_per_prompt": 1}, "samples_per_prompt"), ({"lr": float("nan")}, "lr"), ({"seed": -1}, "seed"),
                       ({"lenience": 0.5}, "lenience")]:
        with pytest.raises(ValueError, match=match):
            WorkloadConfig(**bad)
    with pytest.raises(ValueError, match="warm-up"):
        WarmupConfig(steps=-1)
    assert WarmupConfig(steps=100).lr_at(1) < WarmupConfig(steps=100).lr_at(50)


def test_workload_flags_default_to_the_task_and_refuse_bad_values():
    p = argparse.ArgumentParser()
    add_workload_args(p, epochs=2)
    cfg = workload_from_args(p.parse_args(["--task", "reversal", "--seed", "4", "--warmup-steps", "7"]))
    assert (cfg.task, cfg.epochs, cfg.seed, cfg.warmup.steps, cfg.max_response_len) == ("reversal", 2, 4, 7, 24)
    assert workload_from_args(p.parse_args(["--epochs", "5"])).epochs == 5
    with pytest.raises(SystemExit, match="lenience"):
        workload_from_args(p.parse_args(["--lenience", "nan"]))
    with pytest.raises(SystemExit, match="num_prompts"):
        workload_from_args(p.parse_args(["--num-prompts", "0"]))
