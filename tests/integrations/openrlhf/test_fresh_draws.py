"""FreshDraws: which groups are drawn fresh (filtered, repeat, identical) and with which rule."""

from types import SimpleNamespace

import numpy as np
import torch

from integrations.openrlhf.fresh_draws import FreshDraws, StepRule, fresh_mode, score_of
from specrl_sglang.sampling import SamplingConfig

T1, T06 = SamplingConfig(), SamplingConfig(temperature=0.6)


def sample(tokens, full):
    return SimpleNamespace(token_ids=np.array(tokens), fully_reused=full)


def test_fresh_draws_are_exact_where_lossless_else_vanilla():
    assert fresh_mode(T1) == "exact" and fresh_mode(T06) == "vanilla" and fresh_mode(SamplingConfig(top_p=0.9)) == "vanilla"


def test_dapo_filter_predicate_marks_groups_and_one_fresh_draw_clears_it():
    rule = FreshDraws("spec-rl", (0.0, 1.0))
    assert rule.note_scores("p", [torch.tensor([1.0])] * 4)  # mean 1.0 is not < 1: OpenRLHF drops it
    assert not rule.note_scores("q", [0.0, 1.0, 0.5, 0.5])
    assert rule.note_scores("r", [0.0, 0.0])
    assert not rule.note_scores("s", [1.0, None])  # OpenRLHF filters only fully scored groups
    assert rule.fresh_ids == {"p", "r"}
    first = rule.rule_for("p", T1, policy_version=3)
    assert first == StepRule("exact", "filtered")
    rule.step_done("p", first, 3)
    assert "p" not in rule.fresh_ids and rule.rule_for("q", T1, 3) == StepRule("spec-rl", None)
    assert FreshDraws("spec-rl", None).note_scores("p", [1.0, 1.0]) is False  # filtering off


def test_a_prompt_in_flight_or_served_under_this_policy_is_a_repeat():
    rule = FreshDraws("spec-rl")
    a = rule.rule_for("p", T06, 1)
    assert a == StepRule("spec-rl", None)
    assert rule.rule_for("p", T06, 1) == StepRule("vanilla", "repeat")  # while the first is in flight
    rule.step_done("p", a, 1)
    rule.step_done("p", a, 1)
    assert rule.rule_for("p", T1, 1) == StepRule("exact", "repeat")  # served under version 1 already
    rule.step_done("p", a, 1)
    assert rule.rule_for("p", T1, 2) == StepRule("spec-rl", None)  # a new policy: drafts are the old policy's


def test_only_identical_fully_reused_groups_are_redrawn_and_only_in_spec_rl():
    rule = FreshDraws("spec-rl")
    spec = StepRule("spec-rl", None)
    assert rule.needs_redraw(spec, [sample([1, 2], True)] * 3)
    assert not rule.needs_redraw(spec, [sample([1, 2], True), sample([1, 3], True)])
    assert not rule.needs_redraw(spec, [sample([1, 2], True), sample([1, 2], False)])
    assert not rule.needs_redraw(spec, [sample([1, 2], True)])
    assert not rule.needs_redraw(StepRule("exact", "identical"), [sample([1, 2], True)] * 3)
    assert rule.counts["identical"] == 1


def test_exact_and_vanilla_modes_are_never_changed():
    for mode in ("exact", "vanilla"):
        rule = FreshDraws(mode, (0.0, 1.0))
        rule.note_scores("p", [1.0, 1.0])
        assert rule.rule_for("p", T1, 0) == StepRule(mode, None)


def test_scores_are_read_as_openrlhf_reads_them():
    assert score_of(torch.tensor([0.25])) == 0.25 and score_of(0.5) == 0.5 and score_of(None) is None
