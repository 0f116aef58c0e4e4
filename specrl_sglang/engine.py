"""The only module that talks to SGLang: verify, generate/continue, weight updates, cache flush.

`RolloutEngine` wraps an offline `sglang.Engine` (in-process tokenizer manager, scheduler in a
subprocess). Calls are serialised by one lock: a weight update therefore waits for the batch in
flight to finish and no batch ever runs while weights change (no silent policy mix).

Stale KV: every weight update runs inside SGLang's begin/end weight-update session, then flushes
the radix cache (waiting for the scheduler to retire the last batch) and checks that the flush
succeeded before the policy version is bumped; no request can start in between (the lock). If any
step fails, `EngineError` is raised, the version is not bumped, and the engine refuses further
requests until a successful update (`poisoned`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.sampling import SamplingConfig


FLUSH_TIMEOUT_S = 60.0


class EngineError(RuntimeError):
    """SGLang refused or failed an operation; the message says which and why."""


class VerifyResult(NamedTuple):
    logprobs: np.ndarray  # float32 [draft_len]: log p_new of each draft token given its prefix
    cached_tokens: int  # tokens SGLang served from its radix cache for this prefill


class GenerateResult(NamedTuple):
    token_ids: np.ndarray  # int32 [num_new]
    logprobs: np.ndarray  # float32 [num_new], raw (temperature-1) log-probs of the sampled tokens
    finish_reason: str  # "stop" | "length" | "abort"
    cached_tokens: int  # prefix tokens served from SGLang's radix cache


def _detached(named_tensors: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(name, t.detach() if hasattr(t, "detach") else t) for name, t in named_tensors]


def checkpoint_param_names(model_path: str, tie_word_embeddings: bool) -> frozenset[str] | None:
    """Names of the tensors in a safetensors checkpoint (None if it has no safetensors files).

    SGLang silently skips tensors whose names its model does not know; checking names against the
    checkpoint turns a misnamed update into an error instead of a silent no-op.
    """
    root = Path(model_path)
    index = root / "model.safetensors.index.json"
    if index.exists():
        names = set(json.loads(index.read_text())["weight_map"])
    else:
        files = sorted(root.glob("*.safetensors"))
        if not files:
            return None
        from safetensors import safe_open

        names = set()
        for f in files:
            with safe_open(str(f), framework="pt") as handle:
                names.update(handle.keys())
    if tie_word_embeddings:
        names.add("lm_head.weight")  # tied: not stored, but trainers' state dicts carry it
    return frozenset(names)


def _as_ids(tokens: Any, what: str) -> list[int]:
    arr = np.asarray(tokens)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D sequence of integer token ids, got dtype={arr.dtype} shape={arr.shape}")
    return arr.astype(np.int64).tolist()


class RolloutEngine:
    """An SGLang engine plus the policy version of the weights it serves.

    Thread-safe: every public method takes `self._lock`. Token ids are validated against the
    model's vocabulary and context length before anything is sent to SGLang.
    """

    def __init__(self, config: EngineConfig) -> None:
        # Both verify (prefill) and sampled (decode) log-probs as raw log_softmax: one convention.
        os.environ["SGLANG_RETURN_ORIGINAL_LOGPROB"] = "1"
        from transformers import AutoConfig

        import sglang

        hf_config = AutoConfig.from_pretrained(config.model_path)
        self.config = config
        self.vocab_size: int = int(hf_config.vocab_size)
        self.context_len: int = int(getattr(hf_config, "max_position_embeddings", 4096))
        eos = getattr(hf_config, "eos_token_id", None)
        self.eos_token_ids: tuple[int, ...] = tuple(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
        self.param_names = checkpoint_param_names(config.model_path, bool(getattr(hf_config, "tie_word_embeddings", False)))
        self.policy_version = 0
        self.poisoned = False
        self.sleeping = False
        self._update_open = False
        self._lock = threading.Lock()
        self._engine = sglang.Engine(**config.engine_kwargs())

    # ------------------------------------------------------------------ validation
    def check_tokens(self, tokens: Any, what: str) -> list[int]:
        """Return `tokens` as a list of ints or raise ValueError naming `what` and the bad id."""
        ids = _as_ids(tokens, what)
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(t for t in ids if t < 0 or t >= self.vocab_size)
            raise ValueError(f"{what} has token id {bad} outside the vocabulary [0, {self.vocab_size})")
        return ids

    def _check_len(self, total_len: int, what: str) -> None:
        if total_len > self.context_len:
            raise ValueError(f"{what}: {total_len} tokens exceed the model's context length {self.context_len}")

    def _check_usable(self) -> None:
        if self.poisoned:
            raise EngineError("a weight update failed; the engine serves no requests until a successful update")
        if self.sleeping:
            raise EngineError("the engine released its memory (release_memory); call resume_memory() first")

    # ------------------------------------------------------------------ requests
    def verify(self, prompts: Sequence[Any], drafts: Sequence[Any]) -> list[VerifyResult]:
        """Score each draft under the current weights in one batched prefill (no decoding).

        The KV of every prompt + draft is left in SGLang's radix cache, so a continuation from any
        prefix of the draft reuses it. Drafts must be non-empty; prompts must be non-empty.
        """
        if len(prompts) != len(drafts):
            raise ValueError(f"verify: {len(prompts)} prompts but {len(drafts)} drafts")
        inputs, starts = [], []
        for i, (prompt, draft) in enumerate(zip(prompts, drafts)):
            p = self.check_tokens(prompt, f"prompt {i}")
            d = self.check_tokens(draft, f"draft {i}")
            if not p or not d:
                raise ValueError(f"verify: prompt {i} and its draft must both be non-empty")
            self._check_len(len(p) + len(d), f"verify request {i}")
            inputs.append(p + d)
            starts.append(len(p) - 1)
        if not inputs:
            return []
        with self._lock:
            self._check_usable()
            outs = self._engine.generate(
                input_ids=inputs,
                sampling_params=[{"max_new_tokens": 0} for _ in inputs],
                return_logprob=True,
                logprob_start_len=starts,
            )
        results = []
        for i, out in enumerate(outs):
            meta = out["meta_info"]
            entries = meta["input_token_logprobs"][1:]  # entry 0 (the last prompt token) is None
            draft_len = len(inputs[i]) - starts[i] - 1
            if len(entries) != draft_len:
                raise EngineError(f"verify request {i}: SGLang returned {len(entries)} log-probs for {draft_len} draft tokens")
            logprobs = np.array([e[0] for e in entries], dtype=np.float32)
            results.append(VerifyResult(logprobs, int(meta.get("cached_tokens", 0))))
        return results

    def generate(
        self, prefixes: Sequence[Any], max_new_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[GenerateResult]:
        """Sample continuations of each prefix (prompt, or prompt + accepted draft prefix).

        No input log-probs are requested, so SGLang may serve all but the last prefix token from
        its radix cache (e.g. the KV of an earlier `verify`).
        """
        if len(prefixes) != len(max_new_tokens):
            raise ValueError(f"generate: {len(prefixes)} prefixes but {len(max_new_tokens)} max_new_tokens")
        inputs, params = [], []
        for i, (prefix, budget) in enumerate(zip(prefixes, max_new_tokens)):
            ids = self.check_tokens(prefix, f"prefix {i}")
            if not ids:
                raise ValueError(f"generate: prefix {i} is empty")
            if budget < 1:
                raise ValueError(f"generate: max_new_tokens[{i}] must be >= 1, got {budget}")
            self._check_len(len(ids) + budget, f"generate request {i}")
            inputs.append(ids)
            params.append(sampling.to_sglang(budget))
        if not inputs:
            return []
        with self._lock:
            self._check_usable()
            outs = self._engine.generate(input_ids=inputs, sampling_params=params, return_logprob=True)
        results = []
        for out in outs:
            meta = out["meta_info"]
            token_ids = np.asarray(out["output_ids"], dtype=np.int32)
            logprobs = np.array([e[0] for e in meta["output_token_logprobs"]], dtype=np.float32)
            if len(logprobs) != len(token_ids):
                raise EngineError(f"SGLang returned {len(logprobs)} log-probs for {len(token_ids)} tokens")
            reason = (meta.get("finish_reason") or {}).get("type", "abort")
            results.append(GenerateResult(token_ids, logprobs, reason, int(meta.get("cached_tokens", 0))))
        return results

    # ------------------------------------------------------------------ weights and cache
    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> int:
        """Load new weights (a full or partial state dict) and flush all KV; returns the new version."""
        named = self._checked_weights(named_tensors, "update_weights")  # before anything is loaded
        self.begin_weight_update()
        try:
            self._load_checked(named)
        except BaseException:
            self.abort_weight_update()
            raise
        return self.end_weight_update()

    def _checked_weights(self, named_tensors: Iterable[tuple[str, Any]], what: str) -> list[tuple[str, Any]]:
        named = _detached(named_tensors)
        if not named:
            raise ValueError(f"{what}: no tensors given")
        if self.param_names is not None:
            unknown = [name for name, _ in named if name not in self.param_names]
            if unknown:
                raise ValueError(f"{what}: the model has no parameter named {', '.join(map(repr, unknown[:5]))}")
        return named

    def begin_weight_update(self) -> None:
        """Open a streaming weight update: `load_weights` any number of times, then `end_weight_update`.

        Holds the engine lock from here until `end_weight_update`/`abort_weight_update` (which may be
        called from another thread): requests from other threads wait, so no batch ever sees
        half-loaded weights. Do not send requests from the thread that holds an open update (it
        would wait on itself). Only one update is open at a time; a trainer can stream parameters
        one by one without buffering a copy of the weights.
        """
        self._lock.acquire()
        try:
            self.poisoned = True  # until end_weight_update succeeds
            self._expect_ok(self._engine.begin_weight_update(), "begin_weight_update")
        except BaseException:
            self._lock.release()
            raise
        self._update_open = True

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load (name, tensor) pairs into the open weight update (see `begin_weight_update`)."""
        if not self._update_open:
            raise EngineError("load_weights needs an open weight update (begin_weight_update first)")
        self._load_checked(self._checked_weights(named_tensors, "load_weights"))

    def _load_checked(self, named: list[tuple[str, Any]]) -> None:
        # The flush is ours (end_weight_update): SGLang's in-update flush fails if the scheduler has
        # not yet retired the last batch, which would leave new weights with old KV.
        self._expect_ok(
            self._engine.update_weights_from_tensor(named_tensors=named, flush_cache=False),
            "update_weights_from_tensor",
        )

    def end_weight_update(self) -> int:
        """Close the open weight update, flush all KV, bump and return the policy version."""
        if not self._update_open:
            raise EngineError("end_weight_update without an open weight update")
        try:
            self._expect_ok(self._engine.end_weight_update(), "end_weight_update")
            return self._finish_update()
        finally:
            self._update_open = False
            self._lock.release()

    def abort_weight_update(self) -> None:
        """Close an open weight update after a failure: the engine stays poisoned (it may hold a mix
        of old and new weights) and refuses requests until a complete update succeeds."""
        if not self._update_open:
            return
        try:
            self._engine.end_weight_update()
        finally:
            self._update_open = False
            self._lock.release()

    def update_weights_from_disk(self, model_path: str) -> int:
        """Load weights from a checkpoint directory (same architecture) and flush all KV."""
        with self._lock:
            self.poisoned = True
            self._expect_ok(self._engine.update_weights_from_disk(model_path=str(model_path)), "update_weights_from_disk")
            return self._finish_update()

    def _finish_update(self) -> int:
        self._flush_locked()
        self.policy_version += 1
        self.poisoned = False
        return self.policy_version

    def release_memory(self) -> None:
        """Free the engine's GPU memory (weights and KV) for a colocated trainer.

        Needs `EngineConfig(profile="gpu", enable_memory_saver=True)`. The KV cache is flushed first;
        requests are refused until `resume_memory()`. A weight update may run while released (as in
        OpenRLHF's colocated flow: wake, load weights, generate).
        """
        if not self.config.enable_memory_saver:
            raise EngineError("release_memory needs EngineConfig(profile='gpu', enable_memory_saver=True)")
        with self._lock:
            self._flush_locked()
            self._expect_ok(self._engine.release_memory_occupation(), "release_memory_occupation")
            self.sleeping = True

    def resume_memory(self) -> None:
        """Re-acquire the memory freed by `release_memory()`; the KV cache starts empty."""
        if not self.config.enable_memory_saver:
            raise EngineError("resume_memory needs EngineConfig(profile='gpu', enable_memory_saver=True)")
        with self._lock:
            self._expect_ok(self._engine.resume_memory_occupation(), "resume_memory_occupation")
            self.sleeping = False
            self._flush_locked()  # released KV pages hold nothing usable

    def flush_cache(self) -> None:
        """Drop every cached KV entry (safe only with no request in flight; the lock ensures that)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        # With a timeout SGLang defers the flush until the scheduler is idle (a batch that returned to
        # us may not be retired yet); without one it refuses at once. No new request can start
        # meanwhile: we hold the lock.
        manager = self._engine.tokenizer_manager
        out = self._engine.loop.run_until_complete(manager.flush_cache(timeout_s=FLUSH_TIMEOUT_S))
        if not out.success:
            raise EngineError(f"flush_cache failed: {out.message or 'scheduler not idle'}")

    @staticmethod
    def _expect_ok(result: Any, what: str) -> None:
        if isinstance(result, tuple):
            ok, message = result[0], result[1] if len(result) > 1 else ""
        else:
            ok, message = getattr(result, "success", True), getattr(result, "message", "")
        if not ok:
            raise EngineError(f"{what} failed: {message}")

    def shutdown(self) -> None:
        self._engine.shutdown()

    def __enter__(self) -> "RolloutEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
