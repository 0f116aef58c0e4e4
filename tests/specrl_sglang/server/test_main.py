"""`serve` refuses bad flags and bad files before the engine starts, naming what is wrong; --help
works without Ray, GPUs or SGLang."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radix_cache.snapshot import save_snapshot
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.server.main import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def work(tmp_path, tiny_model_path):
    (tmp_path / "snaps").mkdir()
    (tmp_path / "snaps" / "corrupt.snap").write_bytes(b"not a snapshot")
    save_snapshot(TrajectoryStore(None), tmp_path / "snaps" / "good.snap")
    (tmp_path / "a-dir").mkdir()
    return tmp_path


def bad(work, tiny_model_path, *flags, env=None):
    """The flags with {work}/{model} filled in; returns serve's exit message."""
    argv = [f.format(work=work, model=tiny_model_path) for f in flags]
    if "--model" not in argv and "--tiny" not in argv:
        argv = ["--model", tiny_model_path, *argv]
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return str(exit_.value.code)


CASES = [
    ("store-max-tokens-0", ["--store-max-tokens", "0"], "--store-max-tokens must be an integer >= 1"),
    ("store-max-tokens-negative", ["--store-max-tokens", "-5"], "--store-max-tokens must be an integer >= 1"),
    ("corrupt-snapshot", ["--snapshot", "{work}/snaps/corrupt.snap"], "is not a usable snapshot"),
    ("snapshot-not-snap", ["--snapshot", "{work}/snaps/store.bin"], "--snapshot must be a plain file name ending in .snap"),
    ("snapshot-outside-dir", ["--snapshot-dir", "{work}/snaps", "--snapshot", "{work}/other/x.snap"], "is not inside --snapshot-dir"),
    ("snapshot-every-alone", ["--snapshot-every", "2"], "--snapshot-every needs --snapshot"),
    ("snapshot-every-negative", ["--snapshot", "{work}/snaps/s.snap", "--snapshot-every", "-1"], "--snapshot-every must be an integer >= 0"),
    ("snapshot-dir-in-model", ["--snapshot-dir", "{model}/snaps"], "inside the model directory"),
    ("snapshot-dir-is-file", ["--snapshot-dir", "{work}/snaps/good.snap"], "--snapshot-dir"),
    ("weights-dir-missing", ["--weights-dir", "{work}/no-such"], "--weights-dir"),
    ("auth-token-short", ["--auth-token", "short"], "--auth-token must be at least 16"),
    ("auth-token-spaces", ["--auth-token", "a token with spaces in it"], "--auth-token must be at least 16"),
    ("port-0", ["--port", "0"], "--port must be in [1, 65535]"),
    ("port-huge", ["--port", "70000"], "--port must be in [1, 65535]"),
    ("lenience-below-1", ["--lenience", "0.5"], "lenience"),
    ("lenience-nan", ["--lenience", "nan"], "lenience"),
    ("no-spec", ["--no-spec"], "--no-spec was replaced by --mode vanilla"),
    ("read-timeout-0", ["--read-timeout", "0"], "--read-timeout must be in (0, 3600]"),
    ("max-body-0", ["--max-body-mb", "0"], "--max-body-mb must be a positive number"),
    ("max-weights-negative", ["--max-weights-mb", "-1"], "--max-weights-mb must be a positive number"),
    ("max-total-tokens-small", ["--max-total-tokens", "10"], "--max-total-tokens must be an integer >= 256"),
    ("max-connections-0", ["--max-connections", "0"], "--max-connections must be an integer >= 1"),
    ("report-is-dir", ["--report", "{work}/a-dir"], "is not a regular file"),
    ("report-as-snapshot", ["--snapshot-dir", "{work}/snaps", "--report", "{work}/snaps/steps.snap"], "would be a snapshot name"),
    ("model-missing", ["--model", "{work}/no-model"], "not a Hugging Face checkpoint directory"),
    ("model-without-weights", ["--model", "{work}/a-dir"], "not a Hugging Face checkpoint directory"),
    ("host-not-ip", ["--host", "example.com"], "--host must be an IP address"),
    ("seed-negative", ["--seed", "-1"], "seed must be an int >= 0"),
]


