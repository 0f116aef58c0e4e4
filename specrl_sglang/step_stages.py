"""The stages of one rollout step as functions with typed results.

draft (`lookup_drafts`) -> verify (`plan_verifies` + `Engine.verify`) -> accept (`accept`) ->
continue (`continuation_of` + `Engine.generate`) -> assemble (`assemble`) -> record (`record`).
`rollout_step.run_step` composes them; nothing here holds state between steps or takes locks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from radix_cache.responses import Response
from specrl_sglang.acceptance import exact_cut, spec_rl_cut
from specrl_sglang.draft_store import DraftStore, resolved
from specrl_sglang.first_token_ban import TokenBan
from specrl_sglang.rollout_types import RolloutRequest, Sample
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import check_mode_sampling
from specrl_sglang.token_checks import ModelLimits

EMPTY_IDS = np.zeros(0, dtype=np.int32)
EMPTY_LP = np.zeros(0, dtype=np.float32)


@dataclass
class Slot:
    """Working state of one sample inside one step (owned by that step's coroutine).

    `draft` / `draft_lp`: the draft offered in the current round and the log-probs of the policy
    that produced it. After a round: `tokens` / `logprobs` / `finish_reason` hold the response (or,
    if `interrupted`, nothing: the partial response has become the next round's draft).
    """

    prompt_index: int
    route_key: str
    prompt: np.ndarray
    draft: np.ndarray = field(default_factory=lambda: EMPTY_IDS)
    draft_lp: np.ndarray = field(default_factory=lambda: EMPTY_LP)
    tokens: np.ndarray = field(default_factory=lambda: EMPTY_IDS)
    logprobs: np.ndarray = field(default_factory=lambda: EMPTY_LP)
    finish_reason: str = "abort"
    accepted_len: int = 0
    fully_reused: bool = False
    interrupted: bool = False
    done: bool = False

    def resume_from(self, tokens: np.ndarray, logprobs: np.ndarray) -> None:
        """Make `tokens` (with the log-probs of the policy that produced them) the next draft."""
        self.draft, self.draft_lp = tokens.astype(np.int32, copy=False), logprobs.astype(np.float32, copy=False)
        self.interrupted, self.done = True, False


class Acceptance(NamedTuple):
    accepted_len: int  # draft tokens kept
    fully_reused: bool  # the draft is the whole response (nothing to decode)
    ban: TokenBan | None  # exact mode: the rejected draft token the replacement must not be


class DraftLookup(NamedTuple):
    drafts: list[list[tuple[np.ndarray, np.ndarray] | None]]  # per request, per slot
    locked: list[str]  # prompt ids whose drafts are locked until recorded or released
    num_dropped: int  # stored drafts not offered (outside the vocabulary, or no usable log-probs)


class Timer:
    """Wall-clock span from the first `start()` to the last `stop()` (one per stage and round)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def start(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def stop(self) -> None:
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None or self.last is None else max(0.0, self.last - self.first)


def stop_ids(eos_token_ids: Sequence[int], sampling: SamplingConfig) -> frozenset[int]:
    """Token ids that end a response under `sampling`."""
    return frozenset(() if sampling.ignore_eos else eos_token_ids) | frozenset(sampling.stop_token_ids)


def validate_step(
    limits: ModelLimits, requests: Sequence[RolloutRequest], sampling: SamplingConfig, max_response_len: int, mode: str
) -> None:
    """ValueError (naming the prompt) for anything that would fail later; runs before any request."""
    if isinstance(max_response_len, bool) or not isinstance(max_response_len, (int, np.integer)) or max_response_len < 1:
        raise ValueError(f"max_response_len must be an int >= 1, got {max_response_len!r}")
    if not requests:
        raise ValueError("a rollout step needs at least one request")
    check_mode_sampling(mode, sampling)
    for token in sampling.stop_token_ids:
        if token >= limits.vocab_size:
            raise ValueError(f"sampling.stop_token_ids has token id {token} outside the vocabulary [0, {limits.vocab_size})")
    seen: set[str] = set()
    for req in requests:
        if not isinstance(req, RolloutRequest):
            raise TypeError(f"requests must be RolloutRequest objects, got {type(req).__name__}")
        limits.check_ids(req.prompt_ids, f"prompt {req.prompt_id!r}")
        limits.check_len(req.prompt_ids.shape[0] + max_response_len, f"prompt {req.prompt_id!r} + max_response_len")
        if req.prompt_id in seen:
            raise ValueError(f"prompt_id {req.prompt_id!r} appears twice in one step; request n samples once")
        seen.add(req.prompt_id)


def _usable(draft, limits: ModelLimits, max_response_len: int) -> tuple[np.ndarray, np.ndarray] | None:
    if draft is None or len(draft.token_ids) == 0:
        return None
    ids, lps = np.asarray(draft.token_ids), np.asarray(draft.logprobs, dtype=np.float32)
    if lps.shape != ids.shape or not np.isfinite(lps).all():
        return None
    if int(ids.min()) < 0 or int(ids.max()) >= limits.vocab_size:
        return None
    # A draft longer than this step's budget is cut to it (its prefix is still a valid draft).
    return ids[:max_response_len].astype(np.int32), lps[:max_response_len]


async def lookup_drafts(
    store: DraftStore, requests: Sequence[RolloutRequest], limits: ModelLimits, max_response_len: int
) -> DraftLookup:
    """Pair each slot with a distinct stored response of its prompt, locking those prompts.

    On error the locks taken so far are released before the exception propagates."""
    drafts, locked, dropped = [], [], 0
    try:
        for req in requests:
            found = await resolved(store.lookup(req.prompt_id, req.prompt_ids, req.num_samples, lock=True))
            locked.append(req.prompt_id)
            usable = [_usable(d, limits, max_response_len) for d in found]
            dropped += sum(d is not None and u is None and len(d.token_ids) > 0 for d, u in zip(found, usable))
            drafts.append(usable)
    except BaseException:
        await release(store, locked)
        raise
    return DraftLookup(drafts, locked, dropped)


async def release(store: DraftStore, prompt_ids: Sequence[str]) -> None:
    for prompt_id in prompt_ids:
        await resolved(store.release(prompt_id))


def plan_verifies(slots: Sequence[Slot]) -> tuple[list[int], dict[int, int]]:
    """(slots whose drafts are sent, {drafted slot: the sent slot whose draft covers it}).

    Samples of one prompt often share their whole response, or one is a prefix of another; a
    token's log-prob depends only on its prefix, so verifying the longest covers the others."""
    reps: list[int] = []
    cover: dict[int, int] = {}
    by_prompt: dict[int, list[int]] = {}
    drafted = [i for i, s in enumerate(slots) if s.draft.shape[0] > 0]
    for i in sorted(drafted, key=lambda i: -slots[i].draft.shape[0]):
        draft = slots[i].draft
        candidates = by_prompt.setdefault(slots[i].prompt_index, [])
        hit = next((r for r in candidates if np.array_equal(slots[r].draft[: draft.shape[0]], draft)), None)
        if hit is None:
            hit = i
            reps.append(i)
            candidates.append(i)
        cover[i] = hit
    return reps, cover


def accept(
    mode: str, lenience: float, log_u: np.ndarray, new_lp: np.ndarray, slot: Slot, stops: frozenset[int],
    max_response_len: int,
) -> Acceptance:
    """Cut the slot's draft by the mode's rule; a fully accepted draft that ends (stop token or the
    length budget) is the whole response."""
    draft = slot.draft
    if mode == "exact":
        k = exact_cut(log_u, new_lp)
    else:
        k = spec_rl_cut(log_u, new_lp, slot.draft_lp, lenience)
    n = draft.shape[0]
    ends = n > 0 and (int(draft[-1]) in stops or n >= max_response_len)
    ban = TokenBan(int(draft[k]), float(new_lp[k])) if mode == "exact" and k < n else None
    return Acceptance(k, k == n and ends, ban)


def assemble(slot: Slot) -> Sample:
    return Sample(
        prompt_index=slot.prompt_index,
        token_ids=slot.tokens.astype(np.int32, copy=False),
        logprobs=slot.logprobs.astype(np.float32, copy=False),
        draft_len=int(slot.draft.shape[0]),
        accepted_len=slot.accepted_len,
        fully_reused=slot.fully_reused,
        finish_reason=slot.finish_reason,
    )


async def record(
    store: DraftStore, requests: Sequence[RolloutRequest], samples: Sequence[Sample], policy_version: int
) -> None:
    """Store every prompt's new samples as its next drafts, in one all-or-nothing `put_many`."""
    by_prompt: list[list[Response]] = [[] for _ in requests]
    for s in samples:
        versions = np.full(s.response_len, policy_version, dtype=np.int32)
        by_prompt[s.prompt_index].append(Response(s.token_ids, s.logprobs, versions))
    items = [(req.prompt_id, req.prompt_ids, responses) for req, responses in zip(requests, by_prompt)]
    await resolved(store.put_many(items))
