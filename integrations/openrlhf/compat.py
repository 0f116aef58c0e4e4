"""Which OpenRLHF runs the sglang-spec backend serves, decided before Ray or any model starts.

`plan_run` parses the run's OpenRLHF flags with OpenRLHF's own parser (openrlhf_flags: its names,
types, defaults; an unknown flag exits there, as OpenRLHF would), raises `SpecArgError` with the
reason and the fix for each combination our engines cannot serve, and returns a `RunPlan`: what
the launcher and the engines need to know about the run. `--vllm.enable_sleep` is left to
OpenRLHF, which turns it off itself unless `--train.colocate_all` is set (and colocation is GPU
only, refused here on CPU). With `--spec.sglang_urls` one rollout actor drives every server
(`--vllm.num_engines 1`: OpenRLHF sizes its weight-sync group from that count) and nothing is
colocated with the trainer (the servers are not Ray's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from integrations.openrlhf.openrlhf_flags import parse_openrlhf_args
from integrations.openrlhf.sampling_translation import UnsupportedSamplingError, check_processed_logprobs
from integrations.openrlhf.spec_args import SpecArgError, SpecSettings
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import check_mode_sampling

VLLM_ON_CPU = (
    "--rollout.backend vllm runs stock OpenRLHF with vLLM engines, which need a GPU (the vllm installed here "
    "has no CPU build). On CPU, the no-reuse baseline is --rollout.backend sglang-spec --spec.mode vanilla "
    "(the same SGLang engines, every sample decoded from scratch)"
)


@dataclass(frozen=True)
class RunPlan:
    """The facts about an OpenRLHF run that the launcher and the engines act on."""

    num_engines: int
    ray_gpus: int  # logical GPU slots OpenRLHF's model actors ask for (CPU runs: nothing uses a GPU)
    ray_cpus: int
    dynamic_filtering_range: tuple[float, float] | None
    async_enable: bool
    partial_rollout: bool
    pretrain: str  # --actor.model_name_or_path (the initial policy)


def plan_run(argv: Sequence[str], settings: SpecSettings, *, on_cpu: bool) -> RunPlan:
    """Raise SpecArgError for unsupported combinations; see module docstring."""
    a = parse_openrlhf_args(list(argv))
    errors = []
    if not a["vllm.num_engines"] or a["vllm.num_engines"] < 1:
        errors.append("--rollout.backend sglang-spec needs --vllm.num_engines >= 1 (the engines it replaces)")
    if a["vllm.tensor_parallel_size"] != 1:
        errors.append("--vllm.tensor_parallel_size must be 1 (one SGLang engine per GPU; scale with --vllm.num_engines)")
    if a["data.max_images_per_prompt"]:
        errors.append("--data.max_images_per_prompt: the backend serves text-only models")
    if a["ds.lora.rank"]:
        errors.append("--ds.lora.rank > 0: LoRA weight sync is not supported (engines load full parameters)")
    sampling = SamplingConfig(temperature=a["rollout.temperature"], top_p=a["rollout.top_p"])
    if a["algo.advantage.is_correction_level"] != "off":
        try:
            check_processed_logprobs(sampling)
        except UnsupportedSamplingError as exc:
            errors.append(str(exc))
    if settings.mode == "exact":
        try:
            check_mode_sampling("exact", sampling)
        except ValueError as exc:
            errors.append(f"--spec.mode exact: {exc}")
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
    if settings.sglang_urls:
        if a["vllm.num_engines"] != 1:
            errors.append(f"--spec.sglang_urls needs --vllm.num_engines 1 (got {a['vllm.num_engines']}): one rollout "
                          f"actor drives all {len(settings.sglang_urls)} SGLang servers and routes each prompt to one")
        if a["train.colocate_all"]:
            errors.append("--train.colocate_all does not apply with --spec.sglang_urls: the SGLang servers run outside "
                          "Ray, on GPUs the trainer does not share")
    if errors:
        raise SpecArgError("; ".join(errors))
    gpus = a["actor.num_nodes"] * a["actor.num_gpus_per_node"]
    if a["algo.kl.init_coef"] > 0:
        gpus += a["ref.num_nodes"] * a["ref.num_gpus_per_node"]
    if a["algo.advantage.estimator"] == "gae":
        gpus += a["critic.num_nodes"] * a["critic.num_gpus_per_node"]
    if not (a["reward.remote_url"] or a["train.agent_func_path"]):
        gpus += a["reward.num_nodes"] * a["reward.num_gpus_per_node"]
    filtering = tuple(a["algo.dynamic_filtering_range"]) if a["algo.dynamic_filtering_enable"] else None
    return RunPlan(
        num_engines=a["vllm.num_engines"],
        ray_gpus=gpus,
        ray_cpus=gpus + a["vllm.num_engines"] + 2,
        dynamic_filtering_range=filtering,  # type: ignore[arg-type]
        async_enable=a["train.async_enable"],
        partial_rollout=a["train.partial_rollout_enable"],
        pretrain=a["actor.model_name_or_path"],
    )
