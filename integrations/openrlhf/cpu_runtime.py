"""Run OpenRLHF's (CUDA-only) trainer processes on a machine without a GPU, for CPU CI and examples.

OpenRLHF 0.11.2's trainer hard-codes CUDA in a handful of places on the PPO/GRPO path:
`torch.cuda.set_device/current_device/synchronize/current_stream`, `init_device_mesh("cuda", ...)`,
`tensor.to(torch.cuda.current_device())`, and vLLM's PyNccl group for the weight broadcast. DeepSpeed
itself runs on CPU (its CPU accelerator with gloo), and so do the models. `install()` redirects
exactly those CUDA entry points to CPU in the current process:

- `torch.cuda.set_device/synchronize` become no-ops, `current_device()` returns 0 and
  `current_stream()` None (OpenRLHF only passes them on);
- a TorchFunctionMode (entered on the calling thread: Ray runs a sync actor's tasks on the worker's
  main thread, where the setup hook runs) maps `device="cuda..."`/int device arguments and
  `Tensor.to(cuda)` / `Tensor.cuda()` to CPU;
- `init_device_mesh("cuda", ...)` builds a "cpu" mesh over the same (gloo) process group;
- OpenRLHF's `stateless_init_process_group` (trainer rank 0 <-> rollout engines) builds a standalone
  gloo group (weight_sync.GlooBroadcastGroup) instead of vLLM's PyNccl communicator;
- DeepSpeed uses torch's Adam/AdamW (its `torch_adam` optimizer option: the same update rule) and
  plain gloo collectives, instead of JIT-compiling its CPU FusedAdam and shared-memory comm C++ ops
  (~2.5 minutes of compilation on a fresh 2-core machine, for no gain at this scale).

It does nothing when CUDA is available, so the same launch runs unchanged on GPU machines. The
launcher registers `install` as Ray's `worker_process_setup_hook`, so every Ray worker of the run
calls it before its first task; nothing else is touched.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

_installed = False


def _is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, int) and not isinstance(device, bool)


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments of torch calls to CPU (only device arguments; nothing else)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to:
            args = tuple(torch.device("cpu") if i and _is_cuda_device(a) else a for i, a in enumerate(args))
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs = {**kwargs, "device": torch.device("cpu")}
        return func(*args, **kwargs)


def _cpu_device_mesh(init_device_mesh):
    def init_cpu_device_mesh(device_type, *args, **kwargs):
        return init_device_mesh("cpu" if device_type == "cuda" else device_type, *args, **kwargs)

    return init_cpu_device_mesh


def _gloo_stateless_init_process_group(master_address, master_port, rank, world_size, device=None):
    from integrations.openrlhf.weight_sync import GlooBroadcastGroup

    return GlooBroadcastGroup(master_address, master_port, rank, world_size)


def _torch_adam(initialize):
    def initialize_with_torch_adam(*args, config=None, **kwargs):
        optimizer = (config or {}).get("optimizer") if isinstance(config, dict) else None
        if optimizer and str(optimizer.get("type", "")).lower() in ("adam", "adamw"):
            config = {**config, "optimizer": {**optimizer, "params": {**optimizer.get("params", {}), "torch_adam": True}}}
        return initialize(*args, config=config, **kwargs)

    return initialize_with_torch_adam


def install() -> None:
    """Make this process's CUDA calls from OpenRLHF run on CPU; a no-op where CUDA is available."""
    global _installed
    if _installed or torch.cuda.is_available():
        return
    _installed = True
    torch.cuda.set_device = lambda device: None
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_device = lambda: 0
    torch.cuda.current_stream = lambda device=None: None
    import torch.distributed.device_mesh as device_mesh

    device_mesh.init_device_mesh = _cpu_device_mesh(device_mesh.init_device_mesh)
    CudaToCpuMode().__enter__()  # stays on this thread's mode stack for the life of the process
    import deepspeed
    import deepspeed.ops

    deepspeed.initialize = _torch_adam(deepspeed.initialize)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    # Bound before openrlhf.trainer.ray.ppo_actor does `from ... import stateless_init_process_group`.
    import openrlhf.utils.distributed_util as distributed_util

    distributed_util.stateless_init_process_group = _gloo_stateless_init_process_group
