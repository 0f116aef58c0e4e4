"""Settings of the embedded RL demo (defaults finish in a few minutes on a 2-core CPU)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from specrl_sglang.tiny_model import TinyModelSpec

MODEL_SIZES = {
    "tiny": TinyModelSpec(hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4, num_kv_heads=2),
    "small": TinyModelSpec(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2),
    "base": TinyModelSpec(hidden_size=256, intermediate_size=768, num_layers=6, num_heads=8, num_kv_heads=4),
}


# Demo arm -> rollout mode.
ARM_MODES = {"vanilla": "vanilla", "spec": "spec-rl", "exact": "exact"}


@dataclass(frozen=True)
class DemoConfig:
    out_dir: str = "runs/demo"
    cache_dir: str = ".cache/specrl"
    model_size: str = "tiny"
    epochs: int = 6
    num_prompts: int = 64
    prompts_per_step: int = 16
    samples_per_prompt: int = 8
    max_response_len: int = 24
    lenience: float = math.exp(0.5)
    temperature: float = 1.0
    lr: float = 5e-4
    warmup_steps: int = 400
    warmup_batch: int = 32
    seed: int = 0
    arms: tuple[str, ...] = ("vanilla", "spec")

    def __post_init__(self) -> None:
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {sorted(MODEL_SIZES)}, got {self.model_size!r}")
        for name in ("epochs", "num_prompts", "prompts_per_step", "samples_per_prompt", "max_response_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 (GRPO normalises rewards within a group)")
        if not self.arms or any(a not in ARM_MODES for a in self.arms):
            raise ValueError(f"arms must be a non-empty subset of {tuple(ARM_MODES)}, got {self.arms!r}")

    @property
    def model_spec(self) -> TinyModelSpec:
        return MODEL_SIZES[self.model_size]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_prompts / self.prompts_per_step)
