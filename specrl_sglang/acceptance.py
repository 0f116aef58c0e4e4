"""SPEC-RL's acceptance rule as pure functions (numpy only, no engine).

Draft token i is accepted iff  log U_i <= log l + log p_new(y_i) - log p_old(y_i),  U_i ~ U(0, 1),
i.e. with probability min(1, l * p_new / p_old). The first rejection ends the reused prefix; the
EOS token is verified like any other. `l = 1` is vanilla speculative acceptance, `l = inf` reuses
every draft whole.

Randomness is fresh per call but reproducible: `acceptance_rng(seed, step)` derives an independent
stream for each rollout step from one seed (the reference implementation reseeded a constant every
step, so the same positions were rejected epoch after epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def acceptance_rng(seed: int, step: int) -> np.random.Generator:
    """A generator for rollout step `step`, independent across steps and reproducible from `seed`."""
    if seed < 0 or step < 0:
        raise ValueError(f"seed and step must be >= 0, got seed={seed} step={step}")
    return np.random.default_rng([int(seed), int(step)])


def check_lenience(lenience: float) -> float:
    """Return `lenience` as a float, or raise ValueError unless it is a number >= 1 (inf allowed)."""
    value = float(lenience)
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"lenience must be >= 1 (1 = vanilla, inf = reuse everything), got {lenience!r}")
    return value


def accepted_len(
    logp_new: np.ndarray, logp_old: np.ndarray, lenience: float, rng: np.random.Generator
) -> int:
    """Length of the accepted prefix of one draft (0 .. len(draft)).

    `logp_new`, `logp_old`: log-probs of the draft tokens under the current and the producing
    policy, same length, no NaN. Draws len(draft) uniforms from `rng` (always, so that the stream
    consumed does not depend on where the cut falls).
    """
    new = np.asarray(logp_new, dtype=np.float64)
    old = np.asarray(logp_old, dtype=np.float64)
    if new.shape != old.shape or new.ndim != 1:
        raise ValueError(f"log-prob arrays must be 1-D and equal in length, got {new.shape} and {old.shape}")
    if np.isnan(new).any() or np.isnan(old).any():
        raise ValueError("log-probs must not be NaN")
    log_l = math.log(check_lenience(lenience))
    log_u = np.log(rng.random(new.shape[0]))
    if math.isinf(log_l):
        return int(new.shape[0])
    with np.errstate(invalid="ignore"):
        threshold = log_l + new - old  # -inf - -inf would be NaN: treat as accept (p_old = 0)
    rejected = np.flatnonzero(~(np.isnan(threshold) | (log_u <= threshold)))
    return int(rejected[0]) if rejected.size else int(new.shape[0])


def accepted_lens(
    logp_new: Sequence[np.ndarray], logp_old: Sequence[np.ndarray], lenience: float, rng: np.random.Generator
) -> np.ndarray:
    """`accepted_len` for a batch of drafts, in order; returns int64 [num_drafts]."""
    if len(logp_new) != len(logp_old):
        raise ValueError(f"{len(logp_new)} new log-prob arrays but {len(logp_old)} old ones")
    return np.array([accepted_len(n, o, lenience, rng) for n, o in zip(logp_new, logp_old)], dtype=np.int64)
