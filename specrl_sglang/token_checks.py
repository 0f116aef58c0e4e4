"""The one owner of token-id and context-length rules for everything sent to a model.

`ModelLimits` is what a served model allows (vocabulary and context length); every layer that takes
token ids from a caller (the rollout step, the HTTP schema, snapshot restore) validates them here,
before anything is sent to an engine or written to a store. Errors are `ValueError`s that name the
offending field (`what`) and value; the server maps them to 400.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

INT32_MAX = int(np.iinfo(np.int32).max)


class ModelLimits(NamedTuple):
    vocab_size: int
    context_len: int

    def check_ids(self, tokens: Any, what: str, allow_empty: bool = False) -> np.ndarray:
        """`tokens` as a 1-D int32 array of ids in [0, vocab_size), or ValueError naming `what`."""
        return check_ids(tokens, self.vocab_size, what, allow_empty)

    def check_len(self, total_len: int, what: str) -> None:
        """ValueError unless `total_len` tokens fit the model's context."""
        if total_len > self.context_len:
            raise ValueError(f"{what}: {total_len} tokens exceed the model's context length {self.context_len}")


def check_ids(tokens: Any, vocab_size: int, what: str, allow_empty: bool = False) -> np.ndarray:
    """Validate a 1-D sequence of integer token ids (lists of Python ints of any size, or integer
    numpy arrays; bools, floats and nested lists are refused) and return it as int32."""
    if isinstance(tokens, np.ndarray):
        arr = tokens
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"{what} must be a 1-D array of integer token ids, got dtype={arr.dtype} shape={arr.shape}")
    elif isinstance(tokens, (list, tuple)):
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                raise ValueError(f"{what} must hold integer token ids, got {type(t).__name__} {t!r:.40}")
            if not 0 <= t < vocab_size:
                raise ValueError(f"{what} has token id {t} outside the vocabulary [0, {vocab_size})")
        arr = np.asarray(tokens, dtype=np.int64) if tokens else np.zeros(0, np.int64)
    else:
        raise ValueError(f"{what} must be a list of integer token ids, got {type(tokens).__name__}")
    if arr.size == 0:
        if not allow_empty:
            raise ValueError(f"{what} must not be empty")
        return np.zeros(0, np.int32)
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"{what} has token id {bad} outside the vocabulary [0, {vocab_size})")
    return arr.astype(np.int32, copy=False)
