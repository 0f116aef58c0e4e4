"""The pure SPEC-RL acceptance rule: statistics, edge cases, reproducibility, bad input."""

import math

import numpy as np
import pytest

from specrl_sglang.acceptance import accepted_len, accepted_lens, acceptance_rng, check_lenience


@pytest.mark.parametrize("lenience", [1.0, math.exp(0.5), 3.0])
@pytest.mark.parametrize("log_ratio", [-2.0, -0.7, -0.2, 0.0, 0.5])
def test_single_token_acceptance_rate_matches_min_one_l_ratio(lenience, log_ratio):
    rng = acceptance_rng(123, 0)
    trials = 20000
    new = np.array([math.log(0.3) + log_ratio])
    old = np.array([math.log(0.3)])
    accepted = sum(accepted_len(new, old, lenience, rng) for _ in range(trials))
    expected = min(1.0, lenience * math.exp(log_ratio))
    sigma = math.sqrt(max(expected * (1 - expected), 1e-9) / trials)
    assert abs(accepted / trials - expected) <= 5 * sigma + 1e-9


def test_prefix_length_is_geometric_in_the_per_token_rate():
    # Each token is accepted with q = l * p/q_old = 0.8; P(accepted_len >= k) = 0.8^k.
    rng = acceptance_rng(7, 3)
    draft_len = 12
    new = np.full(draft_len, math.log(0.4))
    old = np.full(draft_len, math.log(0.5))
    lens = np.array([accepted_len(new, old, 1.0, rng) for _ in range(20000)])
    for k in (1, 3, 6):
        empirical = float((lens >= k).mean())
        assert abs(empirical - 0.8**k) < 0.02, (k, empirical)
    assert lens.max() <= draft_len


def test_first_rejection_ends_prefix_even_if_later_tokens_pass():
    rng = acceptance_rng(0, 0)
    new = np.array([0.0, 0.0, -50.0, 0.0, 0.0])  # token 2 is (practically) impossible under p_new
    old = np.zeros(5)
    assert accepted_len(new, old, math.exp(0.5), rng) == 2


def test_unchanged_policy_accepts_everything_at_lenience_one():
    rng = acceptance_rng(1, 1)
    lp = np.log(np.random.default_rng(0).uniform(0.01, 1.0, size=200))
    assert accepted_len(lp, lp, 1.0, rng) == 200


def test_infinite_lenience_reuses_everything():
    rng = acceptance_rng(1, 1)
    assert accepted_len(np.full(30, -40.0), np.zeros(30), math.inf, rng) == 30


def test_empty_draft_and_minus_inf_log_probs():
    rng = acceptance_rng(0, 0)
    assert accepted_len(np.zeros(0), np.zeros(0), 1.0, rng) == 0
    assert accepted_len(np.array([-np.inf]), np.array([0.0]), 2.0, rng) == 0  # p_new = 0: rejected
    assert accepted_len(np.array([-1.0]), np.array([-np.inf]), 1.0, rng) == 1  # p_old = 0: ratio inf


def test_randomness_is_fresh_per_step_and_reproducible_from_seed():
    new, old = np.full(64, math.log(0.5)), np.zeros(64)
    a = [accepted_len(new, old, 1.0, acceptance_rng(5, step)) for step in range(20)]
    b = [accepted_len(new, old, 1.0, acceptance_rng(5, step)) for step in range(20)]
    assert a == b
    assert len(set(a)) > 1  # not the same cut every step (the reference implementation's flaw)


def test_batch_helper_matches_per_draft_calls():
    drafts_new = [np.full(n, -0.5) for n in (3, 0, 8)]
    drafts_old = [np.full(n, -0.2) for n in (3, 0, 8)]
    batch = accepted_lens(drafts_new, drafts_old, 1.2, acceptance_rng(9, 0))
    rng = acceptance_rng(9, 0)
    single = [accepted_len(n, o, 1.2, rng) for n, o in zip(drafts_new, drafts_old)]
    assert batch.tolist() == single


@pytest.mark.parametrize("bad", [0.5, 0.0, -1.0, float("nan")])
def test_lenience_below_one_or_nan_is_rejected(bad):
    with pytest.raises(ValueError, match="lenience"):
        check_lenience(bad)


def test_bad_log_prob_arrays_are_rejected():
    rng = acceptance_rng(0, 0)
    with pytest.raises(ValueError, match="equal in length"):
        accepted_len(np.zeros(3), np.zeros(4), 1.0, rng)
    with pytest.raises(ValueError, match="NaN"):
        accepted_len(np.array([np.nan]), np.zeros(1), 1.0, rng)
    with pytest.raises(ValueError, match="seed"):
        acceptance_rng(-1, 0)
