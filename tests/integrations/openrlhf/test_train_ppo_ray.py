"""The launcher's fast paths, in fresh processes: --help without Ray or torch, refusals before Ray.

(Real training runs through the launcher are in test_e2e_cpu.py.)
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LAUNCHER = [sys.executable, "-m", "integrations.openrlhf.train_ppo_ray"]
CHECK_IMPORTS = ("import sys, runpy; sys.argv = ['x', '--help'];"
                 "from integrations.openrlhf.train_ppo_ray import main; main();"
                 "print('IMPORTED', sorted(m for m in ('ray', 'torch', 'openrlhf', 'vllm', 'sglang') if m in sys.modules))")


def run(cmd, timeout=120, **env):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})


def test_help_lists_our_flags_and_openrlhfs_in_seconds_without_ray_or_torch():
    t0 = time.perf_counter()
    out = run([sys.executable, "-c", CHECK_IMPORTS])
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "IMPORTED []" in text  # nothing heavy imported, so no Ray started either
    for flag in ("--rollout.backend", "--spec.mode", "--spec.sglang_urls", "--spec.sglang_staging_dir", "--spec.lenience", "--spec.disable", "--vllm.num_engines",
                 "--train.partial_rollout_enable", "--ckpt.load_enable", "--eval.temperature"):
        assert flag in text, flag
    assert "alias of --spec.mode vanilla" in text and "Enable partial rollout in async mode" in text
    assert elapsed < 15, elapsed


def test_help_through_the_module_entry_point():
    out = run([*LAUNCHER, "--help"])
    assert out.returncode == 0 and "--spec.mode" in out.stdout and "--actor.model_name_or_path" in out.stdout


def test_stock_vllm_backend_on_cpu_is_refused_with_the_vanilla_pointer():
    out = run([*LAUNCHER, "--rollout.backend", "vllm", "--vllm.num_engines", "1"])
    assert out.returncode != 0
    assert "--spec.mode vanilla" in out.stderr and "need a GPU" in out.stderr and "Started a local Ray" not in out.stderr


def test_refusals_happen_before_ray_starts():
    out = run([*LAUNCHER, "--rollout.backend", "sglang-spec", "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "2"])
    assert out.returncode != 0 and "tensor_parallel_size must be 1" in out.stderr and "Ray" not in out.stderr
    out = run([*LAUNCHER, "--rollout.backend", "sglang-spec", "--vllm.num_enginez", "1"])
    assert out.returncode == 2 and "unrecognized arguments: --vllm.num_enginez" in out.stderr  # OpenRLHF's parser


def test_example_script_help_and_its_backend_override(tmp_path):
    out = run(["bash", "examples/openrlhf/train_tiny_cpu.sh", "--help"])
    assert out.returncode == 0 and "NUM_PROMPTS" in out.stdout and "--spec.mode" in out.stdout
    out = run(["bash", "examples/openrlhf/train_tiny_cpu.sh", str(tmp_path), "--rollout.backend", "vllm"], timeout=300,
              PYTHON=sys.executable)
    assert out.returncode != 0 and "--spec.mode vanilla" in out.stderr
    out = run([sys.executable, "examples/openrlhf/make_tiny_task.py", "--help"])
    assert out.returncode == 0 and "--num-prompts" in out.stdout


def test_bad_or_unreachable_sglang_servers_are_refused_before_ray_starts(tiny_model_path):
    base = [*LAUNCHER, "--rollout.backend", "sglang-spec", "--vllm.num_engines", "1", "--vllm.sync_backend", "gloo",
            "--ds.attn_implementation", "eager", "--actor.model_name_or_path", tiny_model_path]
    out = run([*base, "--spec.sglang_urls", "localhost:30000"])
    assert out.returncode != 0 and "--spec.sglang_urls: an SGLang server URL must start with http://" in out.stderr
    assert "Ray" not in out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket closes
    out = run([*base, "--spec.sglang_urls", dead])
    assert out.returncode != 0 and "Ray" not in out.stderr, out.stderr[-3000:]
    assert f"--spec.sglang_urls: cannot use the SGLang servers: SGLang worker {dead} did not answer" in out.stderr
