"""The draft store inside OpenRLHF checkpoints: layout, shard files, manifest.

A checkpoint tagged T (DeepSpeed's tag, e.g. "global_step4", written to `{ckpt.path}/_actor/T`)
gets `{ckpt.path}/_specrl_drafts/T/`, holding per engine shard i of n:
- `shard{i}-of-{n}.snap`: the shard's TrajectoryStore in `radix_cache.snapshot` format (the same
  file `specrl-sglang serve --snapshot` writes), written atomically (temp file + fsync + rename);
- `shard{i}-of-{n}.json`: `ShardMeta`, the engine state besides the store that decides how the
  next steps draft: the runtime's step counter (step k draws its acceptance randomness from
  (seed, k)) and the prompts to draw fresh (fresh_draws). Written atomically too.
and `manifest.json` (atomic, written last by the trainer once every shard is in): a directory
without it is an incomplete save and is never loaded.

The step counter is the one a resumed run needs at its first rollout. OpenRLHF's sync trainer
saves, then evaluates, then rolls out; evaluation steps advance the counter. So an engine rewrites
its shard's meta with the counter it has when its next training step starts (`pending_meta`):
the resumed run then starts exactly where the uninterrupted run's next rollout did.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DRAFTS_DIR = "_specrl_drafts"
MANIFEST = "manifest.json"
FORMAT = "specrl-openrlhf-drafts/1"


@dataclass(frozen=True)
class ShardMeta:
    engine_index: int
    num_shards: int
    num_steps: int  # the runtime's step counter for the next rollout step
    fresh_ids: tuple[str, ...]  # prompts drawn fresh next time (DAPO-filtered)
    num_prompts: int
    format: str = FORMAT

    def with_num_steps(self, num_steps: int) -> "ShardMeta":
        return ShardMeta(self.engine_index, self.num_shards, num_steps, self.fresh_ids, self.num_prompts)


def drafts_dir(ckpt_path: str | os.PathLike, tag: str) -> Path:
    return Path(ckpt_path) / DRAFTS_DIR / tag


def shard_paths(directory: str | os.PathLike, index: int, num_shards: int) -> tuple[Path, Path]:
    base = Path(directory) / f"shard{index}-of-{num_shards}"
    return base.with_suffix(".snap"), base.with_suffix(".json")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_meta(path: Path, meta: ShardMeta) -> None:
    write_json_atomic(path, {**asdict(meta), "fresh_ids": list(meta.fresh_ids)})


def read_meta(path: Path) -> ShardMeta:
    raw = json.loads(Path(path).read_text())
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    return ShardMeta(int(raw["engine_index"]), int(raw["num_shards"]), int(raw["num_steps"]),
                     tuple(raw["fresh_ids"]), int(raw["num_prompts"]))


def write_manifest(directory: Path, tag: str, num_shards: int, shard_metas: list[dict[str, Any]]) -> None:
    write_json_atomic(directory / MANIFEST, {"format": FORMAT, "tag": tag, "num_shards": num_shards,
                                             "shards": shard_metas})


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a complete save, or None if the directory holds none (or an incomplete one)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    return manifest if manifest.get("format") == FORMAT else None


class ShardCheckpoints:
    """Engine side: this engine's shard written into / read from checkpoint draft directories.

    `save` snapshots the shard on the rollout loop (between two store operations of any steps in
    flight) and writes its meta; `refresh` (called when the next training step starts) rewrites the
    metas saved since with the step counter that step starts with (see module docstring).
    """

    def __init__(self, runtime: Any, index: int) -> None:
        self.runtime, self.index = runtime, index
        self._pending: list[tuple[Path, ShardMeta]] = []

    async def save(self, directory: str, num_shards: int, fresh_ids: set[str]) -> ShardMeta:
        from radix_cache.snapshot import save_snapshot

        snap, meta_path = shard_paths(directory, self.index, num_shards)

        def save(store: Any) -> int:
            save_snapshot(store.local, snap)
            return len(list(store.local.prompt_ids()))

        num_prompts = await self.runtime.astore_call(save)
        meta = ShardMeta(self.index, num_shards, self.runtime.num_steps, tuple(sorted(fresh_ids)), num_prompts)
        write_meta(meta_path, meta)
        self._pending.append((meta_path, meta))
        return meta

    def refresh(self) -> None:
        pending, self._pending = self._pending, []
        for path, meta in pending:
            if path.parent.is_dir():  # not rotated away meanwhile
                write_meta(path, meta.with_num_steps(self.runtime.num_steps))

    def load(self, directory: str, num_shards: int) -> tuple[Any, ShardMeta]:
        """(the shard's TrajectoryStore, its meta); SnapshotError / ValueError if unreadable."""
        from radix_cache.snapshot import load_snapshot

        snap, meta_path = shard_paths(directory, self.index, num_shards)
        meta = read_meta(meta_path)
        if (meta.engine_index, meta.num_shards) != (self.index, num_shards):
            raise ValueError(f"{meta_path} is shard {meta.engine_index} of {meta.num_shards}, "
                             f"not {self.index} of {num_shards}")
        return load_snapshot(snap), meta
