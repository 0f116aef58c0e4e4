"""Inputs and outputs of one speculative rollout step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RolloutRequest:
    """One prompt of a rollout batch, to be sampled `num_samples` times.

    `prompt_id` is a stable identity of the prompt across epochs (e.g. a hash of its text and
    label), never a position in the epoch: drafts are looked up by it, so shuffling is harmless.
    """

    prompt_id: str
    prompt_ids: np.ndarray  # int32 [prompt_len]
    num_samples: int

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_id, str) or not self.prompt_id:
            raise ValueError(f"prompt_id must be a non-empty str, got {self.prompt_id!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples} for prompt {self.prompt_id!r}")
        ids = np.asarray(self.prompt_ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"prompt {self.prompt_id!r}: prompt_ids must be a non-empty 1-D integer array")
        object.__setattr__(self, "prompt_ids", ids.astype(np.int32))


@dataclass(frozen=True)
class Sample:
    """One response of a rollout step.

    `logprobs` are per-token log-probs under the policy that served this step (verify log-probs for
    the accepted draft prefix, sampling log-probs for the continuation): usable as rollout
    log-probs for importance-sampling correction. Responses are not padded; the loss mask is all
    ones over `token_ids` (EOS, when present, is the last token).
    """

    prompt_index: int  # index into the step's request list
    token_ids: np.ndarray  # int32 [response_len]
    logprobs: np.ndarray  # float32 [response_len]
    draft_len: int  # length of the draft offered (0: none)
    accepted_len: int  # draft tokens kept
    fully_reused: bool  # the whole draft was returned without generation
    finish_reason: str  # "stop" (EOS / stop token) | "length" | "abort"

    @property
    def response_len(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def num_decoded(self) -> int:
        """Tokens the engine decoded for this sample."""
        return self.response_len - self.accepted_len
