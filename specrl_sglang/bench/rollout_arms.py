"""One measured step of `bench rollout`: every arm on the same prompts and weights, each after a
KV flush. Stores: the spec-rl arm's (its samples are the next epoch's drafts, and they train the
policy), the exact arm's; floor and barrier read the spec-rl arm's drafts and record nothing, so
they run before the spec-rl arm records this step's samples. All arms of a step use the same
acceptance randomness, so barrier and spec-rl cut the same drafts at the same tokens and differ
only in the flow (and in the continuations' own sampling)."""

from __future__ import annotations

import math
from typing import Any

from specrl_sglang.rollout_types import Sample
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.spec_config import SpecConfig
from specrl_sglang.step_stats import StepStats

# arm -> (store, mode, lenience or None for the workload's, record, pipelined); floor/barrier before spec-rl.
_PLAN = {
    "vanilla": ("spec-rl", "vanilla", None, False, True),
    "floor": ("spec-rl", "spec-rl", math.inf, False, True),
    "barrier": ("spec-rl", "spec-rl", None, False, False),
    "exact": ("exact", "exact", None, True, True),
    "spec-rl": ("spec-rl", "spec-rl", None, True, True),
}


def arm_figures(stats: StepStats) -> dict[str, Any]:
    return {
        "total_s": stats.total_s, "verify_s": stats.verify_s, "continue_s": stats.continue_s, "host_s": stats.host_s,
        "num_samples": stats.num_samples, "num_with_draft": stats.num_with_draft,
        "num_fully_reused": stats.num_fully_reused, "full_reuse_ratio": stats.full_reuse_ratio,
        "accepted_tokens": stats.mean_accepted_len * stats.num_with_draft,
        "num_tokens_decoded": stats.num_tokens_decoded, "response_tokens": stats.mean_response_len * stats.num_samples,
        "kv_cached_tokens": stats.kv_cached_tokens, "kv_expected_tokens": stats.kv_expected_tokens,
        "num_verify_requests": stats.num_verify_requests,
    }


def measure_step(runtime: RolloutRuntime, workload, batch, arms: tuple[str, ...],
                 stores: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[Sample]]:
    """Roll `batch` out in every arm of `arms`; returns (arm -> figures, the spec-rl arm's samples).
    `stores` (store name -> draft store) persists across steps; the runtime's store is swapped."""
    from radix_cache.trajectory_store import TrajectoryStore

    config = workload.config
    figures: dict[str, dict[str, Any]] = {}
    spec_samples: list[Sample] = []
    step_index = runtime.num_steps  # every arm draws the same acceptance randomness (seed, step_index)
    for arm in (a for a in _PLAN if a in arms):
        runtime.num_steps = step_index
        store_name, mode, lenience, record, pipelined = _PLAN[arm]
        store = stores.setdefault(store_name, TrajectoryStore(max_tokens=None))
        if runtime.store is not store:
            runtime.replace_store(store)
        runtime.config = SpecConfig(mode=mode, lenience=config.lenience if lenience is None else lenience,
                                    seed=config.seed, record=record, pipelined=pipelined)
        runtime.flush_cache()
        result = runtime.step(batch.requests, workload.sampling, config.max_response_len)
        figures[arm] = arm_figures(result.stats)
        if arm == "spec-rl":
            spec_samples = result.samples
    runtime.num_steps = step_index + 1
    return figures, spec_samples
