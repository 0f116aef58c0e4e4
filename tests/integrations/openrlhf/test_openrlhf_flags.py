"""OpenRLHF's own train_ppo_ray parser, read from its source without importing OpenRLHF."""

import ast
import subprocess
import sys

import pytest

from integrations.openrlhf import openrlhf_flags
from integrations.openrlhf.openrlhf_flags import OpenRLHFFlagsError, openrlhf_parser, parse_openrlhf_args


def test_parser_has_openrlhfs_flags_defaults_and_help():
    parser = openrlhf_parser()
    options = {o for a in parser._actions for o in a.option_strings}
    assert {"--vllm.num_engines", "--train.partial_rollout_enable", "--ckpt.load_enable", "--eval.temperature",
            "--algo.dynamic_filtering_range", "--actor.adam.lr", "--critic.muon.lr"} <= options  # loop-defined ones too
    args = parse_openrlhf_args(["--vllm.num_engines", "2", "--eval.temperature", "0.3"])
    assert args["vllm.num_engines"] == 2 and args["eval.temperature"] == 0.3 and args["ckpt.save_steps"] == -1
    assert tuple(args["algo.dynamic_filtering_range"]) == (0, 1)
    assert "Enable partial rollout in async mode" in parser.format_help()


def test_unknown_flags_exit_like_openrlhf():
    with pytest.raises(SystemExit) as exc:
        parse_openrlhf_args(["--vllm.num_enginez", "2"])
    assert exc.value.code == 2


def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys; from integrations.openrlhf.openrlhf_flags import openrlhf_parser; openrlhf_parser();"
            "print(sorted(m for m in ('ray', 'torch', 'openrlhf', 'vllm', 'deepspeed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_an_unexpected_statement_in_the_parser_block_is_refused(tmp_path):
    src = tmp_path / "train_ppo_ray.py"
    src.write_text("import argparse\nif __name__ == '__main__':\n    parser = argparse.ArgumentParser()\n"
                   "    import os\n    os.system('echo no')\n    args = parser.parse_args()\n")
    tree = ast.parse(src.read_text())
    with pytest.raises(OpenRLHFFlagsError, match="unexpected statement"):
        openrlhf_flags._parser_statements(tree, src)
