"""When a prompt group must not be re-drafted from itself, and what serves it instead.

SPEC-RL's lenient rule accepts most of a draft when the policy barely moved, so a group sampled
from its own recent samples largely reproduces them. That is the point across epochs, and wrong
in three cases, in which `FreshDraws` serves the group with a fresh draw instead:

1. "filtered": OpenRLHF's DAPO dynamic filter (`--algo.dynamic_filtering_enable`) dropped the
   group the last time (its mean score was outside the range: typically all samples right or all
   wrong). Re-drafting it from those samples would reproduce the same scores, and the filter would
   drop it pass after pass. `note_scores` applies OpenRLHF's own predicate
   (`not lo < mean(scores) < hi`, samples_generator._generate_vllm) to every training group.
2. "repeat": the prompt was already rolled out under the current policy version (OpenRLHF asked
   for it again within one training step, e.g. a duplicate prompt) or is in flight right now:
   its drafts are this very policy's samples.
3. "identical": a spec-rl step returned n > 1 samples that are all the same fully reused draft (a
   zero-variance group copied from drafts); the group is drawn again at once (`needs_redraw`).

A fresh draw uses the lossless "exact" rule where the sampling settings allow it (temperature 1,
top_p 1, top_k -1, min_p 0): the group is then distributed exactly as freshly sampled groups, the
drafts only save compute. Otherwise it is decoded from scratch ("vanilla"). The configured mode
"exact" is lossless already and "vanilla" never drafts, so the rule only changes "spec-rl" steps.
State lives on the actor's event loop only (no lock); `fresh_ids` is saved with checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import check_mode_sampling


class StepRule(NamedTuple):
    mode: str  # the SpecConfig mode the step runs with
    fresh_reason: str | None  # None: the configured rule; else "filtered" | "repeat" | "identical"


def fresh_mode(sampling: SamplingConfig) -> str:
    """The lossless exact rule where `sampling` allows it, else no drafts at all."""
    try:
        check_mode_sampling("exact", sampling)
        return "exact"
    except ValueError:
        return "vanilla"


def score_of(value: Any) -> float | None:
    """A sample's score as OpenRLHF reads it (`e.scores[0].item()`): the first element, as float."""
    if value is None:
        return None
    return float(np.asarray(getattr(value, "detach", lambda: value)(), dtype=np.float64).reshape(-1)[0])


class FreshDraws:
    def __init__(self, mode: str, filtering_range: tuple[float, float] | None = None) -> None:
        self.mode, self.filtering_range = mode, filtering_range
        self.fresh_ids: set[str] = set()  # filtered last time: drawn fresh next time
        self._served_at: dict[str, int] = {}  # prompt id -> policy version of its last training step
        self._in_flight: dict[str, int] = {}
        self.counts = {"filtered": 0, "repeat": 0, "identical": 0}

    def rule_for(self, prompt_id: str, sampling: SamplingConfig, policy_version: int) -> StepRule:
        """The rule for a training group of `prompt_id` about to start (marks it in flight)."""
        self._in_flight[prompt_id] = self._in_flight.get(prompt_id, 0) + 1
        if self.mode != "spec-rl":
            return StepRule(self.mode, None)
        reason = None
        if prompt_id in self.fresh_ids:
            reason = "filtered"
        elif self._in_flight[prompt_id] > 1 or self._served_at.get(prompt_id) == policy_version:
            reason = "repeat"
        if reason is None:
            return StepRule(self.mode, None)
        self.counts[reason] += 1
        return StepRule(fresh_mode(sampling), reason)

    def step_done(self, prompt_id: str, rule: StepRule, policy_version: int | None) -> None:
        """Call once per `rule_for`, when its step ended (`policy_version` None if it failed)."""
        left = self._in_flight.get(prompt_id, 1) - 1
        if left:
            self._in_flight[prompt_id] = left
        else:
            self._in_flight.pop(prompt_id, None)
        if policy_version is not None:
            self._served_at[prompt_id] = policy_version
            if rule.fresh_reason == "filtered":
                self.fresh_ids.discard(prompt_id)  # drawn fresh once; marked again if filtered again

    def needs_redraw(self, rule: StepRule, samples: Sequence[Any]) -> bool:
        """True for a spec-rl group whose n > 1 samples are one fully reused draft, repeated."""
        if rule.mode != "spec-rl" or len(samples) < 2 or not all(s.fully_reused for s in samples):
            return False
        first = samples[0].token_ids
        if not all(np.array_equal(s.token_ids, first) for s in samples[1:]):
            return False
        self.counts["identical"] += 1
        return True

    def note_scores(self, prompt_id: str, scores: Iterable[Any]) -> bool:
        """Apply OpenRLHF's dynamic filter to a training group's scores; True if it will be dropped
        (the prompt is then drawn fresh the next time it is asked for)."""
        if self.filtering_range is None:
            return False
        values = [score_of(s) for s in scores]
        if not values or any(v is None for v in values):
            return False  # OpenRLHF filters only groups whose every sample has a score
        lo, hi = self.filtering_range
        if lo < sum(values) / len(values) < hi:
            return False
        self.fresh_ids.add(prompt_id)
        return True

    def new_policy_epoch(self) -> None:
        """Forget served versions (a restored run restarts its policy versions)."""
        self._served_at.clear()
