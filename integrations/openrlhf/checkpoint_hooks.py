"""Tie the draft store to OpenRLHF's checkpoints: saved with `--ckpt.save_steps`, restored with
`--ckpt.load_enable` (trainer side; the layout is in draft_snapshots.py).

OpenRLHF has no hook for extra checkpoint state, so `install()` wraps three methods of its
`BasePPOTrainer` (openrlhf/trainer/ppo_trainer.py, the base of the sync PPOTrainer and the async
TrainingActor), keeping what they do and adding:
- `save_logs_and_checkpoints` and `save_best_checkpoint`: if the call wrote a DeepSpeed checkpoint
  (the `{ckpt.path}/_actor/latest` tag file changed), every engine saves its shard into
  `_specrl_drafts/<tag>/`, then the manifest is written; draft directories whose DeepSpeed
  checkpoint OpenRLHF rotated away (`--ckpt.max_num`, `--ckpt.max_mem`) are deleted.
- `init_checkpoint_states`: when OpenRLHF resumes (`--ckpt.load_enable`, global_step > 0), every
  engine loads its shard of the tag DeepSpeed loaded (the `latest` file); a missing or incomplete
  draft save is reported and the run goes on without drafts (as a first epoch would).
The wrapped methods run in OpenRLHF's trainer actor, installed by worker_setup on every Ray worker
of a sglang-spec run; the engines' `save_drafts` / `load_drafts` do the shard I/O.
Guarantee (sync trainer): the resumed run's first rollout sees exactly the drafts, the acceptance
randomness and the fresh-draw marks the uninterrupted run's next rollout saw. Async trainer: the
save is a consistent snapshot, but the generator may already have rolled out past the checkpoint.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from integrations.openrlhf.draft_snapshots import DRAFTS_DIR, drafts_dir, read_manifest, write_manifest

_WRAPPED = "_specrl_checkpoint_hook"


def latest_tag(ckpt_path: str) -> tuple[str, int] | None:
    """(tag, mtime_ns) of DeepSpeed's `latest` file under `{ckpt_path}/_actor`, or None."""
    path = Path(ckpt_path) / "_actor" / "latest"
    try:
        return path.read_text().strip(), path.stat().st_mtime_ns
    except OSError:
        return None


def save_drafts(engines: list, ckpt_path: str, tag: str) -> Path:
    import ray

    directory = drafts_dir(ckpt_path, tag)
    if directory.exists():
        shutil.rmtree(directory)  # a re-save of the same tag replaces the old one
    directory.mkdir(parents=True)
    metas = ray.get([engine.save_drafts.remote(str(directory)) for engine in engines])
    write_manifest(directory, tag, len(engines), metas)
    prune(ckpt_path)
    return directory


def prune(ckpt_path: str) -> list[str]:
    """Delete draft saves whose DeepSpeed checkpoint no longer exists; returns their tags."""
    root, actor = Path(ckpt_path) / DRAFTS_DIR, Path(ckpt_path) / "_actor"
    gone = [d for d in root.iterdir() if d.is_dir() and not (actor / d.name).is_dir()] if root.is_dir() else []
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return [d.name for d in gone]


def load_drafts(engines: list, ckpt_path: str) -> str:
    """Load the drafts of the checkpoint DeepSpeed resumes from; returns what happened (logged)."""
    import ray

    latest = latest_tag(ckpt_path)
    if latest is None:
        return "no DeepSpeed checkpoint tag found: starting without drafts"
    directory = drafts_dir(ckpt_path, latest[0])
    manifest = read_manifest(directory)
    if manifest is None:
        return f"no complete draft save in {directory}: starting without drafts"
    if manifest["num_shards"] != len(engines):
        return (f"{directory} has {manifest['num_shards']} shards for {len(engines)} engines "
                "(--vllm.num_engines changed): starting without drafts")
    counts = ray.get([engine.load_drafts.remote(str(directory)) for engine in engines])
    return f"restored {sum(counts)} prompts' drafts from {directory}"


def _on_save(method):
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any):
        ckpt_path = self.args.ckpt.path
        before = latest_tag(ckpt_path)
        result = method(self, *args, **kwargs)
        after = latest_tag(ckpt_path)
        if self.vllm_engines and after is not None and after != before:
            print(f"[specrl] draft store saved to {save_drafts(self.vllm_engines, ckpt_path, after[0])}", flush=True)
        return result

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _on_init(method):
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any):
        states = method(self, *args, **kwargs)
        if self.args.ckpt.load_enable and self.vllm_engines and (states or {}).get("global_step", 0) > 0:
            print(f"[specrl] {load_drafts(self.vllm_engines, self.args.ckpt.path)}", flush=True)
        return states

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def install() -> None:
    """Wrap OpenRLHF's BasePPOTrainer (idempotent); see module docstring."""
    from openrlhf.trainer.ppo_trainer import BasePPOTrainer

    for name, wrap in (("save_logs_and_checkpoints", _on_save), ("save_best_checkpoint", _on_save),
                       ("init_checkpoint_states", _on_init)):
        method = getattr(BasePPOTrainer, name)
        if not getattr(method, _WRAPPED, False):
            setattr(BasePPOTrainer, name, wrap(method))
