"""Receiving OpenRLHF's per-step weight sync in a rollout engine actor.

OpenRLHF's protocol (openrlhf/trainer/ray/ppo_actor.py::broadcast_to_vllm): trainer rank 0 and
every engine join one group (trainer rank 0, engine i at rank 1 + i * tp_size); then, for each
parameter in `named_parameters()` order, the trainer calls `engine.update_weight.remote(name, dtype,
shape, empty_cache=is_last)` on every engine and broadcasts the tensor from rank 0. In colocated
mode it sends CUDA IPC handles instead (`update_weight_cuda_ipc`).

`WeightReceiver` receives each tensor and hands it back; the actor loads it at once into the open
weight update of its `RolloutRuntime` (weight_stream.py), so no copy of the model is buffered.
Backends: "nccl" (GPU: vLLM's stateless PyNccl group, exactly what OpenRLHF's trainer creates),
"gloo" (CPU: `GlooBroadcastGroup`, which integrations.openrlhf.cpu_runtime also gives the trainer),
or Ray collectives when OpenRLHF runs with `--vllm.sync_with_ray`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch


class GlooBroadcastGroup:
    """A standalone gloo group over its own TCPStore (rank 0 hosts it), apart from torch's default group.

    Has the one method OpenRLHF calls on its weight-sync group: `broadcast(tensor, src, stream)`.
    """

    def __init__(self, master_address: str, master_port: int, rank: int, world_size: int, timeout_s: float = 600.0):
        timeout = timedelta(seconds=timeout_s)
        self._store = torch.distributed.TCPStore(
            master_address, int(master_port), world_size, is_master=(rank == 0), timeout=timeout
        )
        self._pg = torch.distributed.ProcessGroupGloo(self._store, rank, world_size, timeout)
        self.rank, self.world_size = rank, world_size

    def broadcast(self, tensor: torch.Tensor, src: int = 0, stream: Any = None) -> None:
        """In place on every rank: `tensor` becomes rank `src`'s tensor (CPU tensors only)."""
        self._pg.broadcast(tensor, src).wait()


class WeightReceiver:
    """Engine side of the weight sync: membership of the trainer's broadcast group."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._group: Any = None
        self._use_ray = False

    def init_process_group(
        self, master_address: str, master_port: int, rank: int, world_size: int, group_name: str, backend: str, use_ray: bool
    ) -> None:
        """Join the trainer's group at `rank` (1 + engine_index * tp for OpenRLHF)."""
        self._use_ray = bool(use_ray)
        if use_ray:
            import ray.util.collective as collective

            collective.init_collective_group(world_size=world_size, rank=rank, backend=backend, group_name=group_name)
            self._group = group_name
        elif backend == "gloo" or self.device == "cpu":
            self._group = GlooBroadcastGroup(master_address, master_port, rank, world_size)
        elif backend == "nccl":
            from openrlhf.utils.distributed_util import stateless_init_process_group

            self._group = stateless_init_process_group(master_address, master_port, rank, world_size, torch.device(self.device))
        else:
            raise ValueError(f"weight sync backend must be 'nccl' or 'gloo', got {backend!r}")

    def receive(self, name: str, dtype: torch.dtype, shape: Any) -> tuple[str, torch.Tensor]:
        """Receive one broadcast tensor (blocks until rank 0 sends it)."""
        if self._group is None:
            raise RuntimeError("update_weight before init_process_group: the trainer must create the sync group first")
        weight = torch.empty(tuple(shape), dtype=dtype, device=self.device)
        if self._use_ray:
            import ray.util.collective as collective

            collective.broadcast(weight, 0, group_name=self._group)
        elif isinstance(self._group, GlooBroadcastGroup):
            self._group.broadcast(weight, src=0)
        else:
            self._group.broadcast(weight, src=0, stream=torch.cuda.current_stream())
        return name, weight

    def receive_cuda_ipc(self, name: str, dtype: torch.dtype, shape: Any, ipc_handles: dict) -> tuple[str, torch.Tensor]:
        """Colocated mode: rebuild the trainer's tensor from its CUDA IPC handle and copy it."""
        from openrlhf.trainer.ray.utils import get_physical_gpu_id

        func, args = ipc_handles[get_physical_gpu_id()]
        args = list(args)
        args[6] = torch.cuda.current_device()  # the handle names the sender's device index
        weight = func(*args)
        if tuple(weight.shape) != tuple(shape) or weight.dtype != dtype:
            raise ValueError(f"{name}: IPC tensor is {weight.dtype}{tuple(weight.shape)}, expected {dtype}{tuple(shape)}")
        copy = weight.clone()  # the sender frees its copy after this call returns
        torch.cuda.synchronize()
        return name, copy
