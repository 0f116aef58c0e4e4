"""The `specrl-sglang` command line: one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specrl-sglang",
        description="Speculative rollouts (SPEC-RL) for on-policy RL on SGLang.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from specrl_sglang.demo import main as demo_main

    demo_main.add_parser(subparsers)
    from specrl_sglang.server import main as serve_main

    serve_main.add_parser(subparsers)
    from specrl_sglang.inspect import main as stats_main

    stats_main.add_parser(subparsers)
    from specrl_sglang import bench  # its sub-subcommands are listed in bench.BENCH_MODULES

    bench.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
