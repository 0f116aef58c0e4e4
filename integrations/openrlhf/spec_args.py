"""Our launcher flags (`--rollout.backend`, `--spec.*`), split off argv before OpenRLHF parses the rest.

| flag | default | meaning |
|---|---|---|
| `--rollout.backend {vllm,sglang-spec}` | vllm | `sglang-spec` swaps OpenRLHF's vLLM engines for ours |
| `--spec.lenience L` | e^0.5 | SPEC-RL lenience l >= 1 (1: vanilla acceptance; `inf`: reuse every draft) |
| `--spec.disable` | off | same engines, no drafts (the no-reuse baseline) |
| `--spec.seed S` | 0 | acceptance randomness (engine i uses S + i) |
| `--spec.store_max_tokens N` | unbounded | draft store budget per engine shard (tokens), LRU-evicted |
| `--spec.batch_window_ms W` | 20 | how long an engine waits for a burst of requests to end before a step |
| `--spec.placement {shared,local}` | shared | drafts in a store sharded over all engines, or each engine keeps its own (see placement.py) |
| `--spec.engine_profile {auto,cpu,gpu}` | auto | SGLang recipe (EngineConfig.profile); auto: gpu iff CUDA is available |
| `--spec.engine_dtype D` | auto | SGLang dtype; auto: float32 on cpu, bfloat16 on gpu |
| `--spec.max_total_tokens N` | 65536 (cpu) | SGLang KV pool size in tokens |
| `--spec.mem_fraction_static F` | --vllm.gpu_memory_utilization | SGLang's static GPU memory fraction |
| `--spec.engine_kwargs JSON` | {} | extra `sglang.Engine` keyword arguments |
| `--spec.stats_jsonl PATH` | none | append every engine step's StepStats as one JSON line |
| `--spec.ray_object_store_mb MB` | Ray's default | object store size when the launcher starts Ray itself |
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("vllm", "sglang-spec")


@dataclass(frozen=True)
class SpecSettings:
    """Everything our rollout engines need beyond what OpenRLHF passes to create_vllm_engines."""

    lenience: float = math.exp(0.5)
    enabled: bool = True
    seed: int = 0
    store_max_tokens: int | None = None
    batch_window_s: float = 0.02
    placement: str = "shared"
    engine_profile: str = "auto"
    engine_dtype: str = "auto"
    max_total_tokens: int | None = 65536
    mem_fraction_static: float | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    stats_jsonl: str | None = None

    def __post_init__(self) -> None:
        from specrl_sglang.acceptance import check_lenience

        check_lenience(self.lenience)
        if self.placement not in ("shared", "local"):
            raise ValueError(f"--spec.placement must be shared or local, got {self.placement!r}")
        if self.engine_profile not in ("auto", "cpu", "gpu"):
            raise ValueError(f"--spec.engine_profile must be auto, cpu or gpu, got {self.engine_profile!r}")
        if self.store_max_tokens is not None and self.store_max_tokens < 1:
            raise ValueError(f"--spec.store_max_tokens must be >= 1, got {self.store_max_tokens}")
        if self.batch_window_s < 0:
            raise ValueError(f"--spec.batch_window_ms must be >= 0, got {self.batch_window_s * 1000}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--rollout.backend", dest="backend", choices=BACKENDS, default="vllm")
    p.add_argument("--spec.lenience", dest="lenience", type=float, default=math.exp(0.5))
    p.add_argument("--spec.disable", dest="disable", action="store_true")
    p.add_argument("--spec.seed", dest="seed", type=int, default=0)
    p.add_argument("--spec.store_max_tokens", dest="store_max_tokens", type=int, default=None)
    p.add_argument("--spec.batch_window_ms", dest="batch_window_ms", type=float, default=20.0)
    p.add_argument("--spec.placement", dest="placement", default="shared")
    p.add_argument("--spec.engine_profile", dest="engine_profile", default="auto")
    p.add_argument("--spec.engine_dtype", dest="engine_dtype", default="auto")
    p.add_argument("--spec.max_total_tokens", dest="max_total_tokens", type=int, default=65536)
    p.add_argument("--spec.mem_fraction_static", dest="mem_fraction_static", type=float, default=None)
    p.add_argument("--spec.engine_kwargs", dest="engine_kwargs", type=json.loads, default={})
    p.add_argument("--spec.stats_jsonl", dest="stats_jsonl", default=None)
    p.add_argument("--spec.ray_object_store_mb", dest="ray_object_store_mb", type=int, default=None)
    return p


class SpecArgError(ValueError):
    """A bad --spec.* / --rollout.backend flag or an incompatible flag combination."""


def split_argv(argv: Sequence[str]) -> tuple[str, SpecSettings, int | None, list[str]]:
    """(backend, settings, ray_object_store_mb, the argv left for OpenRLHF's parser).

    Any other `--spec.*` flag is an error here (OpenRLHF would reject it too, less clearly).
    """
    parser = _parser()
    ns, rest = parser.parse_known_args(list(argv))
    unknown = [a for a in rest if a.startswith("--spec.") or a.startswith("--rollout.backend")]
    if unknown:
        known = sorted(o for a in parser._actions for o in a.option_strings)
        raise SpecArgError(f"unknown flag(s) {unknown}; ours are: {', '.join(known)}")
    if ns.backend != "sglang-spec":
        given = [a.split("=")[0] for a in argv if a.startswith("--spec.")]
        if given:
            raise SpecArgError(f"{given} only apply with --rollout.backend sglang-spec")
    try:
        settings = SpecSettings(
            lenience=ns.lenience,
            enabled=not ns.disable,
            seed=ns.seed,
            store_max_tokens=ns.store_max_tokens,
            batch_window_s=ns.batch_window_ms / 1000.0,
            placement=ns.placement,
            engine_profile=ns.engine_profile,
            engine_dtype=ns.engine_dtype,
            max_total_tokens=ns.max_total_tokens,
            mem_fraction_static=ns.mem_fraction_static,
            engine_kwargs=dict(ns.engine_kwargs),
            stats_jsonl=ns.stats_jsonl,
        )
    except ValueError as exc:
        raise SpecArgError(str(exc)) from None
    return ns.backend, settings, ns.ray_object_store_mb, rest
