"""The one owner of how results become strict JSON (wire answers, step logs, reports, bench lines).

`plain(value)`: a plain-Python copy - numpy scalars and arrays become numbers and lists, tuples
become lists, dict keys become strings, and non-finite floats (a NaN KV-hit ratio of a step
without drafts, an undefined variance) become None, because JSON has no NaN. `dumps(obj)` is
`json.dumps` of that copy with `allow_nan=False`, so a stray NaN is an error here, never an
unparsable line in a user's log. Pure: nothing is mutated.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """Plain-Python copy of `value` (see module docstring)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any, indent: int | None = None, compact: bool = False) -> str:
    """Strict JSON text of `plain(obj)`; `compact` drops the spaces after separators."""
    return json.dumps(plain(obj), allow_nan=False, indent=indent, separators=(",", ":") if compact else None)
