"""Our launcher flags (`--rollout.backend`, `--spec.*`), split off argv before OpenRLHF parses the rest.

`spec_parser()` is the one definition of our flags (names, defaults, help text): `split_argv` parses
with it and `--help` prints it. Defaults of the rollout rule are imported from their owner,
`specrl_sglang.spec_config` (mode, lenience); `SpecSettings` validates through `SpecConfig`, and
the SGLang server URLs through their owner, `specrl_sglang.http_engine.checked_urls`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from specrl_sglang.spec_config import DEFAULT_LENIENCE, DEFAULT_MODE, MODES, SpecConfig

BACKENDS = ("vllm", "sglang-spec")
PLACEMENTS = ("shared", "local")
PROFILES = ("auto", "cpu", "gpu")
# Settings of the Ray-spawned engines: they do not apply to SGLang servers that run on their own.
ENGINE_FLAGS = ("--spec.engine_profile", "--spec.engine_dtype", "--spec.max_total_tokens", "--spec.mem_fraction_static",
                "--spec.engine_kwargs")


class SpecArgError(ValueError):
    """A bad --spec.* / --rollout.backend flag or an incompatible flag combination."""


@dataclass(frozen=True)
class SpecSettings:
    """Everything our rollout engines need beyond what OpenRLHF passes to create_vllm_engines.

    `dynamic_filtering_range` is OpenRLHF's `--algo.dynamic_filtering_range` when
    `--algo.dynamic_filtering_enable` is on (the launcher fills it in), else None.
    """

    mode: str = DEFAULT_MODE
    lenience: float = DEFAULT_LENIENCE
    seed: int = 0
    store_max_tokens: int | None = None
    group_window_s: float = 0.02
    placement: str = "shared"
    engine_profile: str = "auto"
    engine_dtype: str = "auto"
    max_total_tokens: int | None = 65536
    mem_fraction_static: float | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    stats_jsonl: str | None = None
    dynamic_filtering_range: tuple[float, float] | None = None
    sglang_urls: tuple[str, ...] = ()  # external SGLang servers (none: Ray-spawned engines)
    sglang_staging_dir: str | None = None  # where weights are staged for the servers (a filesystem they read)
    sglang_router: str | None = None  # an sglang-router (--policy manual) in front of the servers

    def __post_init__(self) -> None:
        self.spec_config(0)  # mode, lenience and seed are validated by their owner
        if self.sglang_urls:
            from specrl_sglang.http_engine import checked_urls

            try:
                checked_urls(self.sglang_urls)
            except ValueError as exc:
                raise ValueError(f"--spec.sglang_urls: {exc}") from None
            if self.sglang_router is not None:
                try:
                    checked_urls(self.sglang_urls, self.sglang_router)
                except ValueError as exc:
                    raise ValueError(f"--spec.sglang_router: {exc}") from None
        else:
            for flag, value in (("sglang_staging_dir", self.sglang_staging_dir), ("sglang_router", self.sglang_router)):
                if value is not None:
                    raise ValueError(f"--spec.{flag} only applies with --spec.sglang_urls")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"--spec.placement must be shared or local, got {self.placement!r}")
        if self.engine_profile not in PROFILES:
            raise ValueError(f"--spec.engine_profile must be auto, cpu or gpu, got {self.engine_profile!r}")
        if self.store_max_tokens is not None and self.store_max_tokens < 1:
            raise ValueError(f"--spec.store_max_tokens must be >= 1, got {self.store_max_tokens}")
        if self.group_window_s < 0:
            raise ValueError(f"--spec.group_window_ms must be >= 0, got {self.group_window_s * 1000}")

    def spec_config(self, engine_index: int) -> SpecConfig:
        """The rollout rule of engine `engine_index` (its acceptance seed is seed + index)."""
        return SpecConfig(mode=self.mode, lenience=self.lenience, seed=self.seed + engine_index)  # type: ignore[arg-type]


class LauncherArgs(NamedTuple):
    backend: str
    settings: SpecSettings
    ray_object_store_mb: int | None
    openrlhf_argv: list[str]  # everything that is not ours, for OpenRLHF's own parser
    spec_flags: list[str]  # the --spec.* flags given (they need --rollout.backend sglang-spec)


def spec_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    g = p.add_argument_group("rollout backend (integrations.openrlhf)")
    g.add_argument("--rollout.backend", dest="backend", choices=BACKENDS, default="vllm",
                   help="sglang-spec: SGLang engines with speculative rollouts in place of OpenRLHF's vLLM engines; "
                        "vllm: stock OpenRLHF (needs a GPU and a vLLM build for it)")
    g.add_argument("--spec.mode", dest="mode", choices=MODES, default=None,
                   help=f"rollout rule (default {DEFAULT_MODE}): spec-rl = SPEC-RL's lenient acceptance of the previous "
                        "epoch's responses; exact = lossless (samples distributed exactly as fresh ones, temperature 1, "
                        "top_p 1 only); vanilla = no drafts, the no-reuse baseline")
    g.add_argument("--spec.disable", dest="disable", action="store_true",
                   help="alias of --spec.mode vanilla")
    g.add_argument("--spec.lenience", dest="lenience", type=float, default=DEFAULT_LENIENCE,
                   help=f"SPEC-RL lenience l >= 1 (default e^0.5 = {DEFAULT_LENIENCE:.4f}; 1: vanilla speculative "
                        "acceptance; inf: reuse every draft); spec-rl mode only")
    g.add_argument("--spec.seed", dest="seed", type=int, default=0,
                   help="acceptance randomness; engine i uses seed + i (draws are fresh every step, reproducible)")
    g.add_argument("--spec.store_max_tokens", dest="store_max_tokens", type=int, default=None,
                   help="draft budget per engine shard in tokens, whole prompts LRU-evicted (default: unbounded)")
    g.add_argument("--spec.group_window_ms", dest="group_window_ms", type=float, default=20.0,
                   help="how long a prompt's sample group waits for more of its samples when fewer than n arrive "
                        "together (later turns of multi-turn agents); a full group starts at once")
    g.add_argument("--spec.placement", dest="placement", choices=PLACEMENTS, default="shared",
                   help="shared: one draft store sharded over all engines by prompt; local: each engine keeps its own")
    g.add_argument("--spec.engine_profile", dest="engine_profile", choices=PROFILES, default="auto",
                   help="SGLang recipe; auto = gpu iff CUDA is available")
    g.add_argument("--spec.engine_dtype", dest="engine_dtype", default="auto",
                   help="SGLang dtype; auto = float32 on cpu, bfloat16 on gpu")
    g.add_argument("--spec.max_total_tokens", dest="max_total_tokens", type=int, default=65536,
                   help="SGLang KV pool size in tokens")
    g.add_argument("--spec.mem_fraction_static", dest="mem_fraction_static", type=float, default=None,
                   help="SGLang static GPU memory fraction (default: --vllm.gpu_memory_utilization)")
    g.add_argument("--spec.engine_kwargs", dest="engine_kwargs", type=json.loads, default={},
                   help="JSON object of extra sglang.Engine keyword arguments")
    g.add_argument("--spec.stats_jsonl", dest="stats_jsonl", default=None,
                   help="append one JSON line per rollout step (StepStats + prompt, purpose, rule)")
    g.add_argument("--spec.sglang_urls", dest="sglang_urls", action="append", default=[], metavar="URL[,URL...]",
                   help="roll out through these running SGLang HTTP servers (python -m sglang.launch_server, started "
                        "with SGLANG_RETURN_ORIGINAL_LOGPROB=1; comma-separated or repeated) instead of Ray-spawned "
                        "engines: one rollout actor drives them all, routing by prompt (needs --vllm.num_engines 1); "
                        "weight syncs are staged as safetensors files the servers load (see docs/sglang_servers.md)")
    g.add_argument("--spec.sglang_staging_dir", dest="sglang_staging_dir", default=None, metavar="DIR",
                   help="with --spec.sglang_urls: where the rollout actor stages synced weights for the servers; they "
                        "must read it (default: the system temp dir, i.e. servers on the actor's machine)")
    g.add_argument("--spec.sglang_router", dest="sglang_router", default=None, metavar="URL",
                   help="with --spec.sglang_urls: send rollout requests through this sglang-router, started with "
                        "--policy manual over the same servers (each request carries its prompt's routing key, so a "
                        "prompt's drafts and KV stay on one server); weight updates still go to every server directly")
    g.add_argument("--spec.ray_object_store_mb", dest="ray_object_store_mb", type=int, default=None,
                   help="object store size when the launcher starts Ray itself (ignored with RAY_ADDRESS)")
    return p


def split_argv(argv: Sequence[str]) -> LauncherArgs:
    """Our flags parsed, the rest left for OpenRLHF. SpecArgError for any bad or unknown `--spec.*`
    (whether `--spec.*` flags fit the backend is the launcher's check: `spec_flags`)."""
    parser = spec_parser()
    try:
        ns, rest = parser.parse_known_args(list(argv))
    except SystemExit:  # argparse already printed the reason (e.g. a bad choice)
        raise SpecArgError("see the message above") from None
    stray = [a for a in rest if a.startswith("--spec.") or a.startswith("--rollout.backend")]
    if stray:
        known = sorted(o for a in parser._actions for o in a.option_strings)
        raise SpecArgError(f"unknown flag(s) {stray}; ours are: {', '.join(known)}")
    given = sorted({a.split("=")[0] for a in argv if a.startswith("--spec.")} - {"--spec.ray_object_store_mb"})
    if ns.disable and ns.mode not in (None, "vanilla"):
        raise SpecArgError(f"--spec.disable (= --spec.mode vanilla) contradicts --spec.mode {ns.mode}")
    mode = "vanilla" if ns.disable else (ns.mode or DEFAULT_MODE)
    if not isinstance(ns.engine_kwargs, dict):
        raise SpecArgError("--spec.engine_kwargs must be a JSON object")
    urls = [u for value in ns.sglang_urls for u in value.split(",") if u.strip()]
    if ns.sglang_urls and not urls:
        raise SpecArgError("--spec.sglang_urls needs at least one URL")
    engine_flags = [f for f in given if f in ENGINE_FLAGS]
    if urls and engine_flags:
        raise SpecArgError(f"{', '.join(engine_flags)}: engine settings do not apply with --spec.sglang_urls (the SGLang "
                           "servers run with their own: drop the flag, or set it where the servers are started)")
    try:
        settings = SpecSettings(
            mode=mode,
            lenience=ns.lenience,
            seed=ns.seed,
            store_max_tokens=ns.store_max_tokens,
            group_window_s=ns.group_window_ms / 1000.0,
            placement=ns.placement,
            engine_profile=ns.engine_profile,
            engine_dtype=ns.engine_dtype,
            max_total_tokens=ns.max_total_tokens,
            mem_fraction_static=ns.mem_fraction_static,
            engine_kwargs=dict(ns.engine_kwargs),
            stats_jsonl=ns.stats_jsonl,
            sglang_urls=tuple(urls),
            sglang_staging_dir=ns.sglang_staging_dir,
            sglang_router=ns.sglang_router,
        )
    except ValueError as exc:
        raise SpecArgError(str(exc)) from None
    return LauncherArgs(ns.backend, settings, ns.ray_object_store_mb, rest, given)
