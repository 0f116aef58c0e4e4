"""Helpers shared by the OpenRLHF actor tests."""

from __future__ import annotations

import asyncio
import threading

import pytest

from specrl_sglang.sglang_workers import free_port


class GlooTrainer:
    """OpenRLHF's broadcast_to_vllm against one rollout actor: the trainer is rank 0 of a 2-rank
    gloo group (joined from a thread while the actor joins as rank 1 on `loop`); per parameter it
    calls the actor's update_weight and then broadcasts the tensor, the last one with empty_cache."""

    def __init__(self, loop, actor) -> None:
        from integrations.openrlhf.weight_sync import GlooBroadcastGroup

        port = free_port("")
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("g", GlooBroadcastGroup("127.0.0.1", port, 0, 2)))
        t.start()
        loop.run_until_complete(actor.init_process_group("127.0.0.1", port, 1, 2, "openrlhf", "gloo", False))
        t.join()
        self.group, self.actor, self.loop = box["g"], actor, loop

    async def broadcast(self, weights) -> None:
        """One weight round, awaited on the actor's loop (for tests that overlap it with rollouts)."""
        for i, (name, p) in enumerate(weights):
            task = asyncio.ensure_future(self.actor.update_weight(name, p.dtype, p.shape, empty_cache=i == len(weights) - 1))
            await asyncio.sleep(0)
            await asyncio.to_thread(self.group.broadcast, p.clone(), 0, None)
            await task

    def sync(self, weights) -> None:
        """One weight round, run to completion on the loop."""
        self.loop.run_until_complete(self.broadcast(weights))


@pytest.fixture(scope="session")
def gloo_trainer():
    """The GlooTrainer class (construct it with the module's loop and actor)."""
    return GlooTrainer
