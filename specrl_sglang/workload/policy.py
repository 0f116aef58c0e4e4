"""The trainer side of the workload: a torch copy of the tiny policy, its warm-up, and log-prob scoring.

Runs in the caller's process on CPU (torch), while SGLang serves rollouts from its own copy of
the weights; `named_weights()` is what gets pushed to the engine after every optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Policy:
    """A Hugging Face causal LM plus its tokenizer, loaded from a local checkpoint directory."""

    def __init__(self, model_path: str, seed: int = 0, lr: float = 3e-4) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the demo shows its own progress
        torch.manual_seed(seed)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False), dtype=np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.eos_id])

    def named_weights(self) -> list[tuple[str, object]]:
        """Detached copies of every parameter, named as in the checkpoint (what SGLang loads)."""
        return [(name, p.detach().clone()) for name, p in self.model.named_parameters()]

    def load_weights(self, named: Sequence[tuple[str, object]]) -> None:
        with self.torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in named:
                params[name].copy_(tensor)

    def _batch(self, prompts: Sequence[np.ndarray], responses: Sequence[np.ndarray]):
        torch = self.torch
        seqs = [np.concatenate([p, r]) for p, r in zip(prompts, responses)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.float32)  # 1 on response tokens
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (p, s) in enumerate(zip(prompts, seqs)):
            ids[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
            attn[i, : len(s)] = 1
            mask[i, len(p) : len(s)] = 1.0
        return ids, attn, mask

    def token_logprobs(self, prompts: Sequence[np.ndarray], responses: Sequence[np.ndarray]):
        """log p(token | prefix) for every position, as a [batch, width] tensor (with grad), and the
        response mask. Position t holds the log-prob of token t (position 0 is 0)."""
        torch = self.torch
        ids, attn, mask = self._batch(prompts, responses)
        logits = self.model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        lp = torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)
        return lp, mask

    def sft_step(self, prompts: Sequence[np.ndarray], targets: Sequence[np.ndarray], max_grad_norm: float | None = None) -> float:
        """One teacher-forced step on (prompt, target) pairs; returns the mean token NLL."""
        lp, mask = self.token_logprobs(prompts, targets)
        loss = -(lp * mask).sum() / mask.sum()
        self.optimizer.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())
