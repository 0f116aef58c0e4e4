"""`specrl-sglang stats`: print reuse statistics as a table; optionally a PNG plot and an HTML page.

    specrl-sglang stats --url http://127.0.0.1:8377 --plot reuse.png --html reuse.html
    specrl-sglang stats --report runs/serve/steps.jsonl      # or runs/demo/report.json
    specrl-sglang stats --snapshot runs/serve/store.snap     # what the store holds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from specrl_sglang.inspect.sources import StatsReport, from_report, from_snapshot, from_url
from specrl_sglang.server.main import DEFAULT_PORT


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("stats", help="show prefix-reuse statistics of a server, report or snapshot")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--url", help=f"a running server (default http://127.0.0.1:{DEFAULT_PORT})")
    source.add_argument("--report", help="a server JSONL report (serve --report) or the demo's report.json")
    source.add_argument("--snapshot", help="a trajectory-store snapshot file")
    p.add_argument("--since", type=int, default=0, help="with --url: only steps >= this")
    p.add_argument("--last", type=int, default=0, help="show only the last N steps of each series in the table")
    p.add_argument("--plot", help="write a PNG plot here")
    p.add_argument("--html", help="write a self-contained HTML report here (embeds the plot)")
    p.set_defaults(func=run)
    return p


def load(args: argparse.Namespace) -> StatsReport:
    if args.report:
        return from_report(args.report)
    if args.snapshot:
        return from_snapshot(args.snapshot)
    return from_url(args.url or f"http://127.0.0.1:{DEFAULT_PORT}", since=args.since)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:  # piped into `head`: not an error
        sys.stdout = None
        return 0


def _run(args: argparse.Namespace) -> int:
    from specrl_sglang.inspect.table import format_report

    try:
        report = load(args)
    except (OSError, ValueError) as exc:
        print(f"stats: cannot read the source: {exc}", file=sys.stderr)
        return 2
    shown = report
    if args.last > 0:
        keep = [r for s in dict.fromkeys(r["series"] for r in report.rows)
                for r in [x for x in report.rows if x["series"] == s][-args.last:]]
        shown = report._replace(rows=keep)
    print(format_report(shown), flush=True)
    if (args.plot or args.html) and not report.rows:
        print("stats: no rollout steps to plot (use --url or --report)", file=sys.stderr)
        return 2
    png = None
    if args.plot or args.html:
        from specrl_sglang.inspect.plot import plot_report

        png = Path(args.plot) if args.plot else Path(tempfile.mkdtemp()) / "reuse.png"
        plot_report(report, png)
        if args.plot:
            print(f"wrote {png}")
    if args.html:
        from specrl_sglang.inspect.html_report import write_html

        print(f"wrote {write_html(report, args.html, png)}")
    return 0
