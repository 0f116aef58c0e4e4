"""The rollout actor's `RolloutRuntime`: over its own in-process SGLang engine, or over external servers.

Default: each actor owns one offline `sglang.Engine` (InProcessEngine) that Ray placed with it.
With `--spec.sglang_urls`: the one actor's runtime drives `HttpEngine(urls)` - SGLang HTTP servers
that run on their own (`python -m sglang.launch_server`), every request of a prompt routed to one
server by prompt identity, updates and flushes sent to all of them (docs/sglang_servers.md).
OpenRLHF's weight sync is unchanged for the trainer: it broadcasts each parameter to the actor
(weight_sync), which loads it into the runtime's open update; HttpEngine stages the tensors as
safetensors files (`--spec.sglang_staging_dir`, a directory the servers read) and every server
loads them with /update_weights_from_disk when the round ends, then flushes its KV. With
`--spec.sglang_router` generate requests go through that sglang-router (manual policy, the
prompt's routing key in each request); updates and flushes still go to every server.

- `check_servers(settings, pretrain)`: the launcher connects once before Ray starts, with
  HttpEngine's own connect-time checks (every server answers, all serve one model at one weight
  version, the log-prob convention probe passes); a bad or unreachable server stops the run there
  with its reason. Nothing is kept open.
- `build_runtime(...)`: the actor's runtime. Over servers it then makes them serve the trainer's
  initial policy: unless they were launched with `pretrain` itself and never updated (SGLang's
  weight version "default"), `pretrain` is loaded into every server from disk (they must read it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from integrations.openrlhf.spec_args import SpecArgError, SpecSettings
from specrl_sglang.draft_store import DraftStore
from specrl_sglang.runtime import RolloutRuntime

LAUNCH_WEIGHT_VERSION = "default"  # what SGLang reports until a client sets another version


def check_servers(settings: SpecSettings, pretrain: str) -> str:
    """SpecArgError unless the servers pass HttpEngine's connect-time checks; returns their description."""
    from specrl_sglang.engine_api import EngineError
    from specrl_sglang.http_engine import HttpEngine

    async def probe() -> str:
        engine = await HttpEngine.connect(list(settings.sglang_urls), pretrain, router_url=settings.sglang_router,
                                          staging_dir=settings.sglang_staging_dir)
        await engine.http.aclose()
        return engine.description

    try:
        return asyncio.run(probe())
    except (EngineError, ValueError) as exc:
        raise SpecArgError(f"--spec.sglang_urls: cannot use the SGLang servers: {exc}") from None


def build_runtime(settings: SpecSettings, model_path: str, engine_config: Any, store: DraftStore,
                  engine_index: int) -> RolloutRuntime:
    """The runtime of rollout actor `engine_index`; see module docstring."""
    spec = settings.spec_config(engine_index)
    if not settings.sglang_urls:
        from specrl_sglang.engine import InProcessEngine

        return RolloutRuntime(lambda: InProcessEngine(engine_config), store, spec)
    from specrl_sglang.http_engine import HttpEngine

    urls, router, staging = list(settings.sglang_urls), settings.sglang_router, settings.sglang_staging_dir
    runtime = RolloutRuntime(lambda: HttpEngine(urls, model_path, router_url=router, staging_dir=staging), store, spec)
    try:
        engine = runtime.engine
        launched = Path(engine.facts[0].model_path).resolve()
        if launched != Path(model_path).resolve() or engine.weight_version != LAUNCH_WEIGHT_VERSION:
            runtime.update_weights_from_disk(model_path)  # start from the trainer's initial policy
    except BaseException:
        runtime.close()
        raise
    return runtime
