"""Speculative-rollout settings: the mode, the lenience and the acceptance randomness.

Modes (`SpecConfig.mode`):
- "spec-rl" (default): SPEC-RL's rule. Draft token i is accepted with probability
  min(1, l * p_new / p_old); decoding continues afresh after the first rejection. Lossy by design:
  the rollout distribution leans towards the previous epoch's samples, more so for larger l.
- "exact": lossless. The draft is a point-mass proposal fixed before the step: token i is accepted
  with probability p_new(y_i | prefix); at the first rejection the replacement is sampled inside
  SGLang from p_new with y_i banned (renormalised) and decoding continues. Every token is then
  distributed exactly as under fresh sampling. Defined for the sampler at temperature 1 with
  top_p = 1, top_k = -1, min_p = 0 (the RL default); other settings are refused.
- "vanilla": no drafts; every sample is decoded from scratch (the baseline).
This module owns the defaults (`DEFAULT_LENIENCE` = e^0.5, the paper's GRPO setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from specrl_sglang.acceptance import check_lenience
from specrl_sglang.sampling import SamplingConfig

Mode = Literal["spec-rl", "exact", "vanilla"]
MODES: tuple[str, ...] = ("spec-rl", "exact", "vanilla")
DEFAULT_MODE: Mode = "spec-rl"
DEFAULT_LENIENCE = math.exp(0.5)


def check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def check_mode_sampling(mode: str, sampling: SamplingConfig) -> None:
    """ValueError unless `sampling` is one the mode is defined for (exact: the plain sampler)."""
    if mode != "exact":
        return
    off = sampling.reshaping_settings()
    if off:
        raise ValueError(
            f"mode 'exact' is lossless only for temperature 1, top_p 1, top_k -1, min_p 0; got {', '.join(off)} "
            "(use mode 'spec-rl' or 'vanilla' for other sampling settings)"
        )


@dataclass(frozen=True)
class SpecConfig:
    """How a rollout step uses drafts.

    lenience: l >= 1 for "spec-rl" (1 = vanilla speculative acceptance, inf = reuse every draft);
    ignored by "exact" and "vanilla". seed: step k's acceptance draws come from (seed, k), fresh
    every step, reproducible. record: store each step's samples as the next epoch's drafts.
    pipelined: submit each sample's continuation as soon as its own verify result is in (False:
    wait for every verify of the step first - the two-barrier flow, kept for comparison).
    """

    mode: Mode = DEFAULT_MODE
    lenience: float = DEFAULT_LENIENCE
    seed: int = 0
    record: bool = True
    pipelined: bool = True

    def __post_init__(self) -> None:
        check_mode(self.mode)
        object.__setattr__(self, "lenience", check_lenience(self.lenience))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    @property
    def uses_drafts(self) -> bool:
        return self.mode != "vanilla"

    @property
    def effective_lenience(self) -> float:
        """The l of the acceptance rule actually applied (NaN where no lenience applies)."""
        return self.lenience if self.mode == "spec-rl" else math.nan
