"""A verifiable-reward task: reverse a sequence of letters.

Prompt `"rev: c a f b ="`, answer `" b f a c"` then EOS. The reward is exact-checkable and dense:
the fraction of answer positions that are right (a response of the wrong length is scored against
the longer of the two), so a tiny policy gets a learning signal from the start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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


def random_problem(rng: np.random.Generator, config: TaskConfig = TaskConfig()) -> Problem:
    n = int(rng.integers(config.min_letters, config.max_letters + 1))
    return make_problem([LETTERS[i] for i in rng.integers(0, len(LETTERS), n)])


def reward(response_text: str, answer: str, finished: bool) -> float:
    """Fraction of answer letters at the right position; 0 for an unfinished (truncated) response."""
    if not finished:
        return 0.0
    got, want = response_text.split(), answer.split()
    if not want:
        return float(not got)
    hits = sum(g == w for g, w in zip(got, want))
    return hits / max(len(got), len(want))


class ReversalTask:
    """The `tasks.Task` interface over this module."""

    name = "reversal"
    vocab_size = 320
    defaults: dict[str, Any] = {"model_size": "tiny", "max_response_len": 24, "num_prompts": 64, "prompts_per_step": 16, "epochs": 6, "lr": 5e-4}
    warmup_defaults: dict[str, Any] = {"steps": 400, "lr": 1e-3}

    def problems(self, num_prompts: int, seed: int) -> list[Problem]:
        return make_problems(TaskConfig(num_prompts=num_prompts, seed=seed))

    def training_problem(self, rng: np.random.Generator) -> Problem:
        return random_problem(rng)

    def corpus(self, seed: int) -> list[str]:
        return corpus(TaskConfig(seed=seed))

    def target(self, problem: Problem) -> str:
        return problem.answer

    def reward(self, response_text: str, problem: Problem, finished: bool) -> float:
        return reward(response_text, problem.answer, finished)

    def answer_of(self, response_text: str) -> str:
        return " ".join(response_text.split())

    def fingerprint(self) -> dict[str, Any]:
        return {"config": asdict(TaskConfig()), "letters": LETTERS}
