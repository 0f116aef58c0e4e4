"""What the trajectory store takes (Response) and gives back (Draft), and how input is checked.

Shapes: every array is 1-D with one entry per response token. Token ids are np.int32 >= 0;
log-probs are np.float32, finite and <= LOGPROB_TOLERANCE (a log-probability is <= 0; float
rounding may push it a hair above); policy versions, if any, are np.int32 >= 0.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np

from radix_cache.inputs import as_token_ids

LOGPROB_TOLERANCE = 1e-4
PROMPT_DIGEST_LEN = 16  # bytes of blake2b over the prompt's token ids


class Response(NamedTuple):
    """One sampled response of a prompt, as produced by a rollout."""

    token_ids: np.ndarray  # (response_len,) int32, EOS included if generated
    logprobs: np.ndarray  # (response_len,) float32, log p_policy(token | prefix)
    versions: np.ndarray | None = None  # (response_len,) int32 policy version of each token


class Draft(NamedTuple):
    """A stored response handed out as a draft; fresh arrays the caller may keep and modify."""

    token_ids: np.ndarray  # (draft_len,) int32
    logprobs: np.ndarray  # (draft_len,) float32
    versions: np.ndarray | None  # (draft_len,) int32, or None if stored without versions


def as_response(response: Any, index: int) -> Response:
    """Validate one response (a Response, or a (token_ids, logprobs[, versions]) tuple).

    Returns a Response of contiguous np.int32 / np.float32 / np.int32-or-None arrays. Raises
    TypeError or ValueError naming ``responses[index]`` and the problem. Empty responses are
    valid (they become empty drafts).
    """
    where = f"responses[{index}]"
    if isinstance(response, Response):
        token_ids, logprobs, versions = response
    elif isinstance(response, (tuple, list)) and len(response) in (2, 3):
        token_ids, logprobs, versions = (*response, None)[:3]
    else:
        raise TypeError(f"{where} must be a Response or a (token_ids, logprobs[, versions]) tuple")
    token_ids = np.ascontiguousarray(as_token_ids(token_ids, f"{where}.token_ids"))
    logprobs = _as_logprobs(logprobs, len(token_ids), f"{where}.logprobs")
    if versions is not None:
        versions = np.ascontiguousarray(as_token_ids(versions, f"{where}.versions"))
        if len(versions) != len(token_ids):
            raise ValueError(f"{where}.versions length {len(versions)} != token_ids length {len(token_ids)}")
    return Response(token_ids, logprobs, versions)


def _as_logprobs(logprobs: Any, response_len: int, what: str) -> np.ndarray:
    arr = logprobs if isinstance(logprobs, np.ndarray) else np.asarray(logprobs)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if len(arr) != response_len:
        raise ValueError(f"{what} length {len(arr)} != token_ids length {response_len}")
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, rejected below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if len(arr):
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} must be finite (no NaN or inf)")
        if float(arr.max()) > LOGPROB_TOLERANCE:
            raise ValueError(f"{what} has log-prob {float(arr.max())} > 0")
    return arr


def prompt_digest(prompt_ids: Any) -> bytes:
    """Digest of a prompt's token ids (validated like any key), to catch prompt_id collisions."""
    tokens = as_token_ids(prompt_ids, "prompt_ids").astype("<i4", copy=False)
    return hashlib.blake2b(tokens.tobytes(), digest_size=PROMPT_DIGEST_LEN).digest()
