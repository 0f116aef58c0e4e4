"""The job runtime env: our setup hook and OpenRLHF's default env vars, merged with a submitted job's.

(Starting and joining real clusters runs in test_e2e_cpu.py.)"""

import json

import pytest

from integrations.openrlhf.ray_start import JOB_CONFIG_ENV, SETUP_HOOK, RayStartError, runtime_env


def test_standalone_env_has_the_hook_and_openrlhfs_defaults():
    env = runtime_env({"NCCL_DEBUG": "INFO"})
    assert env["worker_process_setup_hook"] == SETUP_HOOK
    assert env["env_vars"] == {"TOKENIZERS_PARALLELISM": "true", "NCCL_DEBUG": "INFO",
                               "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1"}


def test_a_submitted_jobs_keys_win_and_a_foreign_hook_is_refused():
    job = {"runtime_env": {"env_vars": {"NCCL_DEBUG": "TRACE", "PYTHONPATH": "/x"}}}
    env = runtime_env({JOB_CONFIG_ENV: json.dumps(job)})
    assert "NCCL_DEBUG" not in env["env_vars"] and env["worker_process_setup_hook"] == SETUP_HOOK
    ours = {"runtime_env": {"worker_process_setup_hook": SETUP_HOOK}}
    assert "worker_process_setup_hook" not in runtime_env({JOB_CONFIG_ENV: json.dumps(ours)})
    foreign = {"runtime_env": {"worker_process_setup_hook": "my.hook"}}
    with pytest.raises(RayStartError, match="my.hook"):
        runtime_env({JOB_CONFIG_ENV: json.dumps(foreign)})
