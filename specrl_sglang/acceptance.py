"""The acceptance rules of speculative reuse, as pure functions (numpy only, no engine).

SPEC-RL ("spec-rl"): draft token i is accepted iff log U_i <= log l + log p_new(y_i) - log p_old(y_i),
U_i ~ U(0, 1), i.e. with probability min(1, l * p_new / p_old). `l = 1` is vanilla speculative
acceptance, `l = inf` reuses every draft whole.

Exact ("exact"): the draft is a point-mass proposal, so token i is accepted iff log U_i <= log p_new(y_i),
i.e. with probability p_new(y_i | prefix). At the first rejection the replacement token must then be
drawn from p_new with y_i excluded (the engine does that: see `GenerateRequest.ban_token`), which
makes every token's marginal exactly p_new: P(a) = p(a) if a = y_i, else (1 - p(y_i)) * p(a) / (1 - p(y_i)).

In both rules the first rejection ends the reused prefix; EOS is verified like any other token.
Randomness is fresh per step but reproducible: `acceptance_rng(seed, step, round)` derives an
independent stream for each rollout step (and each resume round of an interrupted step) from one
seed; `draw_log_uniforms` consumes it per draft in request order, and the amount drawn depends only
on the draft lengths, never on where the cuts fall or in which order verify results arrive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def acceptance_rng(seed: int, step: int, round_index: int = 0) -> np.random.Generator:
    """A generator for rollout step `step` (resume round `round_index`), independent across steps."""
    if seed < 0 or step < 0 or round_index < 0:
        raise ValueError(f"seed, step and round must be >= 0, got seed={seed} step={step} round={round_index}")
    key = [int(seed), int(step)] if round_index == 0 else [int(seed), int(step), int(round_index)]
    return np.random.default_rng(key)


def check_lenience(lenience: float) -> float:
    """Return `lenience` as a float, or raise ValueError unless it is a number >= 1 (inf allowed)."""
    try:
        value = float(lenience)
    except (TypeError, ValueError):
        raise ValueError(f"lenience must be a number >= 1, got {lenience!r}") from None
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"lenience must be >= 1 (1 = vanilla, inf = reuse everything), got {lenience!r}")
    return value


def draw_log_uniforms(rng: np.random.Generator, lengths: Sequence[int]) -> list[np.ndarray]:
    """log U for every token of every draft, drafts in order (float64 arrays of the given lengths)."""
    return [np.log(rng.random(int(n))) for n in lengths]


def _check(new: np.ndarray, log_u: np.ndarray) -> None:
    if new.ndim != 1 or new.shape != log_u.shape:
        raise ValueError(f"log-prob and uniform arrays must be 1-D and equal in length, got {new.shape} and {log_u.shape}")
    if np.isnan(new).any():
        raise ValueError("log-probs must not be NaN")


def spec_rl_cut(log_u: np.ndarray, logp_new: np.ndarray, logp_old: np.ndarray, lenience: float) -> int:
    """Accepted prefix length (0 .. len) under SPEC-RL's rule with lenience l."""
    new = np.asarray(logp_new, dtype=np.float64)
    old = np.asarray(logp_old, dtype=np.float64)
    _check(new, log_u)
    if old.shape != new.shape:
        raise ValueError(f"new and old log-prob arrays must be equal in length, got {new.shape} and {old.shape}")
    if np.isnan(old).any():
        raise ValueError("log-probs must not be NaN")
    log_l = math.log(check_lenience(lenience))
    if math.isinf(log_l):
        return int(new.shape[0])
    with np.errstate(invalid="ignore"):
        threshold = log_l + new - old  # -inf - -inf would be NaN: treat as accept (p_old = 0)
    rejected = np.flatnonzero(~(np.isnan(threshold) | (log_u <= threshold)))
    return int(rejected[0]) if rejected.size else int(new.shape[0])


def exact_cut(log_u: np.ndarray, logp_new: np.ndarray) -> int:
    """Accepted prefix length (0 .. len) of a point-mass draft: token i kept with probability p_new(y_i)."""
    new = np.asarray(logp_new, dtype=np.float64)
    _check(new, log_u)
    rejected = np.flatnonzero(log_u > new)
    return int(rejected[0]) if rejected.size else int(new.shape[0])


def accepted_len(logp_new: np.ndarray, logp_old: np.ndarray, lenience: float, rng: np.random.Generator) -> int:
    """SPEC-RL's accepted prefix length of one draft, drawing len(draft) uniforms from `rng`."""
    new = np.asarray(logp_new, dtype=np.float64)
    if new.ndim != 1:
        raise ValueError(f"log-prob arrays must be 1-D, got shape {new.shape}")
    (log_u,) = draw_log_uniforms(rng, [new.shape[0]])
    return spec_rl_cut(log_u, new, logp_old, lenience)


def accepted_lens(
    logp_new: Sequence[np.ndarray], logp_old: Sequence[np.ndarray], lenience: float, rng: np.random.Generator
) -> np.ndarray:
    """`accepted_len` for a batch of drafts, in order; returns int64 [num_drafts]."""
    if len(logp_new) != len(logp_old):
        raise ValueError(f"{len(logp_new)} new log-prob arrays but {len(logp_old)} old ones")
    return np.array([accepted_len(n, o, lenience, rng) for n, o in zip(logp_new, logp_old)], dtype=np.int64)
