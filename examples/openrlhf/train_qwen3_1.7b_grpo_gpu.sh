#!/usr/bin/env bash
# GRPO on Qwen3-1.7B with OpenRLHF + the SGLang speculative rollout backend (SPEC-RL), 8 GPUs, one node.
#
#   DATA=/data/deepmath6k.jsonl MODEL=/models/Qwen3-1.7B OUT=/ckpt/qwen3_1.7b_specrl \
#     bash examples/openrlhf/train_qwen3_1.7b_grpo_gpu.sh [extra OpenRLHF / --spec.* flags]
#
# The paper's GRPO settings (SPEC-RL, arXiv 2509.23232): n = 8 samples per prompt, temperature 1.0,
# up to 4k response tokens, lenience e^0.5 = 1.6487. DATA is a local JSONL with {"prompt": ..., "answer": ...}
# (e.g. DeepMath-6K); the reward is OpenRLHF's own boxed-answer grader (math_reward.py).
# Layout: 4 GPUs train the actor (DeepSpeed ZeRO-2), 4 GPUs run one SGLang engine each; weights are
# broadcast over NCCL after every step (OpenRLHF's protocol), which also flushes stale KV and bumps
# the engines' policy version. Drafts are sharded over the 4 engines (--spec.placement shared).
# Compare against the same run with `--spec.mode vanilla` (same engines, no drafts) or against stock
# OpenRLHF (`--rollout.backend vllm`, i.e. drop the --spec.* flags): the launcher then runs OpenRLHF unchanged.
# Needs: the GPU stack (pip install -e '.[gpu,openrlhf]' plus flash-attn), not run in CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${DATA:?set DATA to a local JSONL with prompt/answer fields}"
MODEL="${MODEL:-Qwen/Qwen3-1.7B}"
OUT="${OUT:-$root/ckpt/qwen3_1.7b_grpo_specrl}"
mkdir -p "$OUT"
cd "$root"

exec python -m integrations.openrlhf.train_ppo_ray \
  --rollout.backend sglang-spec \
  --spec.mode spec-rl --spec.lenience 1.6487 \
  --spec.stats_jsonl "$OUT/spec_steps.jsonl" \
  --actor.model_name_or_path "$MODEL" \
  --actor.num_nodes 1 --actor.num_gpus_per_node 4 \
  --vllm.num_engines 4 --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.85 \
  --reward.remote_url "$root/examples/openrlhf/math_reward.py" \
  --data.prompt_dataset "$DATA" --data.input_key prompt --data.label_key answer --data.apply_chat_template \
  --algo.advantage.estimator group_norm --algo.kl.init_coef 0 \
  --rollout.n_samples_per_prompt 8 --rollout.batch_size 128 --rollout.micro_batch_size 8 \
  --rollout.max_new_tokens 4096 --data.max_len 5120 --rollout.temperature 1.0 --rollout.top_p 1.0 \
  --train.batch_size 256 --train.micro_batch_size 4 --train.max_epochs 1 --train.num_episodes 10 \
  --actor.adam.lr 1e-6 --actor.lr_warmup_ratio 0 \
  --ds.zero_stage 2 --ds.param_dtype bf16 --ds.attn_implementation flash_attention_2 \
  --actor.gradient_checkpointing_enable \
  --ckpt.output_dir "$OUT" --ckpt.path "$OUT/ds_ckpt" --ckpt.save_steps 50 \
  --logger.tensorboard_dir "$OUT/tb" --logger.wandb.run_name qwen3_1.7b_grpo_specrl \
  "$@"
