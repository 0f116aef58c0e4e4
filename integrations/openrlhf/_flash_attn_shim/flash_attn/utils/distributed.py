"""Ring-attention collectives of flash-attn: not available on CPU (they are never called without --ds.ring_attn_size > 1)."""


def all_gather(*args, **kwargs):
    raise NotImplementedError(
        "flash_attn.utils.distributed.all_gather is a CPU stand-in (integrations/openrlhf/_flash_attn_shim): "
        "ring attention needs the real flash-attn on GPU"
    )
