"""Launch OpenRLHF's PPO/GRPO trainer with SGLang speculative-rollout engines in place of vLLM's.

    python -m integrations.openrlhf.train_ppo_ray <openrlhf.cli.train_ppo_ray flags> \\
        --rollout.backend sglang-spec [--spec.mode spec-rl|exact|vanilla --spec.* ...]

In order:
1. `-h` / `--help`: prints our flags and OpenRLHF's (read from its source, openrlhf_flags) and
   exits, without importing torch, Ray or OpenRLHF;
2. splits our flags off argv (spec_args) and checks the run (compat: OpenRLHF's own parser, then
   the combinations our engines cannot serve; with --spec.sglang_urls, a connection to every
   SGLang server with its connect-time checks, actor_runtime): every refusal happens here,
   before Ray starts.
   `--rollout.backend vllm` runs stock OpenRLHF unchanged on GPU machines and is refused on CPU
   (no vLLM CPU build here), pointing to `--spec.mode vanilla`;
3. starts Ray, or joins the cluster at RAY_ADDRESS (ray_start), with worker_setup as the workers'
   setup hook (CPU runtime, eval routing, draft checkpoints);
4. replaces `openrlhf.trainer.ray.create_vllm_engines` (the name OpenRLHF's train_ppo_ray imports)
   by `SpecEngineFactory` and runs OpenRLHF's own `openrlhf.cli.train_ppo_ray` as `__main__` (its
   parser, checks, `train()` and trainer);
5. prints a per-policy-version summary of draft reuse from the engines when training ends.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TextIO

from integrations.openrlhf.openrlhf_flags import PROG, OpenRLHFFlagsError, openrlhf_parser, train_ppo_ray_source
from integrations.openrlhf.spec_args import SpecArgError, spec_parser, split_argv

OPENRLHF_MAIN = "openrlhf.cli.train_ppo_ray"


def print_help(out: TextIO = sys.stdout) -> None:
    ours = spec_parser()
    ours.prog = PROG
    ours.usage = f"{PROG} [OpenRLHF train_ppo_ray flags] --rollout.backend sglang-spec [--spec.* flags]"
    print(__doc__.split("\n\n")[0], file=out)
    print(file=out)
    print(ours.format_help(), file=out)
    try:
        theirs = openrlhf_parser()
    except OpenRLHFFlagsError as exc:
        print(f"OpenRLHF's flags cannot be listed: {exc}", file=out)
        return
    theirs.usage = argparse.SUPPRESS
    print(f"OpenRLHF's {OPENRLHF_MAIN} flags, passed through unchanged ({train_ppo_ray_source()}):", file=out)
    print(theirs.format_help().replace("show this help message and exit", "this help"), file=out)


def _run_openrlhf(argv: Sequence[str]) -> None:
    sys.argv = [OPENRLHF_MAIN, *argv]
    runpy.run_module(OPENRLHF_MAIN, run_name="__main__", alter_sys=True)


def _print_summary(engines: list) -> None:
    import ray

    from integrations.openrlhf.step_log import summary_lines

    if not engines:
        return
    stats = ray.get([e.get_spec_stats.remote() for e in engines])
    for line in summary_lines([r for st in stats for r in st["steps"]]):
        print(line)
    for st in stats:
        print(f"[specrl] engine {st['engine_index']}: {st['num_remote_store_calls']} draft-store calls to other "
              f"engines, weight rounds {st['weight_rounds']}, fresh draws {st['fresh_draws']}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return
    from integrations.openrlhf.ray_start import RayStartError, start_or_join

    try:
        args = split_argv(argv)
        import torch

        on_cpu = not torch.cuda.is_available()
        if args.backend == "vllm":
            from integrations.openrlhf.compat import VLLM_ON_CPU

            if on_cpu:
                raise SpecArgError(VLLM_ON_CPU)
            if args.spec_flags:
                raise SpecArgError(f"{args.spec_flags} only apply with --rollout.backend sglang-spec")
            _run_openrlhf(args.openrlhf_argv)
            return
        from integrations.openrlhf.compat import plan_run

        plan = plan_run(args.openrlhf_argv, args.settings, on_cpu=on_cpu)
        settings = replace(args.settings, dynamic_filtering_range=plan.dynamic_filtering_range)
        servers = None
        if settings.sglang_urls:
            from integrations.openrlhf.actor_runtime import check_servers

            servers = check_servers(settings, plan.pretrain)  # before Ray: a bad server stops the run here
        if on_cpu:
            from integrations.openrlhf.worker_setup import add_flash_attn_stand_in

            add_flash_attn_stand_in()  # this driver imports OpenRLHF's trainer modules too
        how = start_or_join(plan.ray_cpus if on_cpu else None, plan.ray_gpus if on_cpu else None,
                            args.ray_object_store_mb)
    except (SpecArgError, RayStartError) as exc:
        raise SystemExit(f"{PROG}: error: {exc}") from None
    engines = f"one rollout actor over {servers}" if servers else f"{plan.num_engines} SGLang engine(s)"
    print(f"[specrl] Ray {how}; rollout rule {settings.mode} (lenience {settings.lenience:.4f}), {engines}", flush=True)
    import openrlhf.trainer.ray as openrlhf_ray

    from integrations.openrlhf.engine_factory import SpecEngineFactory

    factory = SpecEngineFactory(settings)
    openrlhf_ray.create_vllm_engines = factory  # the documented swap: train() calls this name
    _run_openrlhf(args.openrlhf_argv)
    _print_summary(factory.engines)


if __name__ == "__main__":
    main()
