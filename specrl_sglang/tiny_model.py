"""Build a tiny Qwen2-style causal LM and its tokenizer locally (no model hub is involved).

The model has random (seeded) weights and a byte-level BPE tokenizer trained with `tokenizers` on a
caller-supplied corpus. Both are written as a standard Hugging Face checkpoint directory that
`sglang.Engine(model_path=...)` and `transformers.AutoModelForCausalLM` load as-is.

Contract: `build_tiny_model` is idempotent. A directory that already holds a checkpoint built from the
same spec and corpus is reused untouched; otherwise it is rebuilt in a temporary sibling directory
and moved into place, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<unk>")
EOS_TOKEN = "<|endoftext|>"
_MARKER = "specrl_tiny_model.json"


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny policy. Defaults give ~0.1M parameters: fast on a 2-core CPU."""

    vocab_size: int = 320
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < len(SPECIAL_TOKENS) + 16:
            raise ValueError(f"vocab_size must be >= {len(SPECIAL_TOKENS) + 16}, got {self.vocab_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")


def _fingerprint(spec: TinyModelSpec, corpus: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for line in corpus:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def default_corpus(num_lines: int = 2000) -> list[str]:
    """A fixed, deterministic corpus (letter sequences and their reversals) for a tokenizer when
    the caller brings none, e.g. `serve --tiny` and `bench serve`."""
    letters = "abcdefghijklmnop"
    lines = []
    for i in range(num_lines):
        word = [letters[(i * 7 + j * 3) % len(letters)] for j in range(i % 9 + 1)]
        lines.append(f"reverse: {' '.join(word)} = {' '.join(reversed(word))}")
    return lines


def build_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer on `corpus`; returns a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token="<|pad|>", unk_token="<unk>"
    )


def build_tiny_model(out_dir: str | os.PathLike, corpus: Iterable[str], spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write (or reuse) a tiny Qwen2 checkpoint + tokenizer at `out_dir`; returns its path.

    The tokenizer's vocabulary is trained on `corpus`; the model's vocab size is the trained
    tokenizer's size (<= spec.vocab_size). Weights are float32, seeded by `spec.seed`.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    corpus = list(corpus)
    fingerprint = _fingerprint(spec, corpus)
    marker = out / _MARKER
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    try:
        tokenizer = build_tokenizer(corpus, spec.vocab_size)
        tokenizer.save_pretrained(tmp)
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads,
            max_position_embeddings=spec.max_position_embeddings,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
            torch_dtype="float32",
        )
        torch.manual_seed(spec.seed)
        Qwen2ForCausalLM(config).save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"fingerprint": fingerprint, "spec": asdict(spec)}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
