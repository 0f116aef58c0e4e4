"""Settings of the embedded RL demo: one workload (see workload.config), several rollout arms."""

from __future__ import annotations

from dataclasses import dataclass, field

from specrl_sglang.spec_config import MODES
from specrl_sglang.workload.config import WorkloadConfig

DEFAULT_ARMS = ("vanilla", "spec-rl", "exact")  # arm name = rollout mode


@dataclass(frozen=True)
class DemoConfig:
    """Every arm trains the same warm policy on the same problems in the same order from the same
    seed; only the rollout mode differs."""

    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    out_dir: str = "runs/demo"
    arms: tuple[str, ...] = DEFAULT_ARMS

    def __post_init__(self) -> None:
        if not self.arms or any(a not in MODES for a in self.arms) or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be distinct modes out of {', '.join(MODES)}, got {','.join(self.arms)!r}")
