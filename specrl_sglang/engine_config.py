"""Configuration of the SGLang engine that serves verify and continuation requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Profile = Literal["cpu", "gpu"]
CPU_MEM_FRACTION = 0.5


@dataclass(frozen=True)
class EngineConfig:
    """How to start `sglang.Engine`.

    `profile="cpu"` is the dev/CI recipe measured in PLATFORM.md (torch_native attention, pytorch
    sampling, no CUDA graphs, float32); `profile="gpu"` leaves SGLang's own GPU defaults alone.
    `extra` is passed to `sglang.Engine` verbatim and wins over the profile's values.
    """

    model_path: str
    profile: Profile = "cpu"
    dtype: str = "float32"
    random_seed: int = 0
    max_total_tokens: int | None = 65536
    page_size: int = 1
    mem_fraction_static: float | None = None
    log_level: str = "error"
    enable_memory_saver: bool = False  # GPU only: lets release_memory()/resume_memory() free weights + KV
    # CPU profile: torch threads of SGLang's scheduler process (OMP_NUM_THREADS at its start). On a
    # small machine shared with a trainer, more threads than cores each process can have oversubscribe
    # the CPU (measured 10-100x slower decoding under load); None leaves torch's default (all cores).
    cpu_threads: int | None = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in ("cpu", "gpu"):
            raise ValueError(f"profile must be 'cpu' or 'gpu', got {self.profile!r}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        if self.max_total_tokens is not None and self.max_total_tokens < 256:
            raise ValueError(f"max_total_tokens must be >= 256, got {self.max_total_tokens}")
        if self.cpu_threads is not None and (isinstance(self.cpu_threads, bool) or self.cpu_threads < 1):
            raise ValueError(f"cpu_threads must be >= 1 or None, got {self.cpu_threads!r}")
        if self.enable_memory_saver and self.profile != "gpu":
            raise ValueError("enable_memory_saver needs profile='gpu' (SGLang's memory saver releases CUDA memory)")

    def process_env(self) -> dict[str, str]:
        """Environment variables the engine's subprocesses must start with."""
        if self.profile != "cpu" or self.cpu_threads is None:
            return {}
        return {"OMP_NUM_THREADS": str(self.cpu_threads), "MKL_NUM_THREADS": str(self.cpu_threads)}

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `sglang.Engine(**kwargs)`."""
        kwargs: dict[str, Any] = {
            "model_path": self.model_path,
            "dtype": self.dtype,
            "random_seed": self.random_seed,
            "page_size": self.page_size,
            "skip_tokenizer_init": True,
            "log_level": self.log_level,
        }
        if self.max_total_tokens is not None:
            kwargs["max_total_tokens"] = self.max_total_tokens
        if self.enable_memory_saver:
            kwargs["enable_memory_saver"] = True
        if self.profile == "cpu":
            kwargs.update(
                device="cpu",
                attention_backend="torch_native",
                sampling_backend="pytorch",
                disable_cuda_graph=True,
                # SGLang's CPU start checks that available RAM after loading stays above (1 - fraction)
                # of what it was before; with a small fraction anything else allocating meanwhile
                # (a second engine, a trainer) fails the start. The KV pool is capped by
                # max_total_tokens, so the fraction changes nothing else.
                mem_fraction_static=self.mem_fraction_static or CPU_MEM_FRACTION,
                skip_server_warmup=True,
                # An idle scheduler otherwise busy-polls a whole core; on a 2-core machine that is half
                # of what the trainer (and the other processes) could use. It wakes on the next message.
                sleep_on_idle=True,
            )
        elif self.mem_fraction_static is not None:
            kwargs["mem_fraction_static"] = self.mem_fraction_static
        kwargs.update(self.extra)
        return kwargs
