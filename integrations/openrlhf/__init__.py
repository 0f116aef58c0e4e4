"""OpenRLHF adapter: SGLang speculative-rollout engines behind OpenRLHF's vLLM actor contract.

Entry point: `python -m integrations.openrlhf.train_ppo_ray <OpenRLHF flags> --rollout.backend sglang-spec`.
Launch: spec_args (our flags) + openrlhf_flags (OpenRLHF's parser, read without importing it) ->
compat (refusals, RunPlan) -> ray_start (start or join Ray) -> train_ppo_ray (runs OpenRLHF).
Workers: worker_setup (Ray setup hook) -> cpu_runtime + _flash_attn_shim (CPU only), eval_routing
(eval rollouts to the engines' plain path), checkpoint_hooks (drafts saved/restored with OpenRLHF
checkpoints; layout in draft_snapshots). Engines: engine_factory (create_vllm_engines drop-in) ->
engine_actor (thin adapter over one specrl_sglang.runtime.RolloutRuntime; actor_runtime builds it
over an in-process engine, or over external SGLang servers with --spec.sglang_urls) with prompt_groups
(per-sample calls -> one concurrent step per prompt), fresh_draws (when a group is not re-drafted
from itself), sharded_store (the DraftStore over all engines), weight_stream + weight_sync
(OpenRLHF's weight broadcast into the runtime's update session, partial rollouts), step_log,
sampling_translation, vllm_outputs. Nothing heavy is imported here.
"""
