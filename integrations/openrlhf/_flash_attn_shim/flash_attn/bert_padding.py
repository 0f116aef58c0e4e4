"""Pure-torch versions of flash-attn's padding helpers (same signatures and results)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange  # flash_attn.bert_padding re-exports einops' rearrange; OpenRLHF imports it from here

__all__ = ["index_first_axis", "pad_input", "unpad_input", "rearrange"]


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`tensor[indices]` along the first axis (flash-attn wraps this in an autograd Function)."""
    return tensor[indices]


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: torch.Tensor | None = None):
    """(batch, seqlen, ...) + mask (batch, seqlen) -> (total_nnz, ...), indices, cu_seqlens, max_seqlen, seqused.

    Returns the five values of flash-attn >= 2.7: the packed rows, their flat indices, cumulative sequence
    lengths (int32, leading 0), the longest sequence, and the per-sequence used lengths (int32).
    """
    all_masks = (attention_mask + unused_mask) if unused_mask is not None else attention_mask
    seqlens_in_batch = all_masks.sum(dim=-1, dtype=torch.int32)
    used_seqlens_in_batch = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(all_masks.flatten(), as_tuple=False).flatten()
    max_seqlen_in_batch = int(seqlens_in_batch.max().item()) if seqlens_in_batch.numel() else 0
    cu_seqlens = F.pad(torch.cumsum(seqlens_in_batch, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(hidden_states.shape[0] * hidden_states.shape[1], *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen_in_batch, used_seqlens_in_batch


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of unpad_input: scatter (total_nnz, ...) rows back into zeros of (batch, seqlen, ...)."""
    output = torch.zeros(batch * seqlen, *hidden_states.shape[1:], device=hidden_states.device, dtype=hidden_states.dtype)
    output[indices] = hidden_states
    return output.reshape(batch, seqlen, *hidden_states.shape[1:])
