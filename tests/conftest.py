"""Shared fixtures: a tiny Qwen2 checkpoint built locally once per test session."""

from __future__ import annotations

import pytest

TEST_CORPUS = [f"rev: {' '.join('abcdefgh'[(i + j) % 8] for j in range(i % 7 + 1))} =" for i in range(400)]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    from specrl_sglang.tiny_model import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec(hidden_size=64, intermediate_size=128, num_layers=2, max_position_embeddings=512)
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", TEST_CORPUS, spec))
