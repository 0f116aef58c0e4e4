"""Ray's `worker_process_setup_hook` for runs of the sglang-spec backend (the launcher registers it).

Runs in every Ray worker process of the job before its first task:
1. without CUDA: puts the flash_attn stand-in on `sys.path` if no real flash_attn is importable,
   and installs cpu_runtime (OpenRLHF's CUDA calls mapped to CPU);
2. always: eval_routing (OpenRLHF's evaluation rollouts go to the engines' plain eval path) and
   checkpoint_hooks (the draft store saved and restored with OpenRLHF's checkpoints).
Nothing else is changed; with CUDA step 1 is skipped, so one launch runs on CPU and GPU machines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "_flash_attn_shim"


def add_flash_attn_stand_in() -> bool:
    """Put the stand-in on sys.path when flash_attn is missing; True if it was added."""
    if importlib.util.find_spec("flash_attn") is not None:
        return False
    if str(SHIM_DIR) not in sys.path:
        sys.path.insert(0, str(SHIM_DIR))
    return True


def install() -> None:
    import torch

    if not torch.cuda.is_available():
        add_flash_attn_stand_in()
        from integrations.openrlhf import cpu_runtime

        cpu_runtime.install()
    from integrations.openrlhf import checkpoint_hooks, eval_routing

    eval_routing.install()
    checkpoint_hooks.install()
