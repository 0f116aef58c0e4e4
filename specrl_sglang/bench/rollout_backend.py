"""The runtime `bench rollout` measures: an in-process SGLang engine, or local SGLang HTTP servers
(`python -m sglang.launch_server`, started and stopped here) behind HttpEngine."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from specrl_sglang.runtime import RolloutRuntime


@contextlib.contextmanager
def open_runtime(workload, backend: str, num_workers: int, log: Callable[[str], None]) -> Iterator[RolloutRuntime]:
    from radix_cache.trajectory_store import TrajectoryStore
    from specrl_sglang.engine_config import EngineConfig

    engine = EngineConfig(model_path=workload.warm_path, random_seed=workload.config.seed,
                          max_total_tokens=workload.config.kv_pool_tokens)
    if backend == "in-process":
        with RolloutRuntime.in_process(engine) as runtime:
            yield runtime
        return
    if backend != "http":
        raise ValueError(f"backend must be in-process or http, got {backend!r}")
    from specrl_sglang.http_engine import HttpEngine
    from specrl_sglang.sglang_workers import start_workers

    log(f"starting {num_workers} SGLang HTTP server(s) on {workload.warm_path} ...")
    with start_workers(engine, num_workers) as workers:
        log(f"workers up: {', '.join(workers.urls)}")
        with RolloutRuntime(lambda: HttpEngine(workers.urls), TrajectoryStore(max_tokens=None)) as runtime:
            yield runtime
