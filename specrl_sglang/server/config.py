"""ServeConfig: everything `specrl-sglang serve` is started with, validated before the engine starts.

Values only; what needs the disk (the model's vocabulary, the snapshot file, the report) is
checked by `preflight.prepare`, also before the engine starts. Defaults that belong to the core
are imported from their owners (mode and lenience: spec_config; URL rules: http_engine).

Two engines: embedded (`model_path` required: an offline SGLang engine in this process, with the
engine settings below) or external (`sglang_urls`: SGLang HTTP servers already running, optionally
behind `sglang_router`; `model_path` is then optional - the checkpoint the servers serve, if the
path they were launched with is not readable here - and the engine settings do not apply).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.server.auth import check_token
from specrl_sglang.server.schema import MiB, ServerLimits
from specrl_sglang.spec_config import DEFAULT_LENIENCE, DEFAULT_MODE, SpecConfig

DEFAULT_PORT = 8377
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ENGINE_LISTEN = ("loopback", "any")


@dataclass(frozen=True)
class ServeConfig:
    model_path: str | None
    mode: str = DEFAULT_MODE
    lenience: float = DEFAULT_LENIENCE
    seed: int = 0
    store_max_tokens: int | None = None  # token budget of the draft store (None: unbounded); wins over a snapshot's
    snapshot_dir: str | None = None  # the one directory snapshots live in (None: no snapshots)
    snapshot_name: str | None = None  # the default snapshot in it: restored on start, saved on shutdown
    snapshot_every: int = 0  # also save the default snapshot every N finished steps (0: never)
    report_path: str | None = None  # JSONL: one statistics row per step
    weights_dirs: tuple[str, ...] = ()  # update_weights_from_disk only from inside these (none: disabled)
    auth_token: str | None = None  # bearer token for mutating endpoints (None: open)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    read_timeout_s: float = 30.0  # a client must send its headers, and each body chunk, within this
    max_connections: int = 256  # beyond: 503
    history_len: int = 10_000  # step rows kept in memory for /stats
    max_body_bytes: int = 16 * MiB
    max_weights_bytes: int | None = None  # POST /update_weights body (None: 8 bytes per model parameter + 1 MiB)
    profile: str = "cpu"
    dtype: str = "float32"
    max_total_tokens: int = 65536  # SGLang's KV pool
    engine_listen: str = "loopback"  # "any": SGLang's own distributed-init defaults (all interfaces)
    log_level: str = "info"
    sglang_urls: tuple[str, ...] = ()  # external SGLang servers (none: the embedded engine)
    sglang_router: str | None = None  # an sglang-router (manual policy) in front of sglang_urls

    def __post_init__(self) -> None:
        self.spec_config  # validates mode, lenience, seed
        self._check_engine_choice()
        _count(self.store_max_tokens, "--store-max-tokens", allow_none=True)
        _count(self.snapshot_every, "--snapshot-every", minimum=0)
        _count(self.history_len, "history_len")
        _count(self.max_connections, "--max-connections")
        _count(self.max_body_bytes, "--max-body-mb")
        _count(self.max_weights_bytes, "--max-weights-mb", allow_none=True)
        _count(self.max_total_tokens, "--max-total-tokens", minimum=256)
        if not 1 <= self.port <= 65535:
            raise ValueError(f"--port must be in [1, 65535], got {self.port}")
        if not (math.isfinite(self.read_timeout_s) and 0 < self.read_timeout_s <= 3600):
            raise ValueError(f"--read-timeout must be in (0, 3600] seconds, got {self.read_timeout_s}")
        if self.snapshot_name is not None and self.snapshot_dir is None:
            raise ValueError("--snapshot needs a snapshot directory (--snapshot-dir, or a path with a directory)")
        if self.snapshot_every and self.snapshot_name is None:
            raise ValueError("--snapshot-every needs --snapshot")
        if self.auth_token is not None:
            check_token(self.auth_token)
        if self.engine_listen not in ENGINE_LISTEN:
            raise ValueError(f"--engine-listen must be one of {ENGINE_LISTEN}, got {self.engine_listen!r}")
        if self.host not in LOOPBACK_HOSTS:
            try:
                ipaddress.ip_address(self.host)
            except ValueError:
                raise ValueError(f"--host must be an IP address or localhost, got {self.host!r}") from None
        if not self.external:
            self.engine_config  # validates profile, KV pool size

    def _check_engine_choice(self) -> None:
        from specrl_sglang.http_engine import checked_urls  # the one owner of the URL rules

        if not self.external:
            if self.sglang_router is not None:
                raise ValueError("--sglang-router needs the workers' URLs too (--sglang-url URL, once per worker): "
                                 "weight updates and flushes go to every worker directly")
            if not self.model_path:
                raise ValueError("serve needs --model DIR, --tiny or --sglang-url URL")
            return
        try:
            checked_urls(self.sglang_urls, self.sglang_router)
        except ValueError as exc:
            raise ValueError(f"--sglang-url / --sglang-router: {exc}") from None

    @property
    def external(self) -> bool:
        """True: serve through SGLang HTTP servers (`sglang_urls`), not an embedded engine."""
        return bool(self.sglang_urls)

    @property
    def spec_config(self) -> SpecConfig:
        return SpecConfig(mode=self.mode, lenience=self.lenience, seed=self.seed)  # type: ignore[arg-type]

    @property
    def engine_config(self) -> EngineConfig:
        return self.engine_config_for(self.model_path)

    def engine_config_for(self, model_path: str) -> EngineConfig:
        return EngineConfig(model_path=model_path, profile=self.profile, dtype=self.dtype,  # type: ignore[arg-type]
                            random_seed=self.seed, max_total_tokens=self.max_total_tokens)

    def limits(self, max_weights_bytes: int) -> ServerLimits:
        return ServerLimits(max_body_bytes=self.max_body_bytes, max_weights_bytes=max_weights_bytes)

    @property
    def loopback_only(self) -> bool:
        return self.host in LOOPBACK_HOSTS


def _count(value, flag: str, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{flag} must be an integer >= {minimum}, got {value!r}")
