"""Benchmarks behind ``specrl-sglang bench <name>``: one module per name.

Each module exposes ``add_parser(subparsers)`` (registers its sub-subcommand and sets ``func``)
and a ``run_*_bench(...) -> dict`` function that the sub-subcommand and the tests call. Modules
are imported only when the CLI parser is built, so importing this package is cheap.
"""

from __future__ import annotations

import argparse
import importlib

# Adding a benchmark: one more name here (a module specrl_sglang/bench/<name>.py).
BENCH_MODULES = ("tree", "rollout", "store", "serve", "quality", "fidelity")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bench`` on the top-level subparsers, with one sub-subcommand per module."""
    parser = subparsers.add_parser("bench", help="benchmarks (see: specrl-sglang bench -h)")
    bench_subparsers = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(f"specrl_sglang.bench.{name}").add_parser(bench_subparsers)
