"""One PNG with four panels: reuse ratios per step, the accepted-length histogram, decoded vs.
reused tokens per step, and the KV hit ratio per step; one colour per series (server, or demo arm).

`plot_report` returns what it drew (panel titles -> series labels) so tests and callers can check
the picture without reading pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from specrl_sglang.inspect.sources import StatsReport, series_names, total_histogram

PANELS = (
    "Reuse ratio per step",
    "Accepted prefix length (all steps)",
    "Tokens per step: decoded vs. reused",
    "KV hit ratio per step",
)


class PlotInfo(NamedTuple):
    path: Path
    panels: dict[str, list[str]]  # panel title -> legend labels, in drawing order


def plot_report(report: StatsReport, path: str | Path, dpi: int = 100) -> PlotInfo:
    """Draw `report` to `path` (PNG); raises ValueError if it has no step rows."""
    if not report.rows:
        raise ValueError("no rollout steps to plot (a snapshot has none: use --url or --report)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax_reuse, ax_hist, ax_tokens, ax_kv = axes.ravel()
    names = series_names(report)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    multi = len(names) > 1
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        rows = [r for r in report.rows if r["series"] == name]
        color, prefix = colors[k % len(colors)], f"{name}: " if multi else ""
        steps = np.array([r["step"] for r in rows])
        ax_reuse.plot(steps, [r["full_reuse_ratio"] for r in rows], "o-", ms=3, color=color, label=f"{prefix}full reuse")
        ax_reuse.plot(steps, [r["draft_hit_ratio"] for r in rows], "s--", ms=3, color=color, alpha=0.6, label=f"{prefix}drafted")
        share = [r["num_tokens_reused"] / max(r["num_tokens_reused"] + r["num_tokens_decoded"], 1) for r in rows]
        ax_reuse.plot(steps, share, "^:", ms=3, color=color, label=f"{prefix}token reuse")
        labels, counts = total_histogram(rows)
        x = np.arange(len(labels)) + (k - (len(names) - 1) / 2) * width
        ax_hist.bar(x, counts, width=width, color=color, label=f"{prefix}samples")
        ax_hist.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
        decoded = [r["num_tokens_decoded"] for r in rows]
        reused = [r["num_tokens_reused"] for r in rows]
        if multi:
            ax_tokens.plot(steps, decoded, "o-", ms=3, color=color, label=f"{prefix}decoded")
            ax_tokens.plot(steps, reused, "s--", ms=3, color=color, label=f"{prefix}reused")
        else:
            ax_tokens.bar(steps, decoded, color="tab:red", label="decoded")
            ax_tokens.bar(steps, reused, bottom=decoded, color="tab:green", label="reused")
        kv = [np.nan if r.get("kv_hit_ratio") is None else r["kv_hit_ratio"] for r in rows]
        ax_kv.plot(steps, kv, "o-", ms=3, color=color, label=f"{prefix}KV hit")
    ax_reuse.set(title=PANELS[0], xlabel="step", ylabel="share of samples / tokens", ylim=(-0.05, 1.05))
    ax_hist.set(title=PANELS[1], xlabel="accepted draft tokens", ylabel="samples with a draft")
    ax_tokens.set(title=PANELS[2], xlabel="step", ylabel="tokens")
    ax_kv.set(title=PANELS[3], xlabel="step", ylabel="cached / expected prefix tokens", ylim=(-0.05, 1.05))
    from matplotlib.ticker import MaxNLocator

    all_steps = [r["step"] for r in report.rows]
    for ax in (ax_reuse, ax_tokens, ax_kv):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(all_steps) - 0.6, max(all_steps) + 0.6)
    if all(r.get("kv_hit_ratio") is None for r in report.rows):
        ax_kv.text(0.5, 0.5, "no continuation followed a verify", ha="center", va="center", transform=ax_kv.transAxes)
    panels = {}
    for ax in (ax_reuse, ax_hist, ax_tokens, ax_kv):
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=8)
        panels[ax.get_title()] = labels
    fig.suptitle(f"SPEC-RL reuse: {report.source}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return PlotInfo(path, panels)
