"""Validation of caller input for the tree and the store: token ids, payloads, counts.

Every function here only reads its arguments and either returns a normalized array or raises
``TypeError`` (wrong kind of thing) / ``ValueError`` (right kind, bad content). Callers validate
everything with these before they mutate anything.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

INT32_MAX = int(np.iinfo(np.int32).max)


def as_token_ids(key: Any, what: str = "key") -> np.ndarray:
    """Return ``key`` as a 1-D np.int32 array of token ids (no copy if it already is one).

    Accepts lists/tuples of ints and integer numpy arrays. Rejects floats, bools, strings and
    objects (TypeError), other shapes, negative ids and ids above int32 (ValueError).
    """
    if isinstance(key, np.ndarray):
        arr = key
    elif isinstance(key, (str, bytes)):
        raise TypeError(f"{what} must be a 1-D sequence of integer token ids, got {type(key).__name__}")
    else:
        try:
            arr = np.asarray(key)
        except (TypeError, ValueError) as exc:  # ragged nesting and the like
            raise TypeError(f"{what} must be a 1-D sequence of integer token ids: {exc}") from None
        if arr.size == 0 and arr.ndim == 1:
            return np.empty(0, dtype=np.int32)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind not in "iu":
        raise TypeError(f"{what} token ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.int32:
        if arr.size and int(arr.min()) < 0:
            raise ValueError(f"{what} has negative token id {int(arr.min())}")
        return arr
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            raise ValueError(f"{what} has negative token id {low}")
        if high > INT32_MAX:
            raise ValueError(f"{what} has token id {high} above the int32 range")
    return arr.astype(np.int32)


def as_payload(value: Any, key_len: int, what: str = "value") -> np.ndarray:
    """Return ``value`` as a 1-D numpy array of length ``key_len`` (no copy if already one).

    Any numeric or structured dtype is allowed; object dtypes are not. Float fields must not
    hold NaN (they may hold +-inf; stricter checks belong to the caller).
    """
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.hasobject or arr.dtype.kind in "OUSV" and arr.dtype.names is None:
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    if len(arr) != key_len:
        raise ValueError(f"{what} length {len(arr)} != key length {key_len}")
    for field in float_fields(arr):
        if np.isnan(field).any():
            raise ValueError(f"{what} contains NaN")
    return arr


def float_fields(arr: np.ndarray) -> list[np.ndarray]:
    """The floating-point columns of ``arr`` (itself, or the float fields of a structured array)."""
    if arr.dtype.names is None:
        return [arr] if arr.dtype.kind in "fc" else []
    return [arr[name] for name in arr.dtype.names if arr.dtype[name].kind in "fc"]


def as_count(num: Any, what: str) -> int:
    """Return ``num`` as a non-negative Python int; bools and non-integers are TypeErrors."""
    if isinstance(num, bool) or not isinstance(num, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(num).__name__}")
    if num < 0:
        raise ValueError(f"{what} must be >= 0, got {num}")
    return int(num)
