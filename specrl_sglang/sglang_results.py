"""Typed results from SGLang's answers to generate requests (the offline engine's and HTTP's are alike).

Pure functions over SGLang's `{"output_ids", "meta_info"}` dicts; shared by `engine.InProcessEngine`
and `http_engine.HttpEngine`. Every malformed or mixed answer is an `EngineError`, never a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from specrl_sglang.engine_api import EngineError, GenerateResult, VerifyAborted, VerifyResult
from specrl_sglang.first_token_ban import TokenBan, marginal_logprobs


def logprob_values(entries: Sequence[Any]) -> np.ndarray:
    """float32 log-probs of SGLang's (logprob, token_id, text) entries."""
    return np.array([e[0] for e in entries], dtype=np.float32)


def verify_result(out: dict[str, Any], draft_len: int) -> VerifyResult:
    """A VerifyResult from the answer to a prefill-only request with logprob_start_len = len(prompt) - 1."""
    meta = out["meta_info"]
    entries = (meta.get("input_token_logprobs") or [])[1:]  # entry 0 (the last prompt token) is None
    if len(entries) != draft_len:
        if (meta.get("finish_reason") or {}).get("type") == "abort":
            raise VerifyAborted(f"verify aborted: {meta.get('finish_reason')}")
        raise EngineError(f"verify: SGLang returned {len(entries)} log-probs for {draft_len} draft tokens")
    return VerifyResult(logprob_values(entries), int(meta.get("cached_tokens", 0)), meta.get("weight_version"))


def generate_result(out: dict[str, Any]) -> GenerateResult:
    """A GenerateResult from SGLang's answer to one generate request (offline engine or HTTP)."""
    meta = out["meta_info"]
    token_ids = np.asarray(out.get("output_ids") or [], dtype=np.int32)
    logprobs = logprob_values(meta.get("output_token_logprobs") or [])
    if len(logprobs) != len(token_ids):
        raise EngineError(f"SGLang returned {len(logprobs)} log-probs for {len(token_ids)} tokens")
    reason = (meta.get("finish_reason") or {}).get("type", "abort")
    spans = meta.get("weight_versions") or []
    if len({span.get("version") for span in spans}) > 1:  # SGLang's own record of the weights used
        raise EngineError(f"a response was decoded under several weight versions: {spans}")
    return GenerateResult(token_ids, logprobs, reason, int(meta.get("cached_tokens", 0)), meta.get("weight_version"))


def joined(first: GenerateResult, rest: GenerateResult | None, ban: TokenBan) -> GenerateResult:
    """The banned first token's request and its continuation as one result (marginal log-probs)."""
    lp = marginal_logprobs(first.logprobs, ban)
    if rest is None:
        return first._replace(logprobs=lp)
    if rest.weight_version != first.weight_version:
        raise EngineError(f"the two halves of a continuation ran under weights {first.weight_version} and {rest.weight_version}")
    return GenerateResult(np.concatenate([first.token_ids, rest.token_ids]), np.concatenate([lp, rest.logprobs]),
                          rest.finish_reason, first.cached_tokens, rest.weight_version)
