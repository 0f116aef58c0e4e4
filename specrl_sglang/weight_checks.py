"""The one owner of weight-update validation: names, shapes, dtypes and finiteness, before loading.

SGLang loads what it is given: a misnamed tensor is silently skipped, a wrong shape kills the
scheduler (and with it every draft since the last snapshot), NaN weights poison every later rollout,
and an int tensor is cast into a float parameter. So every update is checked here against the
served model's own checkpoint before anything reaches the engine; a refused update changes nothing.

`WeightSpec.from_checkpoint(dir)` reads the safetensors headers (no tensor data) of the model a
runtime serves. `check_checkpoint_dir(spec, dir)` checks a directory offered for
`update_weights_from_disk`: same names and shapes as the model, float dtypes, finite values
(this reads every tensor once; a corrupt file is refused, not loaded).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"})
_TORCH_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class WeightSpec:
    """name -> shape of every parameter the served model loads."""

    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def from_checkpoint(cls, model_path: str | Path, tie_word_embeddings: bool | None = None) -> "WeightSpec | None":
        """The spec of a safetensors checkpoint directory, or None if it has no safetensors files."""
        root = Path(model_path)
        headers = read_headers(root)
        if headers is None:
            return None
        shapes = {name: tuple(meta["shape"]) for name, meta in headers.items()}
        if tie_word_embeddings is None:
            try:
                tie_word_embeddings = bool(json.loads((root / "config.json").read_text()).get("tie_word_embeddings"))
            except (OSError, ValueError):
                tie_word_embeddings = False
        embed = shapes.get("model.embed_tokens.weight")
        if tie_word_embeddings and embed is not None:
            shapes.setdefault("lm_head.weight", embed)  # tied: not stored, but trainers' state dicts carry it
        return cls(shapes)

    def check_metadata(self, names: Sequence[str], dtypes: Sequence[str], shapes: Sequence[Sequence[int]], what: str) -> None:
        """ValueError unless every (name, dtype, shape) is a float tensor of a known parameter's shape."""
        if not len(names) or not (len(names) == len(dtypes) == len(shapes)):
            raise ValueError(f"{what}: names, dtypes and shapes must be equally long and non-empty")
        for name, dtype, shape in zip(names, dtypes, shapes):
            self._check_one(name, str(dtype).replace("torch.", ""), tuple(int(s) for s in shape), what)

    def _check_one(self, name: str, dtype: str, shape: tuple[int, ...], what: str) -> None:
        if name not in self.shapes:
            close = sorted(self.shapes)[:3]
            raise ValueError(f"{what}: the model has no parameter named {name!r} (e.g. {', '.join(close)})")
        if shape != self.shapes[name]:
            raise ValueError(f"{what}: {name} has shape {list(shape)}, the model's is {list(self.shapes[name])}")
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"{what}: {name} has dtype {dtype}; weights must be floating point")


def check_named_tensors(spec: WeightSpec, named: Sequence[tuple[str, Any]], what: str) -> None:
    """Validate (name, tensor) pairs: known names, the model's shapes, float dtypes, finite values."""
    import torch

    if not named:
        raise ValueError(f"{what}: no tensors given")
    seen = set()
    for name, tensor in named:
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{what}: {name} is a {type(tensor).__name__}, not a torch.Tensor")
        if name in seen:
            raise ValueError(f"{what}: {name} is given twice")
        seen.add(name)
        spec._check_one(name, str(tensor.dtype).replace("torch.", ""), tuple(tensor.shape), what)
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{what}: {name} holds NaN or infinite values")


def check_checkpoint_dir(spec: WeightSpec, path: str | Path, what: str = "update_weights_from_disk") -> int:
    """Validate a checkpoint directory for a disk update; returns the number of tensors it holds.

    Every tensor must be a parameter of the model with its shape, a float dtype and finite values;
    at least one parameter must be present (an empty directory is not an update)."""
    root = Path(path)
    headers = read_headers(root)
    if not headers:
        raise ValueError(f"{what}: {root} holds no safetensors weights")
    for name, meta in headers.items():
        spec._check_one(name, _TORCH_NAMES.get(meta["dtype"], meta["dtype"]), tuple(meta["shape"]), what)
    from safetensors import safe_open
    import torch

    for file in sorted(root.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    if not bool(torch.isfinite(handle.get_tensor(name)).all()):
                        raise ValueError(f"{what}: {name} in {file.name} holds NaN or infinite values")
        except ValueError:
            raise
        except Exception as exc:  # safetensors' own errors for truncated / corrupt files
            raise ValueError(f"{what}: cannot read {file.name}: {exc}") from None
    return len(headers)


def read_headers(root: Path) -> dict[str, dict[str, Any]] | None:
    """Merged safetensors headers ({name: {dtype, shape}}) of a directory; None if it has no
    safetensors files. ValueError for an unreadable or inconsistent header."""
    files = sorted(root.glob("*.safetensors")) if root.is_dir() else []
    if not files:
        return None
    merged: dict[str, dict[str, Any]] = {}
    for file in files:
        try:
            with open(file, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size > MAX_HEADER_BYTES:
                    raise ValueError("header too large")
                header = json.loads(f.read(size))
        except (OSError, struct.error, ValueError) as exc:
            raise ValueError(f"{file.name} is not a readable safetensors file: {exc}") from None
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            if not isinstance(meta, dict) or "shape" not in meta or "dtype" not in meta:
                raise ValueError(f"{file.name}: tensor {name!r} has a malformed header entry")
            merged[name] = {"dtype": meta["dtype"], "shape": [int(s) for s in meta["shape"]]}
    return merged
