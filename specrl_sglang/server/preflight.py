"""Everything `serve` checks on disk before the (10-100 s) engine start; a bad value stops it here.

The model's facts (`ModelFacts`: its checkpoint directory, vocabulary, context length, parameter
shapes) come from its checkpoint before an embedded engine starts (`checkpoint_facts`: config.json
and safetensors headers, no engine), or from the connected HttpEngine with --sglang-url
(`engine_facts`: connecting starts nothing). `prepare(config, facts)` then sets up the snapshot
directory (removing temp files of killed snapshot writes), loads and validates the default
snapshot against the model (a corrupt one stops the start: a server never comes up silently
empty), prepares the report (step numbers continue) and the weight-directory allow-list. Errors
are ValueErrors naming the flag; nothing has been started when one is raised.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from radix_cache.snapshot import SnapshotError
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.server.config import ServeConfig
from specrl_sglang.server.sandbox import SnapshotDir, WeightsAllowList
from specrl_sglang.server.schema import MiB, ServerLimits
from specrl_sglang.server.snapshots import load_for_model, restore_report
from specrl_sglang.server.step_log import resume_report
from specrl_sglang.token_checks import ModelLimits
from specrl_sglang.weight_checks import WeightSpec


class ModelFacts(NamedTuple):
    model_dir: Path  # the served checkpoint, readable here
    limits: ModelLimits
    weight_spec: WeightSpec

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for shape in self.weight_spec.shapes.values())


class Prepared(NamedTuple):
    config: ServeConfig
    model: ModelLimits
    model_path: str  # the served checkpoint (--model, --tiny's, or the one the SGLang servers serve)
    limits: ServerLimits
    snapshots: SnapshotDir | None
    weights: WeightsAllowList
    store: TrajectoryStore  # the store to serve from (restored, or empty)
    restored_from: dict[str, Any] | None  # restore_report of the default snapshot, if one was loaded
    next_step: int  # the runtime's first step index (continues the report)
    stale_tmp_removed: list[str]


def checkpoint_facts(model_path: str) -> ModelFacts:
    """The facts of a local checkpoint directory (before an embedded engine starts)."""
    from specrl_sglang.engine import model_facts

    model_dir = Path(model_path).resolve()
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"--model {model_path}: not a Hugging Face checkpoint directory (no config.json)")
    try:
        limits, _ = model_facts(str(model_dir))
        spec = WeightSpec.from_checkpoint(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"--model {model_dir}: cannot read the checkpoint: {exc}") from None
    if spec is None:
        raise ValueError(f"--model {model_dir}: no safetensors weights (weight updates could not be validated)")
    return ModelFacts(model_dir, limits, spec)


def engine_facts(engine: Any, model_path: str | None) -> ModelFacts:
    """The facts a connected HttpEngine read (`model_path`: --model, else the workers' launch path)."""
    if engine.weight_spec is None:
        raise ValueError(f"{engine.description}: no safetensors weights here (weight updates could not be validated); "
                         "pass --model DIR, the checkpoint the servers serve")
    return ModelFacts(Path(model_path or engine.facts[0].model_path).resolve(), engine.limits, engine.weight_spec)


def prepare(config: ServeConfig, facts: ModelFacts) -> Prepared:
    model = facts.limits
    weights_limit = config.max_weights_bytes or facts.num_params * 8 + MiB  # float64 of every parameter, plus framing
    snapshots, removed = _snapshot_dir(config, facts.model_dir)
    report = _report(config, snapshots)
    store, restored = TrajectoryStore(config.store_max_tokens), None
    if snapshots is not None and snapshots.default_path is not None and snapshots.default_path.exists():
        try:
            loaded = load_for_model(snapshots.default_path, config.store_max_tokens, model.vocab_size)
        except (SnapshotError, OSError) as exc:
            raise ValueError(f"--snapshot {snapshots.default_path} is not a usable snapshot ({exc}); "
                             "move it away to start with an empty store") from None
        store, restored = loaded.store, restore_report(snapshots.default_path, loaded)
    return Prepared(config, model, str(facts.model_dir), config.limits(weights_limit), snapshots,
                    WeightsAllowList(config.weights_dirs), store, restored, report, removed)


def _snapshot_dir(config: ServeConfig, model_dir: Path) -> tuple[SnapshotDir | None, list[str]]:
    if config.snapshot_dir is None:
        return None, []
    root = Path(config.snapshot_dir).resolve()
    if root == model_dir or root.is_relative_to(model_dir):
        raise ValueError(f"--snapshot-dir {root} is inside the model directory; give snapshots a directory of their own")
    try:
        root.mkdir(parents=True, exist_ok=True)
        snapshots = SnapshotDir(root, config.snapshot_name)
        return snapshots, snapshots.remove_stale_tmp()
    except OSError as exc:
        raise ValueError(f"--snapshot-dir {root}: {exc}") from None


def _report(config: ServeConfig, snapshots: SnapshotDir | None) -> int:
    if config.report_path is None:
        return 0
    report = Path(config.report_path).resolve()
    if snapshots is not None and report.parent == snapshots.root and report.name.endswith(".snap"):
        raise ValueError(f"--report {report} would be a snapshot name; use another name (e.g. steps.jsonl)")
    if report.exists() and not report.is_file():
        raise ValueError(f"--report {report} is not a regular file")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        with open(report, "a", encoding="utf-8"):  # writable now, not at the first step
            pass
        return resume_report(report)
    except OSError as exc:
        raise ValueError(f"--report {report}: {exc}") from None
