"""A verifiable-reward task: reverse a sequence of letters.

Prompt `"rev: c a f b ="`, answer `" b f a c"` then EOS. The reward is exact-checkable and dense:
the fraction of answer positions that are right (a response of the wrong length is scored against
the longer of the two), so a tiny policy gets a learning signal from the start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

LETTERS = "abcdefgh"


@dataclass(frozen=True)
class TaskConfig:
    num_prompts: int = 64
    min_letters: int = 4
    max_letters: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_letters <= self.max_letters:
            raise ValueError(f"need 1 <= min_letters <= max_letters, got {self.min_letters}, {self.max_letters}")
        if self.num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {self.num_prompts}")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str  # without EOS

    @property
    def prompt_id(self) -> str:
        """Stable identity of the prompt (text + label), independent of its position in an epoch."""
        return hashlib.sha1(f"{self.prompt}\x00{self.answer}".encode()).hexdigest()[:16]


def make_problem(letters: list[str]) -> Problem:
    return Problem(prompt="rev: " + " ".join(letters) + " =", answer="".join(" " + c for c in reversed(letters)))


def make_problems(config: TaskConfig) -> list[Problem]:
    """`config.num_prompts` distinct problems, reproducible from `config.seed`."""
    rng = np.random.default_rng(config.seed)
    seen: dict[str, Problem] = {}
    while len(seen) < config.num_prompts:
        n = int(rng.integers(config.min_letters, config.max_letters + 1))
        problem = make_problem([LETTERS[i] for i in rng.integers(0, len(LETTERS), n)])
        seen.setdefault(problem.prompt, problem)
    return list(seen.values())


def corpus(config: TaskConfig, num_extra: int = 2000) -> list[str]:
    """Text to train the tokenizer on: every letter, the markers, and sample problems."""
    rng = np.random.default_rng(config.seed + 1)
    lines = []
    for _ in range(num_extra):
        n = int(rng.integers(1, config.max_letters + 1))
        p = make_problem([LETTERS[i] for i in rng.integers(0, len(LETTERS), n)])
        lines.append(p.prompt + p.answer)
    return lines


def reward(response_text: str, answer: str, finished: bool) -> float:
    """Fraction of answer letters at the right position; 0 for an unfinished (truncated) response."""
    if not finished:
        return 0.0
    got, want = response_text.split(), answer.split()
    if not want:
        return float(not got)
    hits = sum(g == w for g, w in zip(got, want))
    return hits / max(len(got), len(want))
