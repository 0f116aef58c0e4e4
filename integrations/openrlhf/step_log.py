"""What an engine actor reports about its rollout steps: per-sample metrics for OpenRLHF's logs,
one record per step (history, `--spec.stats_jsonl`), and the launcher's end-of-run summary.

Per-sample metrics go into each response's `extra_logs`; OpenRLHF averages them over a training
step's samples and logs `train/<name>` (console, wandb, TensorBoard). A step record is the step's
`StepStats` plus what the adapter decided: `purpose` ("train" | "eval"), `prompt_id`,
`fresh_reason` (see fresh_draws), `temperature`, `engine_index`, `end_time` (time.time() when it
ended), and per sample `draft_lens` / `accepted_lens` / `response_lens`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

METRIC_NAMES = (
    "spec_full_reuse",  # 1: the whole response is a verified draft (no decoding)
    "spec_draft_hit",  # 1: a draft was offered
    "spec_accepted_len",  # draft tokens kept
    "spec_decoded_tokens",  # tokens the engine decoded
    "spec_fresh_draw",  # 1: drawn fresh (exact or vanilla) instead of re-drafted from itself
    "spec_rounds",  # rounds of the step (> 1: interrupted by a weight update and resumed)
    "spec_policy_version",  # engine weight version that served the sample
    "spec_step_verify_s",  # the serving step's verify / continue / total wall time
    "spec_step_continue_s",
    "spec_step_total_s",
)

# How a multi-turn sample's metrics combine over its turns: token counts add up, full reuse needs
# every turn, the rest keep the largest value. A single-turn sample has exactly one turn.
_TURN_MERGE = {"spec_accepted_len": sum, "spec_decoded_tokens": sum, "spec_full_reuse": min}


def sample_metrics(sample: Any, stats: Any, fresh: bool) -> dict[str, float]:
    return {
        "spec_full_reuse": float(sample.fully_reused),
        "spec_draft_hit": float(sample.draft_len > 0),
        "spec_accepted_len": float(sample.accepted_len),
        "spec_decoded_tokens": float(sample.num_decoded),
        "spec_fresh_draw": float(fresh),
        "spec_rounds": float(stats.num_rounds),
        "spec_policy_version": float(stats.policy_version),
        "spec_step_verify_s": float(stats.verify_s),
        "spec_step_continue_s": float(stats.continue_s),
        "spec_step_total_s": float(stats.total_s),
    }


def merge_turn_metrics(total: dict[str, float], turn: dict[str, float]) -> None:
    for name, value in turn.items():
        total[name] = value if name not in total else _TURN_MERGE.get(name, max)((total[name], value))


HISTORY_LEN = 20_000  # records kept in memory (one per prompt group and step); the JSONL keeps all


class StepLog:
    """Records of one engine's steps, in completion order (appended on the actor's loop); the last
    `history_len` stay in memory for `get_spec_stats` and the end-of-run summary."""

    def __init__(self, engine_index: int, jsonl_path: str | None = None, history_len: int = HISTORY_LEN) -> None:
        self.engine_index, self.jsonl_path = engine_index, jsonl_path
        self.records: deque[dict[str, Any]] = deque(maxlen=history_len)

    def add(self, result: Any, *, purpose: str, prompt_id: str, fresh_reason: str | None, temperature: float) -> dict:
        """Record one step (`result`: its RolloutResult)."""
        record = {"engine_index": self.engine_index, "purpose": purpose, "prompt_id": prompt_id,
                  "fresh_reason": fresh_reason, "temperature": temperature, "end_time": time.time(),
                  "draft_lens": [s.draft_len for s in result.samples],
                  "accepted_lens": [s.accepted_len for s in result.samples],
                  "response_lens": [s.response_len for s in result.samples], **result.stats.to_dict()}
        self.records.append(record)
        if self.jsonl_path:
            with open(self.jsonl_path, "a") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
        return record


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training steps folded per (engine, policy version): samples, draft hit, full reuse, mean
    accepted length (over samples with a draft), decoded tokens, fresh draws, interrupted steps."""
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for r in records:
        if r["purpose"] != "train":
            continue
        row = rows.setdefault((r["engine_index"], r["policy_version"]), {
            "engine_index": r["engine_index"], "policy_version": r["policy_version"], "num_steps": 0,
            "num_samples": 0, "num_with_draft": 0, "num_fully_reused": 0, "accepted": 0.0,
            "num_tokens_decoded": 0, "num_fresh": 0, "num_interrupted": 0, "step_s_max": 0.0})
        row["num_steps"] += 1
        row["num_samples"] += r["num_samples"]
        row["num_with_draft"] += r["num_with_draft"]
        row["num_fully_reused"] += r["num_fully_reused"]
        row["accepted"] += r["mean_accepted_len"] * r["num_with_draft"]
        row["num_tokens_decoded"] += r["num_tokens_decoded"]
        row["num_fresh"] += r["num_samples"] if r["fresh_reason"] else 0
        row["num_interrupted"] += r["num_rounds"] > 1
        row["step_s_max"] = max(row["step_s_max"], r["total_s"])
    out = []
    for row in sorted(rows.values(), key=lambda x: (x["policy_version"], x["engine_index"])):
        n, d = row["num_samples"], row["num_with_draft"]
        out.append({**{k: v for k, v in row.items() if k != "accepted"},
                    "draft_hit_ratio": d / n if n else 0.0, "full_reuse_ratio": row["num_fully_reused"] / n if n else 0.0,
                    "mean_accepted_len": row["accepted"] / d if d else 0.0})
    return out


def summary_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["[specrl] training rollouts per engine and policy version:"]
    for s in summarize(records):
        lines.append(
            f"[specrl]   engine {s['engine_index']} v{s['policy_version']}: {s['num_samples']} samples in "
            f"{s['num_steps']} groups, draft_hit={s['draft_hit_ratio']:.3f} full_reuse={s['full_reuse_ratio']:.3f} "
            f"mean_accepted={s['mean_accepted_len']:.1f} decoded={s['num_tokens_decoded']} fresh={s['num_fresh']} "
            f"interrupted={s['num_interrupted']} slowest_group_s={s['step_s_max']:.3f}")
    num_eval = sum(r["purpose"] == "eval" for r in records)
    lines.append(f"[specrl] evaluation: {num_eval} plain (vanilla) groups, never recorded as drafts")
    return lines
