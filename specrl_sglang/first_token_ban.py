"""Exact mode's residual draw inside SGLang: the first generated token must not be the rejected one.

At the first rejected draft position k the replacement token must come from p(. | prefix) with the
draft token y_k excluded and renormalised, and decoding then goes on unrestricted. SGLang has no
per-position ban, and a custom logit processor that keys on `len(req.output_ids) == 0` is wrong
under SGLang's overlap scheduler (output_ids lags one step behind, so the second position is banned
too - measured; see tests/specrl_sglang/test_exact_mode.py). So the draw is two requests:
1. prefix, max_new_tokens 1, `logit_bias {y: -1e9}` (exp(-1e9) is exactly 0 in float32): the
   sampler's own draw from the renormalised residual; it reuses the verify pass's KV;
2. if that token did not end the response, prefix + [z], max_new_tokens - 1, no bias: it reuses the
   KV of request 1's prefix from the radix cache and continues.
Both requests are plain SGLang sampling requests, so this works the same in-process and over HTTP.

Log-prob: SGLang returns log-probs after logit_bias, i.e. log(p(z) / (1 - p(y))) for the first
token; `marginal_logprobs` adds back log(1 - p(y)) (p(y) from the verify pass), so every returned
log-prob is the policy's own p(z) - what a trainer's importance ratio needs.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import numpy as np

BAN_BIAS = -1e9


class TokenBan(NamedTuple):
    token_id: int  # the rejected draft token
    logprob: float  # its log-prob under the current policy at that position (from verify)


def first_request_params(sampling_params: dict[str, Any], ban: TokenBan) -> dict[str, Any]:
    """Sampling params of request 1: one token, the rejected one biased out."""
    bias = dict(sampling_params.get("logit_bias") or {})
    bias[str(int(ban.token_id))] = BAN_BIAS
    return {**sampling_params, "max_new_tokens": 1, "logit_bias": bias}


def marginal_logprobs(logprobs: np.ndarray, ban: TokenBan | None) -> np.ndarray:
    """Turn the first sampled token's renormalised log-prob back into the policy's marginal one."""
    if ban is None or logprobs.shape[0] == 0:
        return logprobs
    p_banned = math.exp(min(0.0, float(ban.logprob)))
    out = logprobs.astype(np.float32, copy=True)
    out[0] = float(out[0]) + (math.log1p(-p_banned) if p_banned < 1.0 else -math.inf)
    return out


Send = Callable[[list[int], dict[str, Any]], Awaitable[Any]]  # (input_ids, sampling params) -> GenerateResult
Join = Callable[[Any, Any], Any]


async def generate_with_ban(send: Send, join: Join, prefix_ids: list[int], sampling_params: dict[str, Any],
                            ban: TokenBan) -> Any:
    """Run the two requests (see module docstring) with the engine's own `send`; `join(first, rest)`
    concatenates two results (rest may be None when the first token ended the response)."""
    first = await send(prefix_ids, first_request_params(sampling_params, ban))
    budget = int(sampling_params["max_new_tokens"]) - 1
    if first.finish_reason != "length" or budget < 1 or first.token_ids.shape[0] == 0:
        return join(first, None)
    rest = await send(prefix_ids + [int(first.token_ids[0])], {**sampling_params, "max_new_tokens": budget})
    return join(first, rest)
