"""Launcher flags and combinations, prompt keys and sharding, the gloo weight path, the CPU stand-ins."""

import math
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from integrations.openrlhf.compat import check_combination
from integrations.openrlhf.placement import LockedStore, ShardedDraftStore, owner_of, prompt_key
from integrations.openrlhf.spec_args import SpecArgError, SpecSettings, split_argv
from integrations.openrlhf.weight_sync import GlooBroadcastGroup, WeightReceiver

REPO = Path(__file__).resolve().parents[3]
CPU_OK = ["--vllm.num_engines", "1", "--vllm.sync_backend", "gloo", "--ds.attn_implementation", "eager"]


def test_split_argv_takes_our_flags_and_leaves_openrlhfs():
    backend, settings, store_mb, rest = split_argv(
        ["--actor.model_name_or_path", "m", "--rollout.backend", "sglang-spec", "--spec.lenience", "inf",
         "--spec.batch_window_ms", "5", "--spec.ray_object_store_mb", "200", "--rollout.n_samples_per_prompt", "8"]
    )
    assert backend == "sglang-spec" and math.isinf(settings.lenience) and settings.batch_window_s == 0.005
    assert store_mb == 200 and rest == ["--actor.model_name_or_path", "m", "--rollout.n_samples_per_prompt", "8"]
    assert split_argv([])[1] == SpecSettings() and split_argv([])[0] == "vllm"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rollout.backend", "sglang-spec", "--spec.lenincee", "2"], "unknown flag"),
        (["--rollout.backend", "sglang-spec", "--spec.lenience", "0.5"], "lenience must be >= 1"),
        (["--spec.lenience", "2"], "only apply with --rollout.backend sglang-spec"),
        (["--rollout.backend", "sglang-spec", "--spec.placement", "nearby"], "shared or local"),
    ],
)
def test_bad_flags_get_clear_errors(argv, message):
    with pytest.raises(SpecArgError, match=message):
        split_argv(argv)


@pytest.mark.parametrize(
    "extra, on_cpu, message",
    [
        (["--vllm.num_engines", "0"], True, "--vllm.num_engines >= 1"),
        (["--vllm.tensor_parallel_size", "2"], False, "tensor_parallel_size must be 1"),
        (["--ds.lora.rank", "8"], False, "LoRA"),
        (["--algo.advantage.is_correction_level", "token", "--rollout.temperature", "0.6"], False, "temperature=0.6"),
        (["--train.colocate_all"], True, "GPU only"),
        (["--vllm.sync_backend", "nccl"], True, "--vllm.sync_backend gloo"),
        (["--ds.attn_implementation", "flash_attention_2"], True, "eager"),
        (["--ds.packing_samples"], True, "GPU only"),
        (["--vllm.enable_sleep"], True, "enable_sleep needs a GPU"),
    ],
)
def test_incompatible_combinations_are_refused(extra, on_cpu, message):
    with pytest.raises(SpecArgError, match=message):
        check_combination(CPU_OK + extra, SpecSettings(), on_cpu=on_cpu)


def test_sleep_mode_enables_sglangs_memory_saver_on_gpu():
    from integrations.openrlhf.engine_factory import engine_config

    gpu = SpecSettings(engine_profile="gpu")
    assert engine_config(gpu, "m", 0, False, 0.5, enable_sleep=True).engine_kwargs()["enable_memory_saver"] is True
    assert "enable_memory_saver" not in engine_config(gpu, "m", 0, False, 0.5).engine_kwargs()


def test_cpu_resource_count_follows_openrlhf_roles():
    argv = CPU_OK + ["--actor.num_gpus_per_node", "1", "--algo.advantage.estimator", "group_norm",
                     "--algo.kl.init_coef", "0", "--reward.remote_url", "r.py"]
    assert check_combination(argv, SpecSettings(), on_cpu=True) == {"gpus": 1, "cpus": 4}


def test_prompt_key_is_stable_and_label_sensitive():
    ids = np.array([5, 6, 7], dtype=np.int32)
    assert prompt_key("x", ids) == prompt_key("x", ids.astype(np.int64).tolist())
    assert prompt_key("x", ids) != prompt_key("y", ids) != prompt_key("x", ids[:2])
    owners = [owner_of(prompt_key(str(i), ids), 4) for i in range(400)]
    assert set(owners) == {0, 1, 2, 3} and max(np.bincount(owners)) < 140  # roughly even shards


def test_sharded_store_with_one_engine_is_the_local_store():
    from radix_cache.responses import Response
    from radix_cache.trajectory_store import TrajectoryStore

    local = LockedStore(TrajectoryStore(max_tokens=None))
    store = ShardedDraftStore(local, 0)
    ids = np.array([1, 2, 3], dtype=np.int32)
    key = prompt_key("l", ids)
    assert store.lookup(key, ids, 2, lock=True) == [None, None]
    store.put(key, ids, [Response(np.array([4, 5], np.int32), np.array([-0.1, -0.2], np.float32))])
    drafts = store.lookup(key, ids, 2, lock=False)
    assert drafts[0].token_ids.tolist() == [4, 5] and store.num_remote_calls == 0


def test_gloo_group_broadcasts_like_openrlhfs_protocol_and_receiver_buffers_a_round():
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    params = [("a.weight", torch.randn(3, 4, dtype=torch.bfloat16)), ("b.bias", torch.randn(5))]
    received = {}

    def engine(rank):
        rx = WeightReceiver("cpu")
        rx.init_process_group("127.0.0.1", port, rank, 3, "openrlhf", "gloo", False)
        for name, p in params:
            rx.receive(name, p.dtype, p.shape)
        received[rank] = rx.take()

    threads = [threading.Thread(target=engine, args=(r,)) for r in (1, 2)]
    for t in threads:
        t.start()
    trainer = GlooBroadcastGroup("127.0.0.1", port, 0, 3)
    for _, p in params:
        trainer.broadcast(p.clone(), src=0, stream=None)
    for t in threads:
        t.join(timeout=60)
    for rank in (1, 2):
        assert [n for n, _ in received[rank]] == ["a.weight", "b.bias"]
        for (_, got), (_, want) in zip(received[rank], params):
            assert got.dtype == want.dtype and torch.equal(got, want)


def test_flash_attn_stand_in_padding_helpers_round_trip():
    sys.path.insert(0, str(REPO / "integrations/openrlhf/_flash_attn_shim"))
    try:
        from flash_attn.bert_padding import pad_input, unpad_input
        from flash_attn.utils.distributed import all_gather
    finally:
        sys.path.pop(0)
    x = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    packed, indices, cu, max_len, used = unpad_input(x, mask)
    assert packed.shape == (5, 3) and cu.tolist() == [0, 3, 5] and max_len == 3 and used.tolist() == [3, 2]
    back = pad_input(packed, indices, 2, 4)
    assert torch.equal(back, x * mask[..., None])
    with pytest.raises(NotImplementedError, match="stand-in"):
        all_gather(torch.ones(1), None)


def test_cpu_runtime_maps_openrlhfs_cuda_calls_to_cpu():
    code = (
        "import torch; from integrations.openrlhf.cpu_runtime import install; install();"
        "import openrlhf.utils.distributed_util as du;"
        "dev = torch.device(f'cuda:{torch.cuda.current_device()}');"
        "t = torch.ones(2).to(dev); z = torch.zeros(2, device='cuda'); torch.cuda.synchronize(); torch.cuda.set_device(0);"
        "from torch.distributed.device_mesh import init_device_mesh;"
        "print(t.device, z.device, torch.ones(1).cuda().device, du.stateless_init_process_group.__name__)"
    )
    shim = str(REPO / "integrations/openrlhf/_flash_attn_shim")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": shim})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["cpu", "cpu", "cpu", "_gloo_stateless_init_process_group"]
