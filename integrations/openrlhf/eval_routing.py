"""Send OpenRLHF's evaluation rollouts to the engines' eval path (never speculated, never stored).

OpenRLHF evaluates through the same engine call as training (`generate_responses`), differing
only in its sampling settings (`--eval.temperature`, `--eval.n_samples_per_prompt`) and dataset,
which may equal the training set: nothing in a call says it is an eval call. `install()` wraps
`SamplesGenerator.generate_eval_samples` (openrlhf/trainer/ppo_utils/samples_generator.py, used by
the sync trainer and the async generator) so that, while it runs, its engine handles are
`EvalRoute`s: `generate_responses` goes to the engine's `generate_eval_responses`, every other
method (load queries, sleep/wake) to the engine unchanged. The engine serves those calls as plain
rollouts (mode "vanilla") at the eval sampling settings, under scratch prompt ids the draft store
never stores. Installed by worker_setup on every Ray worker of a sglang-spec run.
"""

from __future__ import annotations

import functools
from typing import Any

_WRAPPED = "_specrl_eval_route"


class EvalRoute:
    """An engine handle whose `generate_responses` is the engine's `generate_eval_responses`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, "generate_eval_responses" if name == "generate_responses" else name)


def _routed(method):
    @functools.wraps(method)
    def generate_eval_samples(self, *args: Any, **kwargs: Any):
        engines = self.vllm_engines
        self.vllm_engines = [EvalRoute(e) for e in engines]
        try:
            return method(self, *args, **kwargs)
        finally:
            self.vllm_engines = engines

    setattr(generate_eval_samples, _WRAPPED, True)
    return generate_eval_samples


def install() -> None:
    """Wrap OpenRLHF's SamplesGenerator.generate_eval_samples (idempotent)."""
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    if not getattr(SamplesGenerator.generate_eval_samples, _WRAPPED, False):
        SamplesGenerator.generate_eval_samples = _routed(SamplesGenerator.generate_eval_samples)
