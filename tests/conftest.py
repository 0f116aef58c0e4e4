"""Shared fixtures: a tiny Qwen2 checkpoint built locally once per test session, and a
transformers reference scorer for log-prob checks."""

from __future__ import annotations

import numpy as np
import pytest

TEST_CORPUS = [f"rev: {' '.join('abcdefgh'[(i + j) % 8] for j in range(i % 7 + 1))} =" for i in range(400)]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    from specrl_sglang.tiny_model import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, num_layers=2, max_position_embeddings=512)
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", TEST_CORPUS, spec))


@pytest.fixture(scope="session")
def base_weights(tiny_model_path):
    """The tiny model's parameters, named as trainers name them (lm_head.weight included)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    return [(k, v.detach().clone()) for k, v in model.named_parameters()]


def perturbed(weights, scale: float, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [(k, v + scale * torch.randn(v.shape, generator=gen)) for k, v in weights]


class HFReference:
    """log p(response | prompt) under given weights, computed with transformers (the reference)."""

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.eval()

    def load(self, named) -> "HFReference":
        with self.torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in named:
                params[name].copy_(tensor)
        return self

    def logprobs(self, prompt, response) -> np.ndarray:
        torch = self.torch
        ids = torch.tensor([np.concatenate([prompt, response]).astype(np.int64).tolist()])
        with torch.no_grad():
            lp = torch.log_softmax(self.model(ids).logits[0].float(), -1)
        p = len(prompt)
        return lp[p - 1 : -1].gather(-1, ids[0, p:, None])[:, 0].numpy()

    def next_token_probs(self, prefix) -> np.ndarray:
        torch = self.torch
        ids = torch.tensor([np.asarray(prefix, dtype=np.int64).tolist()])
        with torch.no_grad():
            return torch.softmax(self.model(ids).logits[0, -1].double(), -1).numpy()


@pytest.fixture(scope="session")
def hf_reference(tiny_model_path):
    """A factory: hf_reference(weights) -> HFReference with those weights loaded."""

    def make(weights) -> HFReference:
        return HFReference(tiny_model_path).load(weights)

    make.perturbed = perturbed
    return make
