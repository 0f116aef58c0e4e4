"""Plain-text tables of a StatsReport: per-step reuse, the accepted-length distribution, the store.

Definitions (see step_stats.StepStats): full reuse = samples returned whole from their draft /
samples; drafted = samples offered a draft / samples; token reuse = reused / (decoded + reused);
KV hit = prefix tokens SGLang served from the verify pass's KV / tokens expected ("-": no
continuation followed a verify in that step).
"""

from __future__ import annotations

import math
from typing import Any

from specrl_sglang.inspect.sources import StatsReport, series_names, total_histogram

_COLUMNS = (  # header, width, row -> text
    ("step", 5, lambda r: f"{r['step']}"),
    ("ver", 4, lambda r: f"{r.get('policy_version', '-')}"),
    ("samples", 7, lambda r: f"{r['num_samples']}"),
    ("full", 5, lambda r: f"{r['full_reuse_ratio']:.2f}"),
    ("drafted", 7, lambda r: f"{r['draft_hit_ratio']:.2f}"),
    ("acc_len", 7, lambda r: f"{r['mean_accepted_len']:.1f}"),
    ("decoded", 8, lambda r: f"{r['num_tokens_decoded']}"),
    ("reused", 8, lambda r: f"{r['num_tokens_reused']}"),
    ("reuse%", 6, lambda r: _pct(r["num_tokens_reused"], r["num_tokens_decoded"] + r["num_tokens_reused"])),
    ("kv_hit", 6, lambda r: _ratio(r.get("kv_hit_ratio"))),
    ("verify_s", 8, lambda r: f"{r.get('verify_s', 0.0):.3f}"),
    ("total_s", 8, lambda r: f"{r['total_s'] if 'total_s' in r else r.get('rollout_s', 0.0):.3f}"),
)


def _ratio(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "-"


def step_table(rows: list[dict[str, Any]]) -> str:
    header = " ".join(h.rjust(w) for h, w, _ in _COLUMNS)
    lines = [header, "-" * len(header)]
    lines += [" ".join(fmt(r).rjust(w) for _, w, fmt in _COLUMNS) for r in rows]
    return "\n".join(lines)


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    decoded = sum(r["num_tokens_decoded"] for r in rows)
    reused = sum(r["num_tokens_reused"] for r in rows)
    samples = sum(r["num_samples"] for r in rows)
    cached = sum(r.get("kv_cached_tokens", 0) for r in rows)
    expected = sum(r.get("kv_expected_tokens", 0) for r in rows)
    return {
        "steps": len(rows),
        "samples": samples,
        "full_reuse_ratio": sum(r["num_fully_reused"] for r in rows) / samples if samples else 0.0,
        "tokens_decoded": decoded,
        "tokens_reused": reused,
        "token_reuse_share": reused / (decoded + reused) if decoded + reused else 0.0,
        "kv_hit_ratio": cached / expected if expected else None,
        "rollout_s": sum(r.get("total_s", r.get("rollout_s", 0.0)) for r in rows),
    }


def histogram_table(rows: list[dict[str, Any]], width: int = 40) -> str:
    labels, counts = total_histogram(rows)
    peak = max(counts) or 1
    lines = ["accepted prefix length (samples with a draft, all steps)"]
    for label, count in zip(labels, counts):
        lines.append(f"  {label:>10} {count:>8} {'#' * round(width * count / peak)}")
    return "\n".join(lines)


def store_table(store: dict[str, Any]) -> str:
    budget = store.get("max_tokens")
    return "\n".join([
        "trajectory store",
        f"  prompts {store['num_prompts']}  samples {store['num_samples']}  tokens {store['total_tokens']}"
        f" / {'unbounded' if budget is None else budget}",
        f"  evicted prompts {store['num_evicted_prompts']}  evicted tokens {store['num_evicted_tokens']}",
        f"  slot hit rate {store.get('slot_hit_rate', 0.0):.2f}  drafts returned {store['num_drafts_returned']}"
        f"  lookups {store['num_lookups']}",
    ])


def format_report(report: StatsReport) -> str:
    """The whole text report: per-series step table, totals and histogram, then the store."""
    parts = [f"source: {report.source}"]
    for series in series_names(report):
        rows = [r for r in report.rows if r["series"] == series]
        t = totals(rows)
        parts += [
            f"\n== {series}: {t['steps']} steps ==",
            step_table(rows),
            f"totals: samples {t['samples']}  full reuse {t['full_reuse_ratio']:.2f}  decoded {t['tokens_decoded']}"
            f"  reused {t['tokens_reused']} ({100 * t['token_reuse_share']:.0f}%)  KV hit {_ratio(t['kv_hit_ratio'])}"
            f"  rollout {t['rollout_s']:.2f}s",
            histogram_table(rows),
        ]
    if not report.rows and report.contents is None:
        parts.append("no rollout steps yet")
    if report.contents is not None:
        c = report.contents
        parts.append(
            f"\nsnapshot contents: {c['num_prompts']} prompts, {c['num_samples']} samples, response length mean "
            f"{c['response_len_mean']:.1f} / p50 {c['response_len_p50']:.0f} / max {c['response_len_max']}, "
            f"{c['sample_tokens']} sample tokens held in {c['total_tokens']} tree tokens "
            f"(prefix sharing x{c['prefix_sharing']:.2f})"
        )
    if report.store is not None:
        parts.append("\n" + store_table(report.store))
    return "\n".join(parts)