@pytest.mark.parametrize("flags, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_flags_stop_serve_before_the_engine_starts(work, tiny_model_path, flags, fragment):
    t0 = time.perf_counter()
    message = bad(work, tiny_model_path, *flags)
    assert message.startswith("serve: ") and fragment in message, message
    assert time.perf_counter() - t0 < 30  # no engine was started (that takes 10-100 s)
    assert not [p for p in __import__("psutil").Process().children() if p.name().startswith("sglang")]


EXTERNAL = [
    ("sglang-url-with-tiny", ["--tiny", "--sglang-url", "http://127.0.0.1:9"], "--tiny: embedded-engine flags do not apply"),
    ("sglang-url-with-profile", ["--sglang-url", "http://127.0.0.1:9", "--profile", "gpu", "--max-total-tokens", "512"],
     "--max-total-tokens, --profile: embedded-engine flags do not apply with --sglang-url"),
    ("sglang-url-without-scheme", ["--sglang-url", "127.0.0.1:9"], "must start with http:// or https://"),
    ("sglang-url-twice", ["--sglang-url", "http://127.0.0.1:9", "--sglang-url", "http://127.0.0.1:9/"], "must be distinct"),
    ("router-without-urls", ["--sglang-router", "http://127.0.0.1:9"], "--sglang-router needs the workers' URLs"),
    ("router-without-scheme", ["--sglang-url", "http://127.0.0.1:9", "--sglang-router", "r:1"], "must start with http://"),
    ("router-is-a-worker", ["--sglang-url", "http://127.0.0.1:9", "--sglang-router", "http://127.0.0.1:9/"],
     "is one of the workers'"),
]


@pytest.mark.parametrize("flags, fragment", [c[1:] for c in EXTERNAL], ids=[c[0] for c in EXTERNAL])
def test_bad_sglang_server_flags_are_refused_before_connecting(work, tiny_model_path, flags, fragment):
    message = bad(work, tiny_model_path, *flags)
    assert message.startswith("serve: ") and fragment in message, message


def test_serve_needs_a_model_or_servers():
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert str(exit_.value.code) == "serve: serve needs --model DIR, --tiny or --sglang-url URL"


def test_an_unreachable_sglang_server_is_named_and_nothing_starts(work, tiny_model_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket closes
    t0 = time.perf_counter()
    message = bad(work, tiny_model_path, "--sglang-url", dead, "--snapshot-dir", "{work}/snaps")
    assert message.startswith("serve: cannot use the SGLang servers: ") and f"SGLang worker {dead} did not answer" in message
    assert time.perf_counter() - t0 < 30
    assert not [p for p in __import__("psutil").Process().children() if p.name().startswith("sglang")]


def test_bad_auth_token_env_is_refused(work, tiny_model_path):
    assert "SPECRL_AUTH_TOKEN must be at least 16" in bad(work, tiny_model_path, env={"SPECRL_AUTH_TOKEN": "short"})


def test_port_in_use_is_refused(work, tiny_model_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        message = bad(work, tiny_model_path, "--port", str(s.getsockname()[1]))
    assert "--port" in message and "in use" in message


def test_corrupt_snapshot_exits_nonzero_as_a_process(work, tiny_model_path):
    proc = subprocess.run([sys.executable, "-m", "specrl_sglang", "serve", "--model", tiny_model_path,
                           "--snapshot", str(work / "snaps" / "corrupt.snap")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "is not a usable snapshot" in proc.stderr
    assert "starting SGLang" not in proc.stdout


HELP = [
    ["-m", "specrl_sglang", "--help"],
    ["-m", "specrl_sglang", "serve", "--help"],
    ["-m", "specrl_sglang", "bench", "serve", "--help"],
    ["-m", "specrl_sglang.server.main", "--help"],
]


@pytest.mark.parametrize("argv", HELP, ids=[" ".join(a[1:]) for a in HELP])
def test_help_works_without_ray_gpus_or_sglang(argv):
    code = ("import sys, runpy\n"
            f"sys.argv = {argv[1:]!r}\n"
            "try:\n"
            f"    runpy.run_module({argv[1]!r}, run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in ('ray', 'sglang', 'torch', 'uvicorn', 'deepspeed') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout
    if argv in (HELP[1], HELP[3]):  # serve's own help lists the external-server flags and what they exclude
        for text in ("--sglang-url URL", "--sglang-router URL", "embedded engine (not with --sglang-url"):
            assert text in proc.stdout, text
