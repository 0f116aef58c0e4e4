"""One SPEC-RL rollout step on SGLang: draft -> verify -> accept -> continue -> assemble -> record.

Flow for a batch of prompts with n samples each:
1. Drafts: the TrajectoryStore pairs each of a prompt's n slots with a distinct stored response
   (locked in the store until the step records its new responses).
2. Verify: one batched prefill of prompt + draft under the current weights gives log p_new of every
   draft token; its KV stays in SGLang's radix cache.
3. Accept: the SPEC-RL rule cuts each draft at its first rejection (acceptance.py).
4. Fully accepted drafts that end in EOS/stop (or fill max_response_len) are returned as they are.
5. Continue: the rest are sent as prompt + accepted prefix with max_new_tokens = max_response_len
   - accepted_len; SGLang serves the prefix from the verify pass's KV.
6. Assemble prefix + continuation, and record the new responses (per-token log-probs under the
   current policy) as the next epoch's drafts.
Vanilla mode (`SpecConfig(enabled=False)`) goes through the same code with no drafts.

Errors: bad requests and bad drafts raise ValueError before anything is sent to the engine or
written to the store; the store's locks are released whatever happens. A weight update that lands
between the verify and the continuation (a caller's bug: the engine's lock covers one call, not a
step) raises EngineError and records nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.acceptance import acceptance_rng, accepted_lens, check_lenience
from specrl_sglang.engine import EngineError, RolloutEngine
from specrl_sglang.rollout_types import RolloutRequest, Sample
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.step_stats import StepStats, summarize_step

_EMPTY_IDS = np.zeros(0, dtype=np.int32)
_EMPTY_LP = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class SpecConfig:
    """Speculative-rollout settings. lenience: l >= 1 (1 = vanilla acceptance, inf = reuse all)."""

    lenience: float = math.exp(0.5)
    enabled: bool = True
    seed: int = 0
    record: bool = True

    def __post_init__(self) -> None:
        check_lenience(self.lenience)


class RolloutResult(NamedTuple):
    samples: list[Sample]  # grouped by prompt, in request order; n contiguous samples per prompt
    stats: StepStats


class _Slot:
    """Mutable per-sample working state inside one step."""

    __slots__ = ("req", "prompt_index", "draft", "draft_lp", "new_lp", "accepted", "tokens", "logprobs", "reason", "full")

    def __init__(self, req: RolloutRequest, prompt_index: int) -> None:
        self.req, self.prompt_index = req, prompt_index
        self.draft, self.draft_lp, self.new_lp = _EMPTY_IDS, _EMPTY_LP, _EMPTY_LP
        self.accepted, self.full, self.reason = 0, False, "abort"
        self.tokens, self.logprobs = _EMPTY_IDS, _EMPTY_LP


class SpecRollout:
    """Runs rollout steps against one engine and one trajectory store.

    `num_steps` counts the steps run; step k draws its acceptance randomness from (seed, k), so a
    restarted service may set it to continue the stream where it stopped.
    Not thread-safe (one step at a time); the engine itself serialises SGLang calls.
    """

    def __init__(self, engine: RolloutEngine, store: TrajectoryStore, config: SpecConfig = SpecConfig()) -> None:
        self.engine, self.store, self.config = engine, store, config
        self.num_steps = 0
        self.last_num_verify_requests = 0

    def step(self, requests: Sequence[RolloutRequest], sampling: SamplingConfig, max_response_len: int) -> RolloutResult:
        """Roll out every request; returns its samples (n per prompt, contiguous) and the step's stats."""
        t0 = time.perf_counter()
        if max_response_len < 1:
            raise ValueError(f"max_response_len must be >= 1, got {max_response_len}")
        self._check_requests(requests, max_response_len)
        slots = [_Slot(req, i) for i, req in enumerate(requests) for _ in range(req.num_samples)]
        locked: list[str] = []
        self.last_num_verify_requests = 0
        timings = {"verify": 0.0, "continue": 0.0}
        version = self.engine.policy_version
        try:
            if self.config.enabled:
                self._attach_drafts(requests, slots, max_response_len, locked)
            kv_cached, kv_expected = self._verify_accept_continue(slots, sampling, max_response_len, timings)
            if self.engine.policy_version != version:  # callers must not update weights mid-step
                raise EngineError(
                    f"the policy changed during a rollout step (version {version} -> {self.engine.policy_version}); "
                    "its samples would mix two policies, so nothing was recorded"
                )
            samples = [self._assemble(s) for s in slots]
            if self.config.record:
                self._record(requests, slots)
                locked.clear()  # put() released them
        finally:
            for prompt_id in locked:
                self.store.release(prompt_id)
        self.num_steps += 1
        timings["total"] = time.perf_counter() - t0
        timings["assemble"] = timings["total"] - timings["verify"] - timings["continue"]
        stats = summarize_step(
            samples,
            num_prompts=len(requests),
            policy_version=version,
            lenience=self.config.lenience if self.config.enabled else 1.0,
            num_verify_requests=self.last_num_verify_requests,
            kv_cached_tokens=kv_cached,
            kv_expected_tokens=kv_expected,
            timings=timings,
        )
        return RolloutResult(samples, stats)

    # ------------------------------------------------------------------ stages
    def _check_requests(self, requests: Sequence[RolloutRequest], max_response_len: int) -> None:
        seen: dict[str, np.ndarray] = {}
        for req in requests:
            self.engine.check_tokens(req.prompt_ids, f"prompt {req.prompt_id!r}")
            if req.prompt_ids.shape[0] + max_response_len > self.engine.context_len:
                raise ValueError(
                    f"prompt {req.prompt_id!r}: {req.prompt_ids.shape[0]} prompt tokens + max_response_len "
                    f"{max_response_len} exceed the model's context length {self.engine.context_len}"
                )
            if req.prompt_id in seen:
                raise ValueError(f"prompt_id {req.prompt_id!r} appears twice in one batch; request n samples once")
            seen[req.prompt_id] = req.prompt_ids

    def _attach_drafts(self, requests, slots, max_response_len, locked) -> None:
        by_prompt: dict[int, list[_Slot]] = {}
        for slot in slots:
            by_prompt.setdefault(slot.prompt_index, []).append(slot)
        for i, req in enumerate(requests):
            drafts = self.store.lookup(req.prompt_id, req.prompt_ids, req.num_samples, lock=True)
            locked.append(req.prompt_id)
            for slot, draft in zip(by_prompt[i], drafts):
                if draft is None or len(draft.token_ids) == 0:
                    continue
                if draft.logprobs is None or len(draft.logprobs) != len(draft.token_ids):
                    raise ValueError(f"prompt {req.prompt_id!r}: stored draft has missing log-probs")
                self.engine.check_tokens(draft.token_ids, f"stored draft of prompt {req.prompt_id!r}")
                if len(draft.token_ids) > max_response_len:
                    raise ValueError(
                        f"prompt {req.prompt_id!r}: stored draft has {len(draft.token_ids)} tokens, more than "
                        f"max_response_len={max_response_len}; keep max_response_len fixed or reset the store"
                    )
                slot.draft = np.asarray(draft.token_ids, dtype=np.int32)
                slot.draft_lp = np.asarray(draft.logprobs, dtype=np.float32)

    def _verify_accept_continue(self, slots, sampling, max_response_len, timings) -> tuple[int, int]:
        stops = set() if sampling.ignore_eos else set(self.engine.eos_token_ids)
        stops |= set(sampling.stop_token_ids)
        drafted = [s for s in slots if s.draft.shape[0] > 0]
        if drafted:
            t = time.perf_counter()
            new_lps = self._verify(drafted)
            timings["verify"] = time.perf_counter() - t
            rng = acceptance_rng(self.config.seed, self.num_steps)
            cuts = accepted_lens(new_lps, [s.draft_lp for s in drafted], self.config.lenience, rng)
            for slot, new_lp, k in zip(drafted, new_lps, cuts):
                slot.new_lp, slot.accepted = new_lp, int(k)
                ends = int(slot.draft[-1]) in stops or slot.draft.shape[0] >= max_response_len
                slot.full = slot.accepted == slot.draft.shape[0] and ends
        todo = [s for s in slots if not s.full]
        page = self.engine.config.page_size
        kv_expected = sum(((s.req.prompt_ids.shape[0] + s.accepted - 1) // page) * page for s in todo if s.draft.shape[0])
        kv_cached = 0
        if todo:
            t = time.perf_counter()
            prefixes = [np.concatenate([s.req.prompt_ids, s.draft[: s.accepted]]) for s in todo]
            outs = self.engine.generate(prefixes, [max_response_len - s.accepted for s in todo], sampling)
            timings["continue"] = time.perf_counter() - t
            for slot, out in zip(todo, outs):
                slot.tokens = np.concatenate([slot.draft[: slot.accepted], out.token_ids])
                slot.logprobs = np.concatenate([slot.new_lp[: slot.accepted], out.logprobs])
                slot.reason = out.finish_reason
                if slot.draft.shape[0]:
                    kv_cached += out.cached_tokens
        for slot in slots:
            if slot.full:
                slot.tokens, slot.logprobs = slot.draft, slot.new_lp
                slot.reason = "stop" if int(slot.draft[-1]) in stops else "length"
        return kv_cached, kv_expected

    def _verify(self, drafted: list[_Slot]) -> list[np.ndarray]:
        """log p_new of every draft token, one verify request per distinct draft of a prompt.

        Samples of one prompt often share their whole response (or one is a prefix of another);
        verifying the longest covers the others, since a token's log-prob depends only on its prefix.
        Each slot still gets its own acceptance draws.
        """
        reps: list[_Slot] = []  # drafts sent to the engine
        reps_of_prompt: dict[int, list[int]] = {}
        cover = [0] * len(drafted)  # per drafted slot: index into reps of a draft it is a prefix of
        for i in sorted(range(len(drafted)), key=lambda i: -drafted[i].draft.shape[0]):
            draft = drafted[i].draft
            candidates = reps_of_prompt.setdefault(drafted[i].prompt_index, [])
            hit = next((r for r in candidates if np.array_equal(reps[r].draft[: draft.shape[0]], draft)), None)
            if hit is None:
                hit = len(reps)
                reps.append(drafted[i])
                candidates.append(hit)
            cover[i] = hit
        verified = self.engine.verify([r.req.prompt_ids for r in reps], [r.draft for r in reps])
        self.last_num_verify_requests = len(reps)
        return [verified[r].logprobs[: slot.draft.shape[0]] for slot, r in zip(drafted, cover)]

    @staticmethod
    def _assemble(slot: _Slot) -> Sample:
        return Sample(
            prompt_index=slot.prompt_index,
            token_ids=slot.tokens.astype(np.int32, copy=False),
            logprobs=slot.logprobs.astype(np.float32, copy=False),
            draft_len=int(slot.draft.shape[0]),
            accepted_len=slot.accepted,
            fully_reused=slot.full,
            finish_reason=slot.reason,
        )

    def _record(self, requests, slots) -> None:
        version = self.engine.policy_version
        by_prompt: dict[int, list[Response]] = {}
        for slot in slots:
            versions = np.full(slot.tokens.shape[0], version, dtype=np.int32)
            by_prompt.setdefault(slot.prompt_index, []).append(Response(slot.tokens, slot.logprobs, versions))
        for i, req in enumerate(requests):
            self.store.put(req.prompt_id, req.prompt_ids, by_prompt[i])
