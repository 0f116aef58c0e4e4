"""A drop-in for OpenRLHF's `create_vllm_engines`: same signature, returns our engine actors.

`openrlhf.cli.train_ppo_ray.train()` calls `create_vllm_engines(num_engines, tensor_parallel_size,
pretrain, seed, full_determinism, enable_prefix_caching, enforce_eager, max_model_len, shared_pg,
gpu_memory_utilization, vllm_enable_sleep, logprobs_mode, agent_func_path=..., remote_rm_url=...,
max_images_per_prompt=...)` and hands the returned actor handles to its trainer. `SpecEngineFactory`
is such a callable. Placement mirrors OpenRLHF's: one GPU per engine in a PACK placement group, or
0.2 GPU on the shared placement group in colocated mode; on CPU engines take one CPU and no GPU.
After creation every engine is told the handles of all engines (the sharded draft store), unless
`--spec.placement local` keeps each engine's drafts to itself. Sleep mode: OpenRLHF passes
`vllm_enable_sleep` only with `--train.colocate_all` (it turns the flag off otherwise); then the
engines start with SGLang's memory saver and are put to sleep, as OpenRLHF does with vLLM's.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from integrations.openrlhf.engine_actor import SpecRolloutActor
from integrations.openrlhf.spec_args import SpecSettings

def resolve_profile(settings: SpecSettings) -> str:
    if settings.engine_profile != "auto":
        return settings.engine_profile
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def engine_config(
    settings: SpecSettings,
    pretrain: str,
    seed: int,
    enforce_eager: bool,
    gpu_memory_utilization: float | None,
    enable_sleep: bool = False,
):
    """EngineConfig for one engine from our settings and OpenRLHF's vLLM arguments."""
    from specrl_sglang.engine_config import EngineConfig

    profile = resolve_profile(settings)
    dtype = settings.engine_dtype if settings.engine_dtype != "auto" else ("float32" if profile == "cpu" else "bfloat16")
    extra = dict(settings.engine_kwargs)
    if profile == "gpu" and enforce_eager:
        extra.setdefault("disable_cuda_graph", True)
    mem = settings.mem_fraction_static
    if mem is None:
        mem = gpu_memory_utilization if profile == "gpu" else None  # None: EngineConfig's CPU default
    return EngineConfig(
        model_path=pretrain,
        profile=profile,
        dtype=dtype,
        random_seed=seed,
        max_total_tokens=settings.max_total_tokens,
        mem_fraction_static=mem,
        enable_memory_saver=enable_sleep,
        extra=extra,
    )


class SpecEngineFactory:
    """Callable with `create_vllm_engines`' signature; see module docstring."""

    def __init__(self, settings: SpecSettings) -> None:
        self.settings = settings
        self.engines: list[Any] = []

    def __call__(
        self,
        num_engines: int,
        tensor_parallel_size: int,
        pretrain: str,
        seed: int,
        full_determinism: bool,
        enable_prefix_caching: bool,
        enforce_eager: bool,
        max_model_len: int,
        shared_pg=None,
        gpu_memory_utilization=None,
        vllm_enable_sleep=False,
        logprobs_mode=None,
        agent_func_path: str | None = None,
        remote_rm_url: Any = None,
        max_images_per_prompt: int = 0,
    ) -> list:
        if tensor_parallel_size != 1:
            raise ValueError("the sglang-spec backend runs one GPU per engine: use --vllm.tensor_parallel_size 1")
        if max_images_per_prompt:
            raise ValueError("the sglang-spec backend serves text-only models (--data.max_images_per_prompt must be 0)")
        on_gpu = resolve_profile(self.settings) == "gpu"
        colocated = shared_pg is not None  # OpenRLHF passes its placement group only with --train.colocate_all
        if on_gpu and shared_pg is None:
            shared_pg = placement_group([{"GPU": 1, "CPU": 1} for _ in range(num_engines)], strategy="PACK")
            ray.get(shared_pg.ready())
        remote_cls = ray.remote(SpecRolloutActor)
        engines = []
        for i in range(num_engines):
            options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 0, "max_concurrency": 1000}
            if on_gpu:
                share = 0.2 if colocated else 1  # as OpenRLHF: two models may share a GPU when colocated
                options.update(
                    num_cpus=share,
                    num_gpus=share,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=shared_pg, placement_group_capture_child_tasks=True, placement_group_bundle_index=i
                    ),
                )
            engines.append(
                remote_cls.options(**options).remote(
                    pretrain,
                    engine_index=i,
                    settings=self.settings,
                    engine_config=engine_config(
                        self.settings, pretrain, seed + i, enforce_eager, gpu_memory_utilization, vllm_enable_sleep
                    ),
                    max_model_len=max_model_len,
                    logprobs_mode=logprobs_mode,
                    agent_func_path=agent_func_path,
                    remote_rm_url=remote_rm_url,
                )
            )
        if self.settings.placement == "shared":
            ray.get([e.set_peers.remote(engines) for e in engines])
        else:
            ray.get([e.ready.remote() for e in engines])
        if vllm_enable_sleep:
            ray.get([e.sleep.remote() for e in engines])
        self.engines = engines
        return engines

