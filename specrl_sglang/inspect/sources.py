"""Load reuse statistics into one shape, whatever they were recorded by.

Sources:
- a running server (`GET /stats`): its step rows and the store's current state;
- the server's JSONL report (`serve --report`): one row per step, each with the store's state;
- the demo's report.json: one row list per arm (`vanilla`, `spec`); no store state;
- a trajectory-store snapshot: no steps, a summary of what the store holds.
Rows keep StepStats' field names (step_stats.py); every row gets `series` (the arm, or "server")
and `histogram_edges` (the default edges if the source dropped them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.step_stats import HISTOGRAM_EDGES


class StatsReport(NamedTuple):
    source: str  # where it came from, for titles
    rows: list[dict[str, Any]]  # step rows, ordered by (series, step)
    store: dict[str, Any] | None  # the store's latest state (StoreStats fields), if known
    contents: dict[str, Any] | None  # snapshot only: what the store holds


def _normalize(rows: list[dict[str, Any]], series: str) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        row.setdefault("step", i)
        row.setdefault("histogram_edges", list(HISTOGRAM_EDGES))
        row["series"] = series
        out.append(row)
    return out


def from_url(url: str, since: int = 0, timeout: float = 30.0) -> StatsReport:
    from specrl_sglang.server.client import RolloutClient

    with RolloutClient(url, timeout=timeout) as client:
        stats = client.stats(since=since)
    return StatsReport(url, _normalize(stats["steps"], "server"), stats["store"], None)


def from_report(path: str | Path) -> StatsReport:
    """A server JSONL report, or the demo's report.json (detected by content)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"arms"' in stripped[:100_000]:
        try:
            demo = json.loads(text)
        except json.JSONDecodeError:
            demo = None
        if isinstance(demo, dict) and isinstance(demo.get("arms"), dict):
            rows = [r for arm, data in demo["arms"].items() for r in _normalize(data.get("steps", []), arm)]
            return StatsReport(str(path), rows, None, None)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(text.splitlines()):  # a writer killed mid-line: keep what is complete
                break
            raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from None
    rows = _normalize(rows, "server")
    store = next((r["store"] for r in reversed(rows) if isinstance(r.get("store"), dict)), None)
    return StatsReport(str(path), rows, store, None)


def from_snapshot(path: str | Path) -> StatsReport:
    """Summarize a trajectory-store snapshot: sizes, counters and response lengths."""
    import dataclasses

    from radix_cache.snapshot import load_snapshot

    store = load_snapshot(path)
    stats = store.stats()
    lengths, per_prompt = [], []
    for prompt_id in store.prompt_ids():
        samples = store.samples(prompt_id)
        per_prompt.append(len(samples))
        lengths.extend(len(s.token_ids) for s in samples)
    held = int(sum(lengths))
    contents = {
        "num_prompts": stats.num_prompts,
        "num_samples": stats.num_samples,
        "total_tokens": stats.total_tokens,
        "sample_tokens": held,
        "prefix_sharing": held / stats.total_tokens if stats.total_tokens else 0.0,
        "max_tokens": store.max_tokens,
        "response_len_mean": float(np.mean(lengths)) if lengths else 0.0,
        "response_len_p50": float(np.percentile(lengths, 50)) if lengths else 0.0,
        "response_len_max": int(max(lengths)) if lengths else 0,
        "samples_per_prompt_mean": float(np.mean(per_prompt)) if per_prompt else 0.0,
    }
    store_dict = {**dataclasses.asdict(stats), "slot_hit_rate": stats.slot_hit_rate, "max_tokens": store.max_tokens}
    return StatsReport(str(path), [], store_dict, contents)


def series_names(report: StatsReport) -> list[str]:
    return list(dict.fromkeys(r["series"] for r in report.rows))


def bucket_labels(edges: list[int]) -> list[str]:
    """Labels of the accepted-length buckets: `<= edge` per edge, then `> last`."""
    labels, low = [], 0
    for edge in edges:
        labels.append(str(edge) if low >= edge else f"{low}-{edge}")
        low = edge + 1
    return labels + [f">{edges[-1]}"]


def total_histogram(rows: list[dict[str, Any]]) -> tuple[list[str], list[int]]:
    """Accepted-length histogram summed over `rows` (which must share their bucket edges)."""
    if not rows:
        return bucket_labels(list(HISTOGRAM_EDGES)), [0] * (len(HISTOGRAM_EDGES) + 1)
    edges = rows[0]["histogram_edges"]
    counts = np.zeros(len(edges) + 1, dtype=np.int64)
    for row in rows:
        if row["histogram_edges"] != edges:
            raise ValueError("rows use different accepted-length bucket edges")
        counts += np.asarray(row["accepted_len_histogram"], dtype=np.int64)
    return bucket_labels(edges), counts.tolist()
