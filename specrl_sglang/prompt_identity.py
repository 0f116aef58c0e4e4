"""The one prompt-identity rule: which prompt a set of drafts belongs to, across epochs.

A prompt is identified by its label (the reference answer, a dataset key, ... anything stable with
a `repr`) and its token ids, never by its position in an epoch: shuffling and resharding are
harmless. `prompt_key` is what the demo, the benchmarks and the OpenRLHF adapter use; clients of
`serve` may bring their own ids, which `check_prompt_id` validates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_PROMPT_ID_LEN = 512


def prompt_key(label: Any, prompt_ids: Sequence[int] | np.ndarray) -> str:
    """A 32-hex-digit id of (label, prompt token ids); equal inputs give equal keys in every process."""
    digest = hashlib.sha256()
    digest.update(repr(label).encode("utf-8", "backslashreplace"))
    digest.update(b"\x00")
    digest.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def check_prompt_id(prompt_id: Any, what: str = "prompt_id") -> str:
    """Return `prompt_id` or raise ValueError: a non-empty str of at most MAX_PROMPT_ID_LEN chars
    that encodes as UTF-8 (a lone surrogate would make every later snapshot fail)."""
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError(f"{what} must be a non-empty string, got {prompt_id!r:.60}")
    if len(prompt_id) > MAX_PROMPT_ID_LEN:
        raise ValueError(f"{what} has {len(prompt_id)} characters; the limit is {MAX_PROMPT_ID_LEN}")
    try:
        prompt_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {prompt_id!r:.60} is not encodable as UTF-8 (lone surrogate?)") from None
    return prompt_id
