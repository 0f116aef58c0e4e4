"""Write a tiny, fully local RL task for the CPU example: a tiny Qwen2 policy, prompts, a reward file.

    python examples/openrlhf/make_tiny_task.py OUT_DIR [--num-prompts 8]

Creates OUT_DIR/model (specrl_sglang.tiny_model: random seeded weights, BPE tokenizer trained on
the task's own text; no model hub), OUT_DIR/prompts.jsonl ({"input": "rev: a b c =", "label":
"c b a"}: reverse the letters) and OUT_DIR/reward.py, OpenRLHF's `--reward.remote_url` file
interface: `reward_func(queries, prompts, labels)` -> {"rewards", "scores", "extra_logs"}. The reward
(0..1) mixes the share of the label's letters, in order, that start the response with the share
of task characters in it, so a random policy already earns a varying reward and GRPO has signal. Idempotent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LETTERS = "abcdefgh"

REWARD_PY = '''"""Reward of the tiny reversal task (written by examples/openrlhf/make_tiny_task.py)."""
import torch


def _score(query: str, prompt: str, label: str) -> float:
    """0.5 * share of the label's letters, in order, that start the response
    + 0.5 * share of the response's characters that are task characters (a-h, space)."""
    response = query[len(prompt):] if query.startswith(prompt) else query
    response = response.replace("<|endoftext|>", "")
    want, got = label.split(), response.split()
    hits = 0
    for w, g in zip(want, got):
        if w != g:
            break
        hits += 1
    on_task = sum(c in "abcdefgh " for c in response) / max(1, len(response))
    return 0.5 * hits / max(1, len(want)) + 0.5 * on_task


def reward_func(queries, prompts, labels):
    rewards = torch.tensor([_score(q, p, l) for q, p, l in zip(queries, prompts, labels)], dtype=torch.float)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"task_reward": rewards}}
'''


def task_rows(num_prompts: int) -> list[dict[str, str]]:
    rows = []
    for i in range(num_prompts):
        letters = [LETTERS[(i + j) % len(LETTERS)] for j in range(2 + i % 4 + (i // 8) % 4)]  # all distinct
        rows.append({"input": f"rev: {' '.join(letters)} =", "label": " ".join(reversed(letters))})
    return rows


def corpus() -> list[str]:
    text = []
    for i in range(400):
        letters = [LETTERS[(i + j) % len(LETTERS)] for j in range(i % 7 + 1)]
        text.append(f"rev: {' '.join(letters)} = {' '.join(reversed(letters))}")
    return text


def make_task(out_dir: str | Path, num_prompts: int = 8) -> Path:
    from specrl_sglang.tiny_model import TinyModelSpec, build_tiny_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, num_layers=2, max_position_embeddings=512)
    build_tiny_model(out / "model", corpus(), spec)
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task_rows(num_prompts)))
    (out / "reward.py").write_text(REWARD_PY)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-prompts", type=int, default=8)
    args = parser.parse_args()
    print(make_task(args.out_dir, args.num_prompts))
