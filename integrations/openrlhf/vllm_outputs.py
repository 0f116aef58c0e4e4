"""vLLM-shaped request outputs, built from one SPEC-RL sample.

OpenRLHF's agent executors (openrlhf/utils/agent.py) read exactly these attributes of what
`llm_engine.generate(...)` returns:
    out.outputs[0].token_ids        list[int]
    out.outputs[0].text             str (detokenized response)
    out.outputs[0].finish_reason    "stop" | "length" | "abort"
    out.outputs[0].logprobs         None, or one {token_id: Logprob} dict per response token
    Logprob.logprob                 float
We mirror vLLM's field names (RequestOutput / CompletionOutput / Logprob) in plain picklable
dataclasses instead of importing vLLM's, whose module pulls vLLM's whole runtime config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: None
    outputs: list[CompletionOutput]
    finished: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)  # our per-sample SPEC-RL metrics


def build_request_output(
    request_id: str,
    prompt_token_ids: list[int],
    token_ids: np.ndarray,
    logprobs: np.ndarray | None,
    finish_reason: str,
    text: str,
    metrics: dict[str, Any] | None = None,
) -> RequestOutput:
    """One finished request. `logprobs` (float [len(token_ids)]) or None when none were asked for."""
    ids = [int(t) for t in np.asarray(token_ids).tolist()]
    per_token = None
    cumulative = None
    if logprobs is not None:
        lp = np.asarray(logprobs, dtype=np.float64)
        if lp.shape != (len(ids),):
            raise ValueError(f"{lp.shape[0] if lp.ndim else 0} log-probs for {len(ids)} tokens")
        per_token = [{t: Logprob(float(v), rank=None)} for t, v in zip(ids, lp.tolist())]
        cumulative = float(lp.sum())
    completion = CompletionOutput(
        index=0,
        text=text,
        token_ids=ids,
        cumulative_logprob=cumulative,
        logprobs=per_token,
        finish_reason=finish_reason,
    )
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=list(prompt_token_ids),
        prompt_logprobs=None,
        outputs=[completion],
        metrics=dict(metrics or {}),
    )
