"""TrajectoryStore: the previous rollouts of each prompt, kept in a RadixCache, served as drafts.

Layout: one tree namespace per prompt (``extra_key = prompt_id``), key = response token ids,
payload = per-token log-prob (float32); policy versions, if any, are kept per sample as run-length
segments beside the tree (version_runs.py). The n samples of a prompt share their common response
prefixes in the tree. A sample is remembered by the node where its page-aligned part ends (splits
keep that node object on the suffix side, so the handle stays valid) plus the partial-page tail
kept beside it (page_size > 1 only); its arrays are rebuilt by walking parents. As in SGLang, a prefix shared by two samples keeps the payload of the sample
inserted first (the same tokens under the same policy have the same log-probs, up to noise), and
its policy versions too.

Contracts:
* ``prompt_id`` is a stable identity the caller computes (e.g. a hash of prompt text + label),
  never a position in an epoch. Each prompt also records a digest of its prompt token ids; the
  same ``prompt_id`` with other prompt tokens raises PromptCollisionError and changes nothing.
* ``put`` validates everything first and stores nothing on error; it replaces the prompt's samples
  completely (never mixes policies) and releases the prompt's locks.
* Lookups return fresh arrays; ``lock=True`` keeps the prompt (and its tree nodes) from being
  evicted until ``release`` or the next ``put`` of that prompt.
* ``max_tokens`` bounds the tokens held (shared prefixes count once); after each put the least
  recently used unlocked prompts are evicted whole until the store fits (the new one included).
Not thread-safe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from radix_cache.inputs import as_count
from radix_cache.responses import PROMPT_DIGEST_LEN, Draft, as_response, prompt_digest
from radix_cache.store_records import StoredPrompt, StoredSample
from radix_cache.store_stats import StoreCounters, StoreStats
from radix_cache.tree import LockedError, RadixCache
from radix_cache.version_runs import PutVersions, decode_runs


class PromptCollisionError(ValueError):
    """A prompt_id is already stored for different prompt token ids."""


class TrajectoryStore:
    """Previous rollouts per prompt, with a global token budget and LRU eviction of whole prompts."""

    def __init__(
        self, max_tokens: int | None, samples_per_prompt: int | None = None, page_size: int = 1
    ) -> None:
        self._max_tokens = None if max_tokens is None else as_count(max_tokens, "max_tokens")
        self._samples_per_prompt = (
            None if samples_per_prompt is None else as_count(samples_per_prompt, "samples_per_prompt")
        )
        self._tree = RadixCache(page_size)
        self._prompts: OrderedDict[str, StoredPrompt] = OrderedDict()  # least recently used first
        self._num_samples = 0
        self._num_tail_tokens = 0
        self._counters = StoreCounters()

    @property
    def max_tokens(self) -> int | None:
        """Token budget; None means unbounded."""
        return self._max_tokens

    @property
    def samples_per_prompt(self) -> int | None:
        """Cap on the samples one put keeps; None means no cap."""
        return self._samples_per_prompt

    @property
    def page_size(self) -> int:
        return self._tree.page_size

    # ---- writing -----------------------------------------------------------------------------
    def put(self, prompt_id: str, prompt_ids: Any, responses: Sequence[Any]) -> int:
        """Replace the samples of ``prompt_id`` with ``responses``; return the number stored.

        ``responses``: Response objects or (token_ids, logprobs[, versions]) tuples, all with
        versions or all without; empty responses are stored as empty samples. Only the first
        ``samples_per_prompt`` are kept when that cap is set. May evict other prompts, or this one
        at once if it alone exceeds the budget.
        """
        return self.put_digest(prompt_id, prompt_digest(prompt_ids), responses)

    def put_digest(self, prompt_id: str, digest: bytes, responses: Sequence[Any]) -> int:
        """:meth:`put` with the prompt digest (``responses.prompt_digest(prompt_ids)``) given;
        used to restore snapshots, which keep digests rather than prompt tokens."""
        _check_prompt_id(prompt_id)
        if not isinstance(digest, bytes) or len(digest) != PROMPT_DIGEST_LEN:
            raise ValueError(f"digest must be {PROMPT_DIGEST_LEN} bytes")
        if isinstance(responses, (str, bytes, np.ndarray)) or not isinstance(responses, Sequence):
            raise TypeError(f"responses must be a sequence of responses, got {type(responses).__name__}")
        checked = [as_response(response, index) for index, response in enumerate(responses)]
        if self._samples_per_prompt is not None:
            checked = checked[: self._samples_per_prompt]
        has_versions = {response.versions is not None for response in checked}
        if len(has_versions) > 1:
            raise ValueError("either all responses of a put carry versions or none does")
        self._check_digest(prompt_id, digest)
        if prompt_id in self._prompts:
            self._remove(prompt_id, force=True)
        entry = StoredPrompt(digest, has_versions == {True})
        page_size, put_versions = self._tree.page_size, PutVersions()
        for token_ids, logprobs, versions in checked:
            response_len = len(token_ids)
            aligned_len = response_len - response_len % page_size
            node, prefix_len = None, 0
            if aligned_len:
                inserted = self._tree.insert_path(token_ids, logprobs, extra_key=prompt_id)
                node, prefix_len = inserted.last_node, inserted.prefix_len
            runs = None if versions is None else put_versions.add(token_ids, aligned_len, prefix_len, versions)
            tail_ids = token_ids[aligned_len:].copy()
            entry.samples.append(StoredSample(node, tail_ids, logprobs[aligned_len:].copy(), response_len, runs))
            self._num_tail_tokens += len(tail_ids)
        self._prompts[prompt_id] = entry
        self._num_samples += len(entry.samples)
        self._counters.num_puts += 1
        self._enforce_budget()
        return len(entry.samples)

    def put_many(self, items: Sequence[tuple[str, Any, Sequence[Any]]]) -> list[int]:
        """:meth:`put` for several ``(prompt_id, prompt_ids, responses)``, all or nothing: every item
        is validated (ids, responses, digests, no prompt twice) before the first is stored."""
        seen: set[str] = set()
        for prompt_id, prompt_ids, responses in items:
            _check_prompt_id(prompt_id)
            if prompt_id in seen:
                raise ValueError(f"prompt_id {prompt_id!r} appears twice in one put_many")
            seen.add(prompt_id)
            self._check_digest(prompt_id, prompt_digest(prompt_ids))
            if isinstance(responses, (str, bytes, np.ndarray)) or not isinstance(responses, Sequence):
                raise TypeError(f"responses of {prompt_id!r} must be a sequence of responses")
            for index, response in enumerate(responses):
                as_response(response, index)
        return [self.put(prompt_id, prompt_ids, responses) for prompt_id, prompt_ids, responses in items]

    def remove(self, prompt_id: str) -> int:
        """Forget ``prompt_id``; return the tokens freed (0 if unknown). LockedError if locked."""
        _check_prompt_id(prompt_id)
        return self._remove(prompt_id, force=False) if prompt_id in self._prompts else 0

    def _remove(self, prompt_id: str, force: bool) -> int:
        entry = self._prompts[prompt_id]
        if entry.num_locks and not force:
            raise LockedError(f"prompt {prompt_id!r} has drafts in flight; release it first")
        self.release(prompt_id)
        del self._prompts[prompt_id]
        num_tail_tokens = sum(len(sample.tail_ids) for sample in entry.samples)
        self._num_tail_tokens -= num_tail_tokens
        self._num_samples -= len(entry.samples)
        return self._tree.delete_namespace(prompt_id) + num_tail_tokens

    def _enforce_budget(self) -> None:
        if self._max_tokens is None:
            return
        for prompt_id in list(self._prompts):
            if self.total_tokens() <= self._max_tokens:
                return
            if not self._prompts[prompt_id].num_locks:
                self._counters.num_evicted_tokens += self._remove(prompt_id, force=False)
                self._counters.num_evicted_prompts += 1

    # ---- reading -----------------------------------------------------------------------------
    def lookup(self, prompt_id: str, prompt_ids: Any, num_samples: int, lock: bool = False) -> list[Draft | None]:
        """Drafts for the ``num_samples`` current slots of a prompt, one distinct sample per slot.

        Samples go out in stored order (the order of the put); slots beyond the stored samples get
        None. Counts statistics and marks the prompt most recently used. With ``lock=True`` the
        prompt cannot be evicted or removed until :meth:`release` (or its next put).
        """
        _check_prompt_id(prompt_id)
        digest = prompt_digest(prompt_ids)
        num_samples = as_count(num_samples, "num_samples")
        self._check_digest(prompt_id, digest)
        counters = self._counters
        counters.num_lookups += 1
        counters.num_slots_requested += num_samples
        entry = self._prompts.get(prompt_id)
        if entry is None:
            return [None] * num_samples
        self._prompts.move_to_end(prompt_id)
        chosen = entry.samples[:num_samples]
        drafts: list[Draft | None] = [self._draft(entry, sample) for sample in chosen]
        if lock:
            entry.num_locks += 1
            for sample in chosen:
                if sample.node is not None:
                    self._tree.inc_lock_ref(sample.node)
                    entry.locked_nodes.append(sample.node)
        counters.num_lookups_with_draft += bool(chosen)
        counters.num_drafts_returned += len(chosen)
        counters.num_draft_tokens_returned += sum(sample.response_len for sample in chosen)
        return drafts + [None] * (num_samples - len(chosen))

    def release(self, prompt_id: str) -> int:
        """Release every lock that lookups took on ``prompt_id``; return how many lookups that was."""
        entry = self._prompts.get(prompt_id)
        if entry is None:
            return 0
        for node in entry.locked_nodes:
            self._tree.dec_lock_ref(node)
        num_released, entry.num_locks, entry.locked_nodes = entry.num_locks, 0, []
        return num_released

    def samples(self, prompt_id: str) -> list[Draft]:
        """Every stored sample of ``prompt_id`` (KeyError if unknown); no statistics, no LRU touch."""
        entry = self._prompts[prompt_id]
        return [self._draft(entry, sample) for sample in entry.samples]

    def _draft(self, entry: StoredPrompt, sample: StoredSample) -> Draft:
        versions = None if sample.version_runs is None else decode_runs(sample.version_runs, sample.response_len)
        if sample.node is None:
            return Draft(sample.tail_ids.copy(), sample.tail_logprobs.copy(), versions)
        token_ids = self._tree.path_key(sample.node)
        logprobs = self._tree.path_value(sample.node)
        if len(sample.tail_ids):
            token_ids = np.concatenate([token_ids, sample.tail_ids])
            logprobs = np.concatenate([logprobs, sample.tail_logprobs])
        return Draft(token_ids, logprobs, versions)

    def _check_digest(self, prompt_id: str, digest: bytes) -> None:
        entry = self._prompts.get(prompt_id)
        if entry is not None and entry.digest != digest:
            raise PromptCollisionError(f"prompt_id {prompt_id!r} is stored for different prompt token ids")

    # ---- inspection --------------------------------------------------------------------------
    def total_tokens(self) -> int:
        """Tokens held: tree tokens (shared prefixes once) plus partial-page tails."""
        return self._tree.total_size() + self._num_tail_tokens

    def stats(self) -> StoreStats:
        return StoreStats(
            **self._counters.as_dict(),
            num_prompts=len(self._prompts),
            num_samples=self._num_samples,
            total_tokens=self.total_tokens(),
        )

    def reset_stats(self) -> None:
        """Zero the event counters (contents are untouched)."""
        self._counters = StoreCounters()

    def restore_counters(self, counters: StoreCounters) -> None:
        """Set the event counters (used when loading a snapshot)."""
        self._counters = StoreCounters(**counters.as_dict())

    def stored_prompts(self) -> Iterator[tuple[str, StoredPrompt]]:
        """(prompt_id, record) pairs, least recently used first. Read-only; for serializers."""
        return iter(list(self._prompts.items()))

    @property
    def tree(self) -> RadixCache:
        """The underlying tree. Read it, never mutate it: the store's book-keeping would break."""
        return self._tree

    def is_locked(self, prompt_id: str) -> bool:
        entry = self._prompts.get(prompt_id)
        return entry is not None and entry.num_locks > 0

    def prompt_ids(self) -> Iterator[str]:
        """Stored prompt identities (not token ids), least recently used first."""
        return iter(list(self._prompts))

    def __len__(self) -> int:
        return len(self._prompts)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._prompts


def _check_prompt_id(prompt_id: Any) -> None:
    if not isinstance(prompt_id, str):
        raise TypeError(f"prompt_id must be a str, got {type(prompt_id).__name__}")


__all__ = ["PromptCollisionError", "StoredPrompt", "StoredSample", "TrajectoryStore"]
