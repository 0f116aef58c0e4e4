"""Sampling parameters for rollouts, translated to SGLang's per-request dict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


TOP_K_MAX = 1 << 30  # SGLang's own "all tokens" top_k; larger values overflow its int32 tensors


@dataclass(frozen=True)
class SamplingConfig:
    """Per-step sampling parameters shared by every sample of a rollout step.

    Log-prob convention: the engine runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1, so both verify
    (prefill) and sampled (decode) log-probs are the raw log_softmax of the logits, i.e. at
    temperature 1, whatever `temperature` says. At temperature 1 (the RL default) these are exactly
    the sampler's probabilities; at other temperatures p_new / p_old are still measured in one
    convention, so the acceptance ratio stays consistent (see docs in README, "Log-probs").
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1 or self.top_k > TOP_K_MAX:
            raise ValueError(f"top_k must be -1 (off) or in [1, {TOP_K_MAX}], got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if any((not isinstance(t, int)) or t < 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be non-negative ints, got {self.stop_token_ids!r}")

    def reshaping_settings(self, allow_greedy: bool = False) -> list[str]:
        """The settings that make the sampler differ from plain sampling of softmax(logits)
        (temperature 1, top_p 1, top_k -1, min_p 0), as "name=value"; `allow_greedy` lets
        temperature 0 pass. Empty when raw log-probs are the sampler's own."""
        off = []
        if self.temperature != 1.0 and not (allow_greedy and self.temperature == 0.0):
            off.append(f"temperature={self.temperature}")
        if self.top_p != 1.0:
            off.append(f"top_p={self.top_p}")
        if self.top_k != -1:
            off.append(f"top_k={self.top_k}")
        if self.min_p != 0.0:
            off.append(f"min_p={self.min_p}")
        return off

    def to_sglang(self, max_new_tokens: int) -> dict[str, Any]:
        """The `sampling_params` dict of one SGLang request."""
        params: dict[str, Any] = {
            "max_new_tokens": int(max_new_tokens),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "ignore_eos": self.ignore_eos,
        }
        if self.stop_token_ids:
            params["stop_token_ids"] = list(self.stop_token_ids)
        return params
