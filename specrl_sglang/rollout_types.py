"""Inputs and outputs of one speculative rollout step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from specrl_sglang.prompt_identity import check_prompt_id

if TYPE_CHECKING:
    from specrl_sglang.step_stats import StepStats


@dataclass(frozen=True)
class RolloutRequest:
    """One prompt of a rollout batch, to be sampled `num_samples` times.

    `prompt_id` is a stable identity of the prompt across epochs (`prompt_identity.prompt_key` of its
    label and token ids, or the caller's own), never a position in the epoch: drafts are looked up
    by it, so shuffling is harmless. Token ids are checked against the model by the runtime.
    """

    prompt_id: str
    prompt_ids: np.ndarray  # int32 [prompt_len]
    num_samples: int

    def __post_init__(self) -> None:
        check_prompt_id(self.prompt_id)
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, (int, np.integer)) or self.num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {self.num_samples!r} for prompt {self.prompt_id!r}")
        ids = np.asarray(self.prompt_ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"prompt {self.prompt_id!r}: prompt_ids must be a non-empty 1-D integer array")
        if int(ids.min()) < 0 or int(ids.max()) > np.iinfo(np.int32).max:
            raise ValueError(f"prompt {self.prompt_id!r}: prompt_ids must be token ids in [0, 2^31)")
        object.__setattr__(self, "prompt_ids", ids.astype(np.int32))
        object.__setattr__(self, "num_samples", int(self.num_samples))


@dataclass(frozen=True)
class Sample:
    """One response of a rollout step, entirely under the step's policy version.

    `logprobs` are per-token log-probs under that policy (verify log-probs for the accepted draft
    prefix, sampling log-probs for the continuation): usable as rollout log-probs for
    importance-sampling correction. Responses are not padded; EOS, when present, is the last token.
    `draft_len` / `accepted_len` describe the draft verified under the returned policy (the stored
    response, or after an interrupted step the sample's own partial response).
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
        """Tokens the engine decoded for this sample (in the final round)."""
        return self.response_len - self.accepted_len


class RolloutResult(NamedTuple):
    samples: list[Sample]  # grouped by prompt, in request order; n contiguous samples per prompt
    stats: "StepStats"
