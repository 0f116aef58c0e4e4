"""A long-response verifiable task: column addition with every carry written out.

Prompt: every digit carries a label naming its number and place (x: `A` = units, `B` = tens, ...;
y: `K` = units, `L` = tens, ...), most significant first; e.g. x = 1937, y = 4852:

    add:
    x = D1 C9 B3 A7
    y = N4 M8 L5 K2

Target working: one line per place (`a` = units), units first. A line names its place, then the
two labelled digits it copies from the prompt, the carry-in (the previous line's `carry`), the
sum, and its split into written digit and carry; then the answer with one labelled digit per place
(the previous lines' `write` digits, most significant first; a final carry adds a place), then EOS:

    a: A7+K2+0=9 write 9 carry 0
    b: B3+L5+0=8 write 8 carry 0
    c: C9+M8+0=17 write 7 carry 1
    d: D1+N4+1=6 write 6 carry 0
    answer: d6 c7 b8 a9

Every copy is a lookup of a label that occurs once before it (an induction pattern tiny
transformers learn fast), never "the i-th digit from the right".

Built for a character-level tokenizer (`TINY_VOCAB_SIZE`: byte-level BPE with no merges), so a
response is ~30 tokens per place + ~3 per answer digit: ~140 tokens at 4 digits, ~340 at 10.
Almost every token is determined by an earlier one (labels, copied digits, the `write`/`carry`
split of the sum); the branching points of an imperfect policy are the sums, the carries and
the answer's read-out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PLACES = "abcdefghijk"  # place labels of the working and the answer, units first
X_LABELS, Y_LABELS = "ABCDEFGHIJ", "KLMNOPQRST"  # labels of x's and y's digits, units first
MAX_DIGITS = len(X_LABELS)
TINY_VOCAB_SIZE = 259  # 3 special tokens + 256 bytes: build_tokenizer then learns no merges
_ANSWER = re.compile(r"answer:((?: [a-k][0-9])*)")


@dataclass(frozen=True)
class TaskConfig:
    num_prompts: int = 32
    min_digits: int = 4
    max_digits: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits <= MAX_DIGITS:
            raise ValueError(f"need 1 <= min_digits <= max_digits <= {MAX_DIGITS}, got {self.min_digits}, {self.max_digits}")
        if self.num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {self.num_prompts}")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str  # the target working + answer line, without EOS (the SFT target)
    x: int
    y: int

    @property
    def total(self) -> int:
        return self.x + self.y


def _labelled(digits: list[int], labels: str) -> str:
    """Digits given units first, written most significant first, each after its label."""
    return " ".join(f"{labels[i]}{d}" for i, d in reversed(list(enumerate(digits))))


def make_problem(x_digits: list[int], y_digits: list[int]) -> Problem:
    """The problem adding two numbers given as equal-length digit lists, units first."""
    if len(x_digits) != len(y_digits) or not 1 <= len(x_digits) <= MAX_DIGITS:
        raise ValueError(f"x and y need the same number of digits, 1..{MAX_DIGITS}")
    lines, out, carry = [], [], 0
    for i, (a, b) in enumerate(zip(x_digits, y_digits)):
        s = a + b + carry
        lines.append(f"{PLACES[i]}: {X_LABELS[i]}{a}+{Y_LABELS[i]}{b}+{carry}={s} write {s % 10} carry {s // 10}")
        out.append(s % 10)
        carry = s // 10
    if carry:
        out.append(carry)
    lines.append("answer: " + _labelled(out, PLACES))
    value = lambda ds: sum(d * 10**i for i, d in enumerate(ds))  # noqa: E731
    prompt = f"add:\nx = {_labelled(x_digits, X_LABELS)}\ny = {_labelled(y_digits, Y_LABELS)}\n"
    return Problem(prompt=prompt, answer="\n".join(lines) + "\n", x=value(x_digits), y=value(y_digits))


def random_problem(rng: np.random.Generator, min_digits: int, max_digits: int) -> Problem:
    """Two random n-digit numbers (n uniform in [min_digits, max_digits], leading digits non-zero)."""
    n = int(rng.integers(min_digits, max_digits + 1))
    x, y = rng.integers(0, 10, n), rng.integers(0, 10, n)
    x[-1], y[-1] = rng.integers(1, 10), rng.integers(1, 10)
    return make_problem([int(d) for d in x], [int(d) for d in y])


def make_problems(config: TaskConfig) -> list[Problem]:
    """`config.num_prompts` distinct problems, reproducible from `config.seed`."""
    rng = np.random.default_rng(config.seed)
    seen: dict[str, Problem] = {}
    while len(seen) < config.num_prompts:
        problem = random_problem(rng, config.min_digits, config.max_digits)
        seen.setdefault(problem.prompt, problem)
    return list(seen.values())


def sft_target(problem: Problem) -> str:
    """The supervised target text (the full working and answer line); the caller appends EOS."""
    return problem.answer


def corpus(config: TaskConfig, num_extra: int = 500) -> list[str]:
    """Text to train the tokenizer on: sample prompts + workings (every character the task uses)."""
    rng = np.random.default_rng(config.seed + 1)
    return [p.prompt + p.answer for p in (random_problem(rng, 1, config.max_digits) for _ in range(num_extra))]


def parse_answer(response_text: str) -> str | None:
    """The answer's digits, most significant first, from the last `answer:` line (None if absent)."""
    found = _ANSWER.findall(response_text)
    return re.sub(r"[^0-9]", "", found[-1]) if found and found[-1] else None


def reward(response_text: str, problem: Problem, finished: bool) -> float:
    """0.5 * digit credit + 0.5 * exact, in [0, 1]; 0.0 if not `finished` (truncated).

    `got` = digits of the last `answer:` line (labels dropped, most significant first; no such line
    or no digits: reward 0.0); `want` = decimal digits of x + y. Digit credit = number of places i
    (aligned from the units) where got and want have the same digit, divided by
    max(len(got), len(want)); exact = 1.0 iff got == want. The working lines are not scored: a
    wrong sum or carry costs reward only through the answer it leads to.
    """
    got = parse_answer(response_text) if finished else None
    if not got:
        return 0.0
    want = str(problem.total)
    hits = sum(g == w for g, w in zip(reversed(got), reversed(want)))
    return 0.5 * hits / max(len(got), len(want)) + 0.5 * float(got == want)


class CarryAddTask:
    """The `tasks.Task` interface over this module. The supervised warm-up trains on 3-10 digits."""

    name = "carry-add"
    vocab_size = TINY_VOCAB_SIZE
    defaults: dict[str, Any] = {}
    warmup_defaults: dict[str, Any] = {}
    warmup_min_digits = 3

    def problems(self, num_prompts: int, seed: int) -> list[Problem]:
        return make_problems(TaskConfig(num_prompts=num_prompts, seed=seed))

    def training_problem(self, rng: np.random.Generator) -> Problem:
        return random_problem(rng, self.warmup_min_digits, MAX_DIGITS)

    def corpus(self, seed: int) -> list[str]:
        return corpus(TaskConfig(seed=seed))

    def target(self, problem: Problem) -> str:
        return sft_target(problem)

    def reward(self, response_text: str, problem: Problem, finished: bool) -> float:
        return reward(response_text, problem, finished)

    def answer_of(self, response_text: str) -> str | None:
        return parse_answer(response_text)

    def fingerprint(self) -> dict[str, Any]:
        return {"config": asdict(TaskConfig()), "warmup_min_digits": self.warmup_min_digits, "format": "v1"}
