"""The demo report's reward change: paired by prompt across epochs, not by step."""

import math

import numpy as np

from specrl_sglang.demo.report import reward_change


def _rows(epochs):
    """epochs: list of epochs, each a list of steps, each a {prompt: reward} dict."""
    return [{"epoch": e, "reward": float(np.mean(list(step.values()))), "prompt_rewards": step}
            for e, steps in enumerate(epochs) for step in steps]


def test_the_gain_is_paired_by_prompt_so_step_difficulty_does_not_count_as_noise():
    # two steps per epoch: an easy pair of prompts and a hard pair, drawn in a different order each
    # epoch; every prompt gains exactly 0.1, so the paired SE is 0 while step rewards spread widely
    first = [{"a": 0.9, "b": 0.8}, {"c": 0.2, "d": 0.1}]
    last = [{"c": 0.3, "a": 1.0}, {"d": 0.2, "b": 0.9}]
    out = reward_change(_rows([first, [{"a": 0.5, "b": 0.5}, {"c": 0.5, "d": 0.5}], last]))
    assert math.isclose(out["gain"], 0.1) and out["gain_se"] < 1e-9 and out["num_prompts_paired"] == 4
    assert math.isclose(out["initial"], 0.5) and math.isclose(out["final"], 0.6)


def test_the_standard_error_is_the_spread_of_the_paired_differences():
    first = [{"a": 0.0, "b": 0.0, "c": 0.0}]
    last = [{"a": 0.1, "b": 0.2, "c": 0.6}]
    out = reward_change(_rows([first, last]))
    diffs = np.array([0.1, 0.2, 0.6])
    assert math.isclose(out["gain"], diffs.mean()) and math.isclose(out["gain_se"], diffs.std(ddof=1) / math.sqrt(3))


def test_one_epoch_has_no_gain_error():
    out = reward_change(_rows([[{"a": 0.5, "b": 0.7}]]))
    assert out["gain"] == 0.0 and math.isnan(out["gain_se"])
