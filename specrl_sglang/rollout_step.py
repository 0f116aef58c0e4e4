"""One speculative rollout step on an engine and a draft store, as a coroutine on the rollout loop.

    validate -> lookup drafts -> per sample: verify -> accept -> continue -> assemble -> record

Pipelined (default): each sample's verify is its own request and its continuation is submitted as
soon as that verify result is in, so decoding starts while other drafts are still being
prefilled; all of a step's requests are in SGLang's continuous batching at once, together with
those of any other step running meanwhile. Two-barrier (`SpecConfig(pipelined=False)`): every
verify first, then every continuation (the classic flow, kept for comparison).

Interrupts: if the runtime starts a weight update that interrupts steps (partial rollouts), the
step's requests are aborted and return what they decoded so far; once none is in flight the step
parks until the update is done, then runs another round in which every sample - finished or
partial - is a draft (with the log-probs of the policy that produced it) verified under the new
weights by the step's rule (a vanilla step uses the exact rule where its sampling allows, else
starts over). So every returned sample, and the whole step, is under one policy version.

Errors: the runtime validates requests before the step starts (ValueError, nothing sent or
stored); a prompt-id collision found at lookup raises before anything is recorded; the draft locks
are released whatever happens; recording is all or nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from specrl_sglang.acceptance import acceptance_rng, draw_log_uniforms
from specrl_sglang.draft_store import DraftStore
from specrl_sglang.engine_api import Engine, VerifyAborted
from specrl_sglang.rollout_types import RolloutRequest, RolloutResult
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig, check_mode_sampling
from specrl_sglang.step_stages import (
    Acceptance, Slot, Timer, accept, assemble, lookup_drafts, plan_verifies, record, release, stop_ids,
)
from specrl_sglang.step_stats import StepCounters, StepTimings, summarize_step


@dataclass(frozen=True)
class StepContext:
    """What a step needs from the runtime that runs it."""

    engine: Engine
    store: DraftStore
    policy_version: Callable[[], int]
    interrupting: Callable[[], bool]  # True: send no new request, the step will park
    park: Callable[[], Awaitable[None]]  # wait out the interrupting weight update


class _Round:
    """One pass over every unfinished slot; counts and times into the step's totals."""

    def __init__(self, ctx: StepContext, mode: str, config: SpecConfig, sampling: SamplingConfig,
                 max_response_len: int, stops: frozenset[int]) -> None:
        self.ctx, self.mode, self.config, self.sampling = ctx, mode, config, sampling
        self.max_len, self.stops = max_response_len, stops
        self.verify_timer, self.continue_timer = Timer(), Timer()
        self.num_verify_requests = self.kv_cached = self.kv_expected = self.num_decoded = 0

    async def run(self, slots: list[Slot], log_us: list[np.ndarray]) -> None:
        reps, cover = plan_verifies(slots)
        verifies = {r: asyncio.ensure_future(self._verify(slots[r])) for r in reps}
        try:
            if not self.config.pipelined and verifies:
                await asyncio.wait(list(verifies.values()))
            await asyncio.gather(*(self._sample(s, verifies.get(cover.get(i, -1)), log_us[i]) for i, s in enumerate(slots)))
        finally:
            for task in verifies.values():
                task.cancel()

    async def _verify(self, slot: Slot):
        if self.ctx.interrupting():
            return None
        self.verify_timer.start()
        self.num_verify_requests += 1
        try:
            return await self.ctx.engine.verify(slot.route_key, slot.prompt, slot.draft)
        finally:
            self.verify_timer.stop()

    async def _sample(self, slot: Slot, verify: asyncio.Future | None, log_u: np.ndarray) -> None:
        n = slot.draft.shape[0]
        new_lp = slot.draft_lp[:0]
        if verify is not None:
            try:
                verified = await verify
            except VerifyAborted:
                if not self.ctx.interrupting():
                    raise
                verified = None  # aborted by the interrupt: verified again next round
            if verified is None:  # interrupted before (or while) its verify ran: keep the draft as it is
                slot.interrupted = True
                return
            new_lp = verified.logprobs[:n]
        if verify is not None and self.mode != "restart":
            acc = accept("exact" if self.mode == "exact" else "spec-rl", self.config.lenience, log_u, new_lp, slot,
                         self.stops, self.max_len)
        else:
            acc = Acceptance(0, False, None)
        slot.accepted_len, slot.fully_reused = acc.accepted_len, acc.fully_reused
        if acc.fully_reused:
            slot.tokens, slot.logprobs = slot.draft, new_lp
            slot.finish_reason = "stop" if int(slot.draft[-1]) in self.stops else "length"
            slot.done, slot.interrupted = True, False
            return
        if self.ctx.interrupting():
            slot.interrupted = True
            return
        k = acc.accepted_len
        prefix = np.concatenate([slot.prompt, slot.draft[:k]])
        self.continue_timer.start()
        try:
            out = await self.ctx.engine.generate(slot.route_key, prefix, self.max_len - k, self.sampling, acc.ban)
        finally:
            self.continue_timer.stop()
        self.num_decoded += int(out.token_ids.shape[0])
        if n:
            page = self.ctx.engine.page_size
            self.kv_expected += ((prefix.shape[0] - 1) // page) * page
            self.kv_cached += out.cached_tokens
        tokens = np.concatenate([slot.draft[:k], out.token_ids])
        logprobs = np.concatenate([new_lp[:k], out.logprobs])
        if out.finish_reason == "abort" and self.ctx.interrupting():
            slot.resume_from(tokens, logprobs)  # partial response under this round's policy
            return
        slot.tokens, slot.logprobs, slot.finish_reason = tokens, logprobs, out.finish_reason
        slot.done, slot.interrupted = True, False


async def run_step(
    ctx: StepContext, config: SpecConfig, step_index: int, requests: Sequence[RolloutRequest],
    sampling: SamplingConfig, max_response_len: int, mode: str | None = None,
) -> RolloutResult:
    """Roll out every request (n samples each, contiguous, in request order) under one policy.
    The caller has validated the requests (`step_stages.validate_step`)."""
    t0 = time.perf_counter()
    mode = mode or config.mode
    slots = [Slot(i, req.prompt_id, req.prompt_ids) for i, req in enumerate(requests) for _ in range(req.num_samples)]
    locked: list[str] = []
    dropped = 0
    draft_s = record_s = parked_s = 0.0
    rounds: list[_Round] = []
    try:
        if mode != "vanilla":
            lookup = await lookup_drafts(ctx.store, requests, ctx.engine.limits, max_response_len)
            locked, dropped = lookup.locked, lookup.num_dropped
            per_slot = iter(d for per_prompt in lookup.drafts for d in per_prompt)
            for slot, draft in zip(slots, per_slot):
                if draft is not None:
                    slot.draft, slot.draft_lp = draft
            draft_s = time.perf_counter() - t0
        stops = stop_ids(ctx.engine.eos_token_ids, sampling)
        round_mode = mode
        while True:
            version = ctx.policy_version()
            log_us = draw_log_uniforms(acceptance_rng(config.seed, step_index, len(rounds)), [s.draft.shape[0] for s in slots])
            current = _Round(ctx, round_mode, config, sampling, max_response_len, stops)
            rounds.append(current)
            await current.run(slots, log_us)
            if not any(s.interrupted for s in slots):
                break
            t_park = time.perf_counter()
            await ctx.park()
            parked_s += time.perf_counter() - t_park
            for slot in slots:  # every sample becomes a draft verified under the new policy
                if slot.done:
                    slot.resume_from(slot.tokens, slot.logprobs)
            round_mode = _resume_mode(mode, sampling)
            if round_mode == "restart":
                for slot in slots:
                    slot.resume_from(slot.draft[:0], slot.draft_lp[:0])
        if ctx.policy_version() != version:  # the gate makes this impossible; never return a mixed step
            raise RuntimeError(f"policy changed inside a rollout step ({version} -> {ctx.policy_version()})")
        samples = [assemble(s) for s in slots]
        if config.record:
            t_rec = time.perf_counter()
            await record(ctx.store, requests, samples, version)
            locked = []  # put released them
            record_s = time.perf_counter() - t_rec
    finally:
        if locked:
            await release(ctx.store, locked)
    timings = StepTimings(
        draft_s=draft_s,
        verify_s=sum(r.verify_timer.seconds for r in rounds),
        continue_s=sum(r.continue_timer.seconds for r in rounds),
        record_s=record_s,
        parked_s=parked_s,
        total_s=time.perf_counter() - t0,
    )
    counters = StepCounters(
        num_verify_requests=sum(r.num_verify_requests for r in rounds),
        kv_cached_tokens=sum(r.kv_cached for r in rounds),
        kv_expected_tokens=sum(r.kv_expected for r in rounds),
        num_rounds=len(rounds),
        num_drafts_dropped=dropped,
        num_tokens_decoded_all_rounds=sum(r.num_decoded for r in rounds),
    )
    lenience = config.lenience if mode == "spec-rl" else float("nan")
    stats = summarize_step(samples, step_index=step_index, mode=mode, lenience=lenience, policy_version=version,
                           num_prompts=len(requests), counters=counters, timings=timings, pipelined=config.pipelined)
    return RolloutResult(samples, stats)


def _resume_mode(mode: str, sampling: SamplingConfig) -> str:
    """The rule that re-verifies interrupted work: the step's own, except vanilla, which uses the
    lossless exact rule where its sampling settings allow it and otherwise starts over."""
    if mode != "vanilla":
        return mode
    try:
        check_mode_sampling("exact", sampling)
        return "exact"
    except ValueError:
        return "restart"
