"""The Ray worker setup hook in a fresh process (CPU runtime: OpenRLHF's CUDA calls on CPU, flash_attn
stand-in, OpenRLHF wrappers installed once), and the stand-in's padding helpers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
SHIM = REPO / "integrations/openrlhf/_flash_attn_shim"


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]  # DeepSpeed prints to stdout too
    return line.split()[1:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU runtime is a no-op with CUDA")
def test_worker_setup_installs_cpu_runtime_and_openrlhf_wrappers_once():
    code = (
        "import torch; from integrations.openrlhf.worker_setup import install; install(); install();"
        "import flash_attn.bert_padding;"
        "from openrlhf.trainer.ppo_trainer import BasePPOTrainer;"
        "from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator;"
        "import openrlhf.utils.distributed_util as du;"
        "w = [getattr(BasePPOTrainer, m) for m in ('save_logs_and_checkpoints', 'save_best_checkpoint', 'init_checkpoint_states')];"
        "print('RESULT', all(getattr(f, '_specrl_checkpoint_hook', False) and not hasattr(f.__wrapped__, '_specrl_checkpoint_hook') for f in w),"
        " SamplesGenerator.generate_eval_samples._specrl_eval_route, torch.ones(1).cuda().device,"
        " torch.ones(2).to(torch.device(f'cuda:{torch.cuda.current_device()}')).device, torch.zeros(1, device='cuda').device,"
        " torch.cuda.current_device(), du.stateless_init_process_group.__name__, 'shim' in flash_attn.__file__)"
    )
    torch_calls = "torch.cuda.synchronize(); torch.cuda.set_device(0);"  # no-ops now (they raise without CUDA)
    assert run_python(code.replace("import flash_attn", torch_calls + "import flash_attn")) == [
        "True", "True", "cpu", "cpu", "cpu", "0", "_gloo_stateless_init_process_group", "True"]


def test_flash_attn_stand_in_padding_helpers_round_trip():
    sys.path.insert(0, str(SHIM))
    try:
        from flash_attn.bert_padding import pad_input, unpad_input
        from flash_attn.utils.distributed import all_gather
    finally:
        sys.path.pop(0)
    x = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    packed, indices, cu, max_len, used = unpad_input(x, mask)
    assert packed.shape == (5, 3) and cu.tolist() == [0, 3, 5] and max_len == 3 and used.tolist() == [3, 2]
    assert torch.equal(pad_input(packed, indices, 2, 4), x * mask[..., None])
    with pytest.raises(NotImplementedError, match="stand-in"):
        all_gather(torch.ones(1), None)
