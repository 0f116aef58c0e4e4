"""Launch OpenRLHF's PPO/GRPO trainer with SGLang + SPEC-RL rollout engines in place of vLLM's.

    python -m integrations.openrlhf.train_ppo_ray <every openrlhf.cli.train_ppo_ray flag> \
        --rollout.backend sglang-spec [--spec.lenience 1.6487 --spec.* ...]

What it does, in order:
1. splits our flags (spec_args.py) off argv and checks the combination (compat.py): unknown
   `--spec.*` flags and combinations our engines cannot serve fail here, before Ray starts;
2. starts Ray itself (with OpenRLHF's default worker env, and on CPU-only machines the
   cpu_runtime setup hook and the flash_attn stand-in on the workers' PYTHONPATH) unless Ray is up;
3. replaces `openrlhf.trainer.ray.create_vllm_engines` (the name OpenRLHF's train_ppo_ray imports)
   by `SpecEngineFactory`, then runs OpenRLHF's own `openrlhf.cli.train_ppo_ray` as `__main__`: its
   parser (which rejects unknown flags), its argument checks, its `train()`, its trainer;
4. prints a per-step summary of draft reuse from the engines when training ends.
With `--rollout.backend vllm` (the default) it only runs OpenRLHF unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from integrations.openrlhf.compat import check_combination
from integrations.openrlhf.spec_args import SpecArgError, split_argv

SHIM_DIR = Path(__file__).resolve().parent / "_flash_attn_shim"
OPENRLHF_MAIN = "openrlhf.cli.train_ppo_ray"


def _run_openrlhf(argv: Sequence[str]) -> None:
    sys.argv = [OPENRLHF_MAIN, *argv]
    runpy.run_module(OPENRLHF_MAIN, run_name="__main__", alter_sys=True)


def _start_ray(on_cpu: bool, needs: dict[str, int], object_store_mb: int | None) -> None:
    import ray

    if ray.is_initialized():
        return
    env = {
        # OpenRLHF's own defaults (train() sets them only when it starts Ray itself).
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
    }
    runtime_env: dict = {"env_vars": env}
    kwargs: dict = {"include_dashboard": False}
    if on_cpu:
        if importlib.util.find_spec("flash_attn") is None:
            sys.path.insert(0, str(SHIM_DIR))
            env["PYTHONPATH"] = os.pathsep.join([str(SHIM_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        runtime_env["worker_process_setup_hook"] = "integrations.openrlhf.cpu_runtime.install"
        # Logical slots for OpenRLHF's one-GPU-per-process actors; nothing uses a real GPU.
        kwargs.update(num_cpus=needs["cpus"], num_gpus=needs["gpus"])
    if object_store_mb:
        kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
    ray.init(runtime_env=runtime_env, **kwargs)


def _print_summary(engines: list) -> None:
    import ray

    if not engines:
        return
    stats = ray.get([e.get_spec_stats.remote() for e in engines])
    steps = sorted((s for st in stats for s in st["steps"]), key=lambda s: (s["policy_version"], s["engine_index"]))
    print("[specrl] rollout steps (engine, policy version, samples, draft hit, full reuse, mean accepted, decoded tokens):")
    for s in steps:
        print(
            f"[specrl]   engine {s['engine_index']} v{s['policy_version']}: {s['num_samples']} samples, "
            f"draft_hit={s['draft_hit_ratio']:.3f} full_reuse={s['full_reuse_ratio']:.3f} "
            f"mean_accepted={s['mean_accepted_len']:.1f} decoded={s['num_tokens_decoded']} step_s={s['total_s']:.3f}"
        )
    for st in stats:
        print(f"[specrl] engine {st['engine_index']}: {st['num_remote_store_calls']} draft-store calls to other engines")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        backend, settings, object_store_mb, rest = split_argv(argv)
        if backend == "vllm":
            _run_openrlhf(rest)
            return
        import torch

        on_cpu = not torch.cuda.is_available()
        needs = check_combination(rest, settings, on_cpu=on_cpu)
    except SpecArgError as exc:
        raise SystemExit(f"integrations.openrlhf.train_ppo_ray: error: {exc}") from None
    _start_ray(on_cpu, needs, object_store_mb)
    import openrlhf.trainer.ray as openrlhf_ray

    from integrations.openrlhf.engine_factory import SpecEngineFactory

    factory = SpecEngineFactory(settings)
    openrlhf_ray.create_vllm_engines = factory  # the documented swap: train() calls this name
    _run_openrlhf(rest)
    _print_summary(factory.engines)


if __name__ == "__main__":
    main()
