"""The engine interface a rollout runtime drives: one in-process SGLang engine or SGLang HTTP servers.

Implementations: `engine.InProcessEngine` (an offline `sglang.Engine` in this process) and
`http_engine.HttpEngine` (one or more `python -m sglang.launch_server` workers).

Contract (every implementation):
- Every coroutine runs on the runtime's rollout loop (`LoopThread`); none is thread-safe.
- Inputs are trusted: the runtime validates token ids and lengths (`token_checks`) once, before
  any request; an engine does not re-check them.
- `route_key` (the prompt identity) names the prompt a request belongs to: a multi-worker engine
  sends every request of one prompt to the same worker, so a continuation finds the verify pass's
  KV there. A single engine ignores it.
- Log-prob convention: raw log_softmax of the logits (temperature 1) for both verify (prefill) and
  sampled (decode) tokens, whatever the sampling temperature.
- Weight-update calls (`begin_weight_update` ... `end_weight_update`, `update_weights_from_disk`,
  `update_weights_from_distributed`) and `flush_cache` are only called by the runtime inside its
  exclusive section (no request in flight). `end_weight_update` and the one-shot updates flush
  the KV cache before returning: KV computed under old weights never serves the new ones.
  `weight_version` is recorded in the engine (SGLang reports it in every response's meta_info).
- Failures raise `EngineError` (or `WorkerUnavailable`, which names the dead worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from specrl_sglang.first_token_ban import TokenBan
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.token_checks import ModelLimits

FLUSH_TIMEOUT_S = 60.0


class EngineError(RuntimeError):
    """SGLang refused or failed an operation; the message says which and why."""


class VerifyAborted(EngineError):
    """SGLang aborted a verify request (e.g. the abort of an interrupting weight update)."""


class WorkerUnavailable(EngineError):
    """A worker did not answer (dead, unreachable, or restarting); the message names it."""


class VerifyResult(NamedTuple):
    logprobs: np.ndarray  # float32 [draft_len]: log p_new of each draft token given its prefix
    cached_tokens: int  # tokens SGLang served from its radix cache for this prefill
    weight_version: str | None  # what the serving worker reported


class GenerateResult(NamedTuple):
    token_ids: np.ndarray  # int32 [num_new]
    logprobs: np.ndarray  # float32 [num_new], raw (temperature-1) log p of each sampled token
    finish_reason: str  # "stop" | "length" | "abort"
    cached_tokens: int  # prefix tokens served from SGLang's radix cache
    weight_version: str | None


class Engine(Protocol):
    limits: ModelLimits  # vocabulary and context length of the served model
    eos_token_ids: tuple[int, ...]
    page_size: int
    description: str  # for errors and /health: model path, or worker URLs

    async def verify(self, route_key: str, prompt_ids: np.ndarray, draft_ids: np.ndarray) -> VerifyResult:
        """Score `draft_ids` after `prompt_ids` (both non-empty) in one prefill; no decoding. The
        KV of prompt + draft stays in the radix cache for continuations from any draft prefix."""
        ...

    async def generate(
        self, route_key: str, prefix_ids: np.ndarray, max_new_tokens: int, sampling: SamplingConfig,
        ban: TokenBan | None = None,
    ) -> GenerateResult:
        """Sample up to `max_new_tokens` (>= 1) after `prefix_ids`; SGLang may serve all but the last
        prefix token from its radix cache. `ban`: a token the FIRST sampled token must not be (the
        exact mode's residual draw, `first_token_ban`); later tokens are unrestricted. Returned
        log-probs are the policy's marginal ones in every case."""
        ...

    async def abort_all(self) -> None:
        """Abort every request in flight; aborted requests return what they decoded so far
        (finish_reason "abort")."""
        ...

    async def flush_cache(self) -> None: ...

    async def begin_weight_update(self) -> None: ...

    async def load_weights(self, named_tensors: Sequence[tuple[str, Any]]) -> None: ...

    async def end_weight_update(self, weight_version: str) -> None: ...

    async def abort_weight_update(self) -> None: ...

    async def update_weights_from_disk(self, model_path: str, weight_version: str) -> None: ...

    async def init_weights_update_group(
        self, master_address: str, master_port: int, rank_offset: int, world_size: int, group_name: str, backend: str
    ) -> None: ...

    async def update_weights_from_distributed(
        self, names: Sequence[str], dtypes: Sequence[str], shapes: Sequence[Sequence[int]], group_name: str,
        weight_version: str,
    ) -> None: ...

    async def release_memory(self) -> None: ...

    async def resume_memory(self) -> None: ...

    async def health(self) -> dict[str, Any]: ...

    def shutdown(self) -> None:
        """Stop the engine (in-process: its subprocesses; HTTP: close connections, servers keep running)."""
        ...


def expect_ok(result: Any, what: str) -> None:
    """Raise EngineError unless an SGLang control call reported success."""
    if isinstance(result, tuple):
        ok, message = result[0], result[1] if len(result) > 1 else ""
    elif isinstance(result, dict):
        ok, message = result.get("success", True), result.get("message", "")
    else:
        ok, message = getattr(result, "success", True), getattr(result, "message", "")
    if not ok:
        raise EngineError(f"{what} failed: {message}")


def detached(named_tensors: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(name, t.detach() if hasattr(t, "detach") else t) for name, t in named_tensors]
