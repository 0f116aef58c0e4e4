"""Which OpenRLHF flag combinations the sglang-spec backend serves, checked before anything starts.

`check_combination` reads the few OpenRLHF flags that matter (with OpenRLHF's own names, types and
defaults; OpenRLHF's parser still validates everything else later) and raises `SpecArgError` with
the reason and the fix for each unsupported combination. It returns the logical Ray resources the
run needs on a CPU-only machine (OpenRLHF's model actors each ask for one "GPU").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from integrations.openrlhf.sampling_translation import UnsupportedSamplingError, check_processed_logprobs
from integrations.openrlhf.spec_args import SpecArgError, SpecSettings
from specrl_sglang.sampling import SamplingConfig


def _openrlhf_subset() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)  # same defaults as openrlhf/cli/train_ppo_ray.py
    p.add_argument("--vllm.num_engines", type=int, default=None)
    p.add_argument("--vllm.tensor_parallel_size", type=int, default=1)
    p.add_argument("--vllm.sync_backend", default="nccl")
    p.add_argument("--vllm.sync_with_ray", action="store_true")
    p.add_argument("--vllm.enable_sleep", action="store_true")
    p.add_argument("--train.colocate_all", action="store_true")
    p.add_argument("--train.async_enable", action="store_true")
    p.add_argument("--data.max_images_per_prompt", type=int, default=0)
    p.add_argument("--ds.lora.rank", type=int, default=0)
    p.add_argument("--ds.attn_implementation", default="flash_attention_2")
    p.add_argument("--ds.packing_samples", action="store_true")
    p.add_argument("--ds.ring_attn_size", type=int, default=1)
    p.add_argument("--ds.tensor_parallel_size", type=int, default=1)
    p.add_argument("--train.dynamic_batch_enable", action="store_true")
    p.add_argument("--rollout.temperature", type=float, default=1.0)
    p.add_argument("--rollout.top_p", type=float, default=1.0)
    p.add_argument("--algo.advantage.is_correction_level", default="off")
    p.add_argument("--algo.advantage.estimator", default="gae")
    p.add_argument("--algo.kl.init_coef", type=float, default=0.01)
    p.add_argument("--reward.remote_url", default=None)
    p.add_argument("--train.agent_func_path", default=None)
    for role in ("actor", "ref", "critic", "reward"):
        p.add_argument(f"--{role}.num_nodes", type=int, default=1)
        p.add_argument(f"--{role}.num_gpus_per_node", type=int, default=8)
    return p


def check_combination(argv: Sequence[str], settings: SpecSettings, *, on_cpu: bool) -> dict[str, int]:
    """Raise SpecArgError for unsupported combinations; return {"cpus": n, "gpus": n} for a CPU Ray."""
    a = vars(_openrlhf_subset().parse_known_args(list(argv))[0])
    errors = []
    if not a["vllm.num_engines"] or a["vllm.num_engines"] < 1:
        errors.append("--rollout.backend sglang-spec needs --vllm.num_engines >= 1 (the engines it replaces)")
    if a["vllm.tensor_parallel_size"] != 1:
        errors.append("--vllm.tensor_parallel_size must be 1 (one SGLang engine per GPU; scale with --vllm.num_engines)")
    if a["data.max_images_per_prompt"]:
        errors.append("--data.max_images_per_prompt: the backend serves text-only models")
    if a["ds.lora.rank"]:
        errors.append("--ds.lora.rank > 0: LoRA weight sync is not supported (engines load full parameters)")
    if a["vllm.enable_sleep"] and on_cpu:
        errors.append("--vllm.enable_sleep needs a GPU (SGLang's memory saver releases CUDA memory)")
    if a["algo.advantage.is_correction_level"] != "off":
        try:
            check_processed_logprobs(SamplingConfig(temperature=a["rollout.temperature"], top_p=a["rollout.top_p"]))
        except UnsupportedSamplingError as exc:
            errors.append(str(exc))
    if on_cpu:
        if a["train.colocate_all"]:
            errors.append("--train.colocate_all shares GPUs through CUDA IPC: GPU only")
        if a["vllm.sync_backend"] != "gloo" and not a["vllm.sync_with_ray"]:
            errors.append("no CUDA device: pass --vllm.sync_backend gloo (the weight broadcast runs over gloo on CPU)")
        if "flash_attention" in a["ds.attn_implementation"]:
            errors.append("no CUDA device: pass --ds.attn_implementation eager (or sdpa); flash attention is GPU only")
        if a["ds.packing_samples"] or a["train.dynamic_batch_enable"] or a["ds.ring_attn_size"] > 1:
            errors.append("--ds.packing_samples / --train.dynamic_batch_enable / --ds.ring_attn_size need flash attention: GPU only")
        if a["ds.tensor_parallel_size"] != 1:
            errors.append("--ds.tensor_parallel_size > 1 is GPU only")
    if errors:
        raise SpecArgError("; ".join(errors))
    gpus = a["actor.num_nodes"] * a["actor.num_gpus_per_node"]
    if a["algo.kl.init_coef"] > 0:
        gpus += a["ref.num_nodes"] * a["ref.num_gpus_per_node"]
    if a["algo.advantage.estimator"] == "gae":
        gpus += a["critic.num_nodes"] * a["critic.num_gpus_per_node"]
    if not (a["reward.remote_url"] or a["train.agent_func_path"]):
        gpus += a["reward.num_nodes"] * a["reward.num_gpus_per_node"]
    return {"gpus": gpus, "cpus": gpus + (a["vllm.num_engines"] or 0) + 2}
