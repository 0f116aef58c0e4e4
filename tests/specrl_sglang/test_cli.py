"""Every command a user types answers --help on a fresh checkout, without Ray, GPUs or SGLang
starting: the subcommands are read from the parser itself, so a new one is covered too."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from specrl_sglang.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def command_paths() -> list[list[str]]:
    """Every (sub)command path of `specrl-sglang`, e.g. [], ["demo"], ["bench", "rollout"]."""
    paths, todo = [], [([], build_parser())]
    while todo:
        path, parser = todo.pop()
        paths.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(path + [name], sub) for name, sub in action.choices.items()]
    return sorted(paths)


def test_every_documented_command_is_there():
    paths = {" ".join(p) for p in command_paths()}
    for cmd in ("demo", "serve", "stats", "bench rollout", "bench quality", "bench fidelity", "bench serve",
                "bench tree", "bench store"):
        assert cmd in paths, cmd


def test_every_command_answers_help_without_heavy_imports():
    code = ("import sys, io, contextlib\n"
            "from specrl_sglang.cli import main\n"
            "for path in PATHS:\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            main(path + ['--help'])\n"
            "        except SystemExit as e:\n"
            "            assert e.code in (0, None), (path, e.code)\n"
            "    assert 'usage: specrl-sglang' in out.getvalue(), path\n"
            "heavy = [m for m in ('ray', 'sglang', 'torch', 'uvicorn', 'deepspeed', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "print(len(PATHS), 'commands')\n")
    paths = command_paths()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", f"PATHS = {paths!r}\n" + code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(paths)} commands" in proc.stdout


@pytest.mark.parametrize("argv", [["scripts/demo.sh", "--help"], [sys.executable, "-m", "specrl_sglang.sglang_workers", "--help"]],
                         ids=["demo.sh", "sglang_workers"])
def test_scripts_answer_help(argv):
    env = {**os.environ, "SPECRL_VENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout
