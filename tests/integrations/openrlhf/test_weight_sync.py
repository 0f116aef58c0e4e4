"""The gloo weight path: OpenRLHF's per-parameter broadcast protocol received by engine ranks."""

import threading

import torch

from integrations.openrlhf.weight_sync import GlooBroadcastGroup, WeightReceiver
from specrl_sglang.sglang_workers import free_port


def test_gloo_group_broadcasts_like_openrlhfs_protocol():
    port = free_port("")
    params = [("a.weight", torch.randn(3, 4, dtype=torch.bfloat16)), ("b.bias", torch.randn(5))]
    received = {}

    def engine(rank):
        rx = WeightReceiver("cpu")
        rx.init_process_group("127.0.0.1", port, rank, 3, "openrlhf", "gloo", False)
        received[rank] = [rx.receive(name, p.dtype, p.shape) for name, p in params]

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


def test_receiving_before_the_group_exists_is_an_error():
    try:
        WeightReceiver("cpu").receive("w", torch.float32, (1,))
    except RuntimeError as exc:
        assert "init_process_group" in str(exc)
    else:
        raise AssertionError("expected RuntimeError")
