"""Start Ray for a run, or join the cluster at RAY_ADDRESS (`ray job submit`, a shared cluster).

Started here: `ray.init(num_cpus, num_gpus, object_store_memory)`; on a CPU-only machine the GPU
count is logical (OpenRLHF's model actors each ask for one "GPU"; nothing uses one).
Joined (RAY_ADDRESS set): `ray.init(address=...)` only, the cluster's resources are its own; the
launcher checks that it offers the GPU slots the run needs and says how to start one if not.
Either way the job's runtime env carries OpenRLHF's default worker env vars (as its train() would
set them) and our worker_process_setup_hook (worker_setup.install). Under `ray job submit` Ray
merges the submitted runtime env with ours and refuses conflicting keys: the job's env vars win
(we drop ours), a job-level setup hook cannot be combined with ours and is refused with the reason.
"""

from __future__ import annotations

import json
import os
from typing import Any

SETUP_HOOK = "integrations.openrlhf.worker_setup.install"
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # ray._private.runtime_env.constants; set by `ray job submit`


class RayStartError(RuntimeError):
    """The Ray cluster cannot host this run; the message says why and what to do."""


def runtime_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Our job runtime env, minus whatever a submitted job already sets (see module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    env_vars = {  # OpenRLHF's own defaults (train() sets them only when it starts Ray itself)
        "TOKENIZERS_PARALLELISM": environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
    }
    job_env: dict[str, Any] = {}
    if JOB_CONFIG_ENV in environ:
        job_env = (json.loads(environ[JOB_CONFIG_ENV]).get("runtime_env") or {})
    if job_env.get("worker_process_setup_hook") not in (None, SETUP_HOOK):
        raise RayStartError(
            f"the submitted job sets worker_process_setup_hook={job_env['worker_process_setup_hook']!r}; the "
            f"sglang-spec backend needs {SETUP_HOOK!r} (call yours from a hook that also calls ours)")
    env: dict[str, Any] = {}
    taken = set((job_env.get("env_vars") or {}))
    kept = {k: v for k, v in env_vars.items() if k not in taken}
    if kept:
        env["env_vars"] = kept
    if "worker_process_setup_hook" not in job_env:
        env["worker_process_setup_hook"] = SETUP_HOOK
    return env


def start_or_join(num_cpus: int | None, num_gpus: int | None, object_store_mb: int | None) -> str:
    """Initialise Ray in this process (a no-op if it is up); returns "started" | "joined" | "up".
    `num_cpus` / `num_gpus`: the logical slots a CPU-only run needs (None on GPU machines: Ray
    counts the real ones)."""
    import ray

    if ray.is_initialized():
        return "up"
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime_env())
        have = ray.cluster_resources().get("GPU", 0)
        if num_gpus is not None and have < num_gpus:
            raise RayStartError(
                f"the Ray cluster at RAY_ADDRESS={address} offers {have:g} GPU slots; this run needs {num_gpus} "
                f"(one per OpenRLHF model actor). On CPU machines start it with logical ones: "
                f"ray start --head --num-cpus {num_cpus} --num-gpus {num_gpus}")
        return "joined"
    kwargs: dict[str, Any] = {"include_dashboard": False}
    if num_gpus is not None:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus)
    if object_store_mb:
        kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
    ray.init(runtime_env=runtime_env(), **kwargs)
    return "started"
