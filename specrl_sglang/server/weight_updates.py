"""Weight updates over HTTP: tensors from the request body, or a checkpoint directory on disk.

Validation is `weight_checks`' (names, shapes, float dtypes, finite values - for disk updates
`check_checkpoint_dir` reads every tensor once) and runs before anything is loaded, so a refused
update is a 400 and changes nothing; a disk path must also pass the `--weights-dir` allow-list
(`sandbox.WeightsAllowList`). Then the runtime loads the weights inside its exclusive section:
it waits for the steps in flight (`wait_s`: 409 when it runs out, nothing changed) or, with
`interrupt`, parks them to resume under the new weights; it flushes the KV cache before the
policy version is bumped. After an engine restart that lost weights pushed from memory, the next
update must carry every parameter (a partial one would leave a mix of old and new weights).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from specrl_sglang.engine_api import EngineError
from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.metrics import ServiceMetrics
from specrl_sglang.server.runtime_host import RuntimeHost
from specrl_sglang.server.sandbox import WeightsAllowList
from specrl_sglang.server.schema import UpdateOptions
from specrl_sglang.step_gate import GateTimeout
from specrl_sglang.weight_checks import WeightSpec, read_headers

Failure = Callable[[EngineError], ApiError]


class WeightUpdates:
    def __init__(self, host: RuntimeHost, allowed: WeightsAllowList, metrics: ServiceMetrics, model_path: str) -> None:
        self.host, self.allowed, self.metrics = host, allowed, metrics
        self.stored_names = frozenset(read_headers(Path(model_path)) or ())  # what a complete update carries
        self.in_flight = 0  # update requests waiting for, or inside, the runtime's exclusive section

    async def from_tensors(self, named: list[tuple[str, Any]], options: UpdateOptions, failure: Failure) -> dict[str, Any]:
        self._check_complete({name for name, _ in named}, "tensors")
        return await self._run("update_weights", "tensors", failure,
                               lambda rt: rt.update_weights(named, options.wait_s, options.interrupt), None)

    async def from_disk(self, path: str, options: UpdateOptions, failure: Failure) -> dict[str, Any]:
        target = self.allowed.resolve(path)
        self._spec()  # refuse when there is nothing to check the directory against
        try:
            num_tensors = len(read_headers(target) or ())  # the runtime validates the directory itself
            self._check_complete(set(read_headers(target) or ()), "path")
        except ValueError as exc:
            raise ApiError(400, f"{exc}; nothing was loaded (policy_version {self._version()})", "path") from None
        reply = await self._run("update_weights_from_disk", "path", failure,
                                lambda rt: rt.update_weights_from_disk(str(target), options.wait_s, options.interrupt),
                                str(target))
        return {**reply, "path": str(target), "num_tensors": num_tensors}

    async def _run(self, what: str, field: str, failure: Failure, call, disk_path: str | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.in_flight += 1
        try:
            version = await self.host.guard(lambda rt: asyncio.to_thread(call, rt))
        except GateTimeout as exc:
            raise ApiError(409, f"{what} refused: {exc}; nothing changed (policy_version {self._version()})", "wait_s") from None
        except ValueError as exc:  # weight_checks: nothing reached the engine
            raise ApiError(400, f"{exc}; nothing was loaded (policy_version {self._version()})", field) from None
        except EngineError as exc:
            raise failure(exc) from None
        finally:
            self.in_flight -= 1
        if disk_path is None:
            self.host.note_memory_update()
        else:
            self.host.note_disk_update(disk_path)
        self.metrics.weight_updates.inc()
        return {"policy_version": version, "seconds": time.perf_counter() - t0}

    def _spec(self) -> WeightSpec:
        spec = self.host.current().weight_spec
        if spec is None:
            raise ApiError(400, "the served model has no safetensors weights to check updates against", "path")
        return spec

    def _check_complete(self, names: set[str], field: str) -> None:
        if not self.host.full_update_required:
            return
        missing = sorted(self.stored_names - names)
        if missing:
            raise ApiError(400, f"the engine restarted and lost pushed weights: this update must carry every parameter "
                                f"(missing {len(missing)}, e.g. {missing[0]}); nothing was loaded", field)

    def _version(self) -> int | None:
        runtime = self.host.runtime
        return None if runtime is None else runtime.policy_version
