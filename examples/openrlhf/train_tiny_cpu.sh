#!/usr/bin/env bash
# A few real OpenRLHF GRPO steps on CPU with the SGLang speculative rollout backend.
#
#   bash examples/openrlhf/train_tiny_cpu.sh [OUT_DIR] [extra OpenRLHF / --spec.* flags ...]
#   bash examples/openrlhf/train_tiny_cpu.sh --help      # this text, then the launcher's flags
#
# Tiny local policy (random Qwen2, ~0.2M params) on a toy reversal task, NUM_PROMPTS (default 8)
# prompts x 4 samples, two passes over the prompts (--train.num_episodes 2): pass 1 rolls out from
# scratch, pass 2 starts from pass 1's responses as drafts. Real Ray, real DeepSpeed (CPU
# accelerator, gloo), OpenRLHF's own trainer, a real SGLang engine. Extra flags are appended, so
# they override the defaults below (e.g. --spec.mode vanilla for the no-reuse baseline,
# --train.async_enable --train.partial_rollout_enable, --algo.dynamic_filtering_enable,
# --eval.dataset OUT_DIR/task/prompts.jsonl, --ckpt.save_steps 2 / --ckpt.load_enable,
# --spec.sglang_urls URL,URL: roll out through SGLang servers serving OUT_DIR/task/model).
# With RAY_ADDRESS set it joins that Ray cluster instead of starting one.
# Per-step draft reuse lands in OpenRLHF's log line ("Global step N: {... 'spec_full_reuse': ...}"),
# in TensorBoard under OUT_DIR/tb (train/spec_*), in OUT_DIR/spec_steps.jsonl (one line per
# rollout step, i.e. per prompt group), and in the summary printed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo
  exec "$py" -m integrations.openrlhf.train_ppo_ray --help
fi
out="${1:-${TMPDIR:-/tmp}/specrl_openrlhf_tiny}"
shift || true
cd "$root"
"$py" examples/openrlhf/make_tiny_task.py "$out/task" --num-prompts "${NUM_PROMPTS:-8}" >/dev/null
rm -f "$out/spec_steps.jsonl"
engine=(--spec.max_total_tokens 8192)  # the Ray-spawned engine's KV pool; external servers have their own
for arg in "$@"; do if [[ "$arg" == --spec.sglang_urls* ]]; then engine=(); fi; done

exec "$py" -m integrations.openrlhf.train_ppo_ray \
  --rollout.backend sglang-spec \
  --spec.mode spec-rl --spec.lenience 1.6487 \
  "${engine[@]}" \
  --spec.stats_jsonl "$out/spec_steps.jsonl" \
  --spec.ray_object_store_mb 200 \
  --actor.model_name_or_path "$out/task/model" \
  --actor.num_nodes 1 --actor.num_gpus_per_node 1 \
  --vllm.num_engines 1 --vllm.sync_backend gloo \
  --reward.remote_url "$out/task/reward.py" \
  --data.prompt_dataset "$out/task/prompts.jsonl" --data.input_key input --data.label_key label \
  --algo.advantage.estimator group_norm --algo.kl.init_coef 0 \
  --rollout.n_samples_per_prompt 4 --rollout.batch_size 4 --rollout.micro_batch_size 4 \
  --train.batch_size 16 --train.micro_batch_size 8 --train.max_epochs 1 --train.num_episodes 2 \
  --rollout.max_new_tokens 16 --data.max_len 64 --rollout.temperature 1.0 \
  --ds.zero_stage 2 --ds.param_dtype bf16 --ds.attn_implementation eager \
  --actor.adam.lr 5e-4 --actor.lr_warmup_ratio 0 \
  --ckpt.output_dir "$out/ckpt" --ckpt.path "$out/ckpt/ds" \
  --logger.tensorboard_dir "$out/tb" --logger.wandb.run_name tiny_cpu \
  "$@"
