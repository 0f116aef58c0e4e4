"""OpenRLHF's (vLLM) sampling parameters -> our `SamplingConfig`, and its rollout log-prob convention.

OpenRLHF builds one `vllm.SamplingParams` per rollout batch (samples_generator.py) and its agent
executors copy it per request, setting `max_tokens` when it is None. We read the parameters by
attribute name (duck typing), so the real vLLM class and any look-alike translate the same way.

Contract: `translate_sampling` either returns a `RolloutParams` that reproduces the request's
sampling distribution exactly on SGLang, or raises `UnsupportedSamplingError` naming every
parameter it cannot honour. Nothing is silently dropped.

Log-prob convention. Our engine returns raw log-probs: log_softmax(logits) at temperature 1 (see
specrl_sglang/sampling.py). OpenRLHF asks vLLM for `logprobs_mode="processed_logprobs"` (log-probs
after temperature and top-k/top-p) whenever its importance-sampling correction is on, otherwise for
vLLM's default `raw_logprobs`. Both agree with ours exactly when temperature is 1 (or 0, greedy) and
no top-k / top-p / min-p truncation is applied; any other combination with log-probs requested in
processed mode is refused, because the scaled values cannot be derived from the chosen token's raw
log-prob alone (they need the whole distribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from specrl_sglang.sampling import SamplingConfig

PROCESSED = "processed_logprobs"
RAW = "raw_logprobs"
LOGPROB_MODES = (None, RAW, PROCESSED)

# vLLM parameters we cannot honour, with the value that means "off" (anything else is refused).
_MUST_BE_DEFAULT: dict[str, Any] = {
    "n": 1,  # OpenRLHF's executors request one completion per call
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "seed": None,  # per-request seeds: SGLang samples from the engine's seeded generator
    "stop": None,  # stop strings need detokenization inside the engine (skip_tokenizer_init)
    "prompt_logprobs": None,
    "logprob_token_ids": None,
    "logits_processors": None,
    "structured_outputs": None,
    "logit_bias": None,
    "allowed_token_ids": None,
    "bad_words": None,
    "include_stop_str_in_output": False,
    "truncate_prompt_tokens": None,
}


class UnsupportedSamplingError(ValueError):
    """A sampling parameter (or combination) the SGLang speculative backend cannot honour."""


@dataclass(frozen=True)
class RolloutParams:
    """What one OpenRLHF request asks of a rollout step."""

    sampling: SamplingConfig
    max_new_tokens: int | None  # None: not set yet (executors fill it from max_length - prompt_len)
    num_logprobs: int | None  # None: no log-probs wanted; else vLLM's `logprobs` (we return the sampled token's)
    skip_special_tokens: bool  # for the detokenized `text` of vLLM-shaped outputs


def _is_off(value: Any, default: Any) -> bool:
    if default is None:  # vLLM normalises some None defaults to empty containers
        return value is None or (hasattr(value, "__len__") and len(value) == 0)
    return value == default


def translate_sampling(params: Any, *, logprobs_mode: str | None = None) -> RolloutParams:
    """Translate a vLLM `SamplingParams` (or look-alike) into RolloutParams; see module docstring."""
    if logprobs_mode not in LOGPROB_MODES:
        raise UnsupportedSamplingError(f"logprobs_mode must be one of {LOGPROB_MODES}, got {logprobs_mode!r}")
    bad = []
    for name, default in _MUST_BE_DEFAULT.items():
        value = getattr(params, name, default)
        if not _is_off(value, default):
            bad.append(f"{name}={value!r}")
    min_tokens = int(getattr(params, "min_tokens", 0) or 0)
    if min_tokens > 1:
        bad.append(f"min_tokens={min_tokens} (only 0 or 1: every response has at least one token)")
    if bad:
        raise UnsupportedSamplingError("the sglang-spec rollout backend does not support: " + ", ".join(bad))

    temperature = float(getattr(params, "temperature", 1.0))
    top_p = float(getattr(params, "top_p", 1.0))
    top_k = int(getattr(params, "top_k", 0) or 0)
    min_p = float(getattr(params, "min_p", 0.0) or 0.0)
    sampling = SamplingConfig(
        temperature=temperature,
        top_p=top_p,
        top_k=-1 if top_k <= 0 else top_k,  # vLLM: 0 or -1 disables top-k; SamplingConfig: -1
        min_p=min_p,
        stop_token_ids=tuple(int(t) for t in (getattr(params, "stop_token_ids", None) or ())),
        ignore_eos=bool(getattr(params, "ignore_eos", False)),
    )
    max_tokens = getattr(params, "max_tokens", None)
    if max_tokens is not None and int(max_tokens) < 1:
        raise UnsupportedSamplingError(f"max_tokens must be >= 1, got {max_tokens}")
    num_logprobs = getattr(params, "logprobs", None)
    if num_logprobs is not None and logprobs_mode == PROCESSED:
        check_processed_logprobs(sampling)
    return RolloutParams(
        sampling=sampling,
        max_new_tokens=None if max_tokens is None else int(max_tokens),
        num_logprobs=None if num_logprobs is None else int(num_logprobs),
        skip_special_tokens=bool(getattr(params, "skip_special_tokens", True)),
    )


def check_processed_logprobs(sampling: SamplingConfig) -> None:
    """Raise unless raw log-probs equal vLLM's processed (temperature/top-k/top-p) log-probs."""
    problems = sampling.reshaping_settings(allow_greedy=True)
    if problems:
        raise UnsupportedSamplingError(
            "OpenRLHF's importance-sampling correction (--algo.advantage.is_correction_level) wants "
            "temperature-scaled (processed) rollout log-probs; the SGLang speculative backend returns raw "
            f"log-probs, equal to processed ones only at temperature 1 without truncation, got {', '.join(problems)}. "
            "Use --rollout.temperature 1.0 --rollout.top_p 1.0 or turn the correction off."
        )
