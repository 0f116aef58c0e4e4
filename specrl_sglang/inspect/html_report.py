"""A self-contained HTML report: the PNG embedded as base64, the step table, the store summary."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from specrl_sglang.inspect.sources import StatsReport, series_names
from specrl_sglang.inspect.table import format_report, totals

_FIELDS = ("step", "policy_version", "num_samples", "full_reuse_ratio", "draft_hit_ratio", "mean_accepted_len",
           "num_tokens_decoded", "num_tokens_reused", "kv_hit_ratio", "verify_s", "total_s")
_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}pre{background:#f6f6f6;padding:1em}")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def write_html(report: StatsReport, out: str | Path, png: str | Path | None) -> Path:
    """Write the report to `out`; embeds `png` (if given) so the file stands alone."""
    out = Path(out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>SPEC-RL reuse report</title>"
             f"<style>{_STYLE}</style></head><body><h1>SPEC-RL reuse report</h1>"
             f"<p>source: {html.escape(report.source)}</p>"]
    if png is not None:
        data = base64.b64encode(Path(png).read_bytes()).decode()
        parts.append(f"<img alt='reuse plot' src='data:image/png;base64,{data}' style='max-width:100%'>")
    for series in series_names(report):
        rows = [r for r in report.rows if r["series"] == series]
        t = totals(rows)
        parts.append(f"<h2>{html.escape(series)}</h2><p>" + ", ".join(f"{k}: {_cell(v)}" for k, v in t.items()) + "</p>")
        parts.append("<table><tr>" + "".join(f"<th>{f}</th>" for f in _FIELDS) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{_cell(r.get(f))}</td>" for f in _FIELDS) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append(f"<h2>Text report</h2><pre>{html.escape(format_report(report))}</pre></body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
