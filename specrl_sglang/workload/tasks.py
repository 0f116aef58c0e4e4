"""The tasks the workload trains on, behind one interface.

- "carry-add" (default): column addition with every carry written out (`carry_add_task`):
  ~150-350-token step-by-step workings ending in a checkable answer - the RLVR-like regime.
- "reversal": reverse 4-10 letters (`reversal_task`): ~8-token answers, for fast tests.
A task gives problems (prompt text, target text, label), a tokenizer corpus, random training
problems for the supervised warm-up, and its verifiable reward.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Task(Protocol):
    name: str
    vocab_size: int  # size of the tokenizer to build (tiny_model.build_tokenizer)
    defaults: dict[str, Any]  # WorkloadConfig fields this task sets differently
    warmup_defaults: dict[str, Any]  # WarmupConfig fields this task sets differently

    def problems(self, num_prompts: int, seed: int) -> list[Any]:
        """`num_prompts` distinct problems (each with `.prompt` and `.answer` texts), reproducible."""
        ...

    def training_problem(self, rng: np.random.Generator) -> Any:
        """A random problem for the supervised warm-up."""
        ...

    def corpus(self, seed: int) -> list[str]: ...

    def target(self, problem: Any) -> str:
        """The supervised target (the caller appends EOS)."""
        ...

    def reward(self, response_text: str, problem: Any, finished: bool) -> float:
        """In [0, 1]; 0 for a truncated response."""
        ...

    def answer_of(self, response_text: str) -> str | None:
        """The checkable answer a response ends in (what the reward reads), None if it has none."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """What, besides the model and warm-up settings, a warm checkpoint depends on (cache key)."""
        ...


def get_task(name: str) -> Task:
    if name == "carry-add":
        from specrl_sglang.workload.carry_add_task import CarryAddTask

        return CarryAddTask()
    if name == "reversal":
        from specrl_sglang.workload.reversal_task import ReversalTask

        return ReversalTask()
    raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")


TASK_NAMES = ("carry-add", "reversal")
