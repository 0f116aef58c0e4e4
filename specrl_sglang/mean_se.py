"""Mean and standard error of a sample of independent measurements: the one estimator behind every
error bar the reports print (demo reward change, bench quality, bench fidelity).

Pure numpy; safe to import anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np


class MeanSE(NamedTuple):
    mean: float
    se: float  # sample std (ddof=1) / sqrt(n); NaN for fewer than two values


def mean_se(values: Iterable[float]) -> MeanSE:
    """Mean and standard error of the mean of a 1-D sample (NaN mean for an empty one)."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"mean_se takes a 1-D sample, got shape {arr.shape}")
    if arr.size == 0:
        return MeanSE(math.nan, math.nan)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return MeanSE(float(arr.mean()), se)
