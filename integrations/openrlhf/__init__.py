"""OpenRLHF adapter: SGLang + SPEC-RL rollout engines behind OpenRLHF's vLLM actor contract.

Entry point: `python -m integrations.openrlhf.train_ppo_ray <OpenRLHF flags> --rollout.backend sglang-spec`.
Files: spec_args (our flags) -> compat (flag combinations) -> train_ppo_ray (launcher) ->
engine_factory (create_vllm_engines drop-in) -> engine_actor (the Ray actor) -> batcher (per-sample
calls -> SpecRollout steps), sampling_translation (vLLM params -> SamplingConfig), vllm_outputs
(vLLM-shaped results), placement (prompt keys, sharded draft store), weight_sync (broadcast
receive), cpu_runtime + _flash_attn_shim (CPU-only runs). Nothing heavy is imported here.
"""
