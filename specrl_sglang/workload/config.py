"""Settings of the embedded workload (task, tiny model, warm-up, GRPO), shared by demo and benches."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from specrl_sglang.spec_config import DEFAULT_LENIENCE, SpecConfig
from specrl_sglang.tiny_model import TinyModelSpec
from specrl_sglang.workload.tasks import TASK_NAMES

# Model sizes of the local policy. "small" is the carry-add default; "tiny" is what the tests and
# the reversal task use.
MODEL_SIZES = {
    "tiny": TinyModelSpec(hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4, num_kv_heads=2),
    "small": TinyModelSpec(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2),
    "base": TinyModelSpec(hidden_size=256, intermediate_size=768, num_layers=6, num_heads=8, num_kv_heads=4),
}


@dataclass(frozen=True)
class WarmupConfig:
    """The supervised warm-up that makes the random tiny model write the task's working."""

    steps: int = 800
    batch: int = 32
    lr: float = 2e-3  # peak; linear ramp over the first 50 steps, then linear decay to 55% at the end
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or not self.lr > 0 or not self.max_grad_norm > 0:
            raise ValueError(f"warm-up needs steps >= 0, batch >= 1, lr > 0, max_grad_norm > 0; got {self}")

    def lr_at(self, step: int) -> float:
        """Learning rate of warm-up step `step` (1-based)."""
        return self.lr * min(1.0, step / 50) * (1.0 - 0.45 * step / max(1, self.steps))


@dataclass(frozen=True)
class WorkloadConfig:
    """One RL run: `epochs` passes over `num_prompts` prompts, `prompts_per_step` prompts of
    `samples_per_prompt` samples per GRPO step (drafts of a prompt are one epoch old)."""

    task: str = "carry-add"
    model_size: str = "small"  # 4 x 128: GRPO raises its carry-add reward; "tiny" (2 x 64) does not (bench/RESULTS.md)
    num_prompts: int = 32
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    max_response_len: int = 512
    epochs: int = 4
    lr: float = 3e-5  # Adam; on the small carry-add policy 3e-5 and 6e-5 both raised the reward over 16 steps (bench/RESULTS.md)
    temperature: float = 1.0
    lenience: float = DEFAULT_LENIENCE
    seed: int = 0
    cache_dir: str = ".cache/specrl"
    warmup: WarmupConfig = field(default_factory=WarmupConfig)

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {self.task!r}")
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {sorted(MODEL_SIZES)}, got {self.model_size!r}")
        for name in ("epochs", "num_prompts", "prompts_per_step", "max_response_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 (GRPO normalises rewards within a group)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        SpecConfig(lenience=self.lenience, seed=self.seed)  # the lenience rule's owner

    @classmethod
    def for_task(cls, task: str, **overrides) -> "WorkloadConfig":
        """The task's defaults (e.g. reversal: 24-token budget), then `overrides`."""
        from specrl_sglang.workload.tasks import get_task

        spec = get_task(task)
        warmup = WarmupConfig(**{**spec.warmup_defaults, **overrides.pop("warmup", {})})
        return cls(**{"task": task, **spec.defaults, **overrides, "warmup": warmup})

    @property
    def model_spec(self) -> TinyModelSpec:
        return MODEL_SIZES[self.model_size]

    @property
    def kv_pool_tokens(self) -> int:
        """SGLang KV pool size for this workload: two steps' worth (a verify pass's KV must survive
        until its continuation), at least 65536."""
        return max(65536, 2 * self.prompts_per_step * self.samples_per_prompt * self.max_response_len)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_prompts / self.prompts_per_step)
