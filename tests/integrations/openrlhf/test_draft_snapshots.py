"""Checkpoint layout of the draft store: shard meta and manifest files, atomic writes."""

import json
import os

import pytest

from integrations.openrlhf.draft_snapshots import (
    MANIFEST, ShardMeta, drafts_dir, read_manifest, read_meta, shard_paths, write_json_atomic, write_manifest, write_meta,
)


def test_layout_and_meta_round_trip(tmp_path):
    d = drafts_dir(tmp_path, "global_step4")
    assert d == tmp_path / "_specrl_drafts" / "global_step4"
    snap, meta_path = shard_paths(d, 1, 2)
    assert snap.name == "shard1-of-2.snap" and meta_path.name == "shard1-of-2.json"
    meta = ShardMeta(1, 2, 17, ("a", "b"), 5)
    write_meta(meta_path, meta)
    assert read_meta(meta_path) == meta and read_meta(meta_path).with_num_steps(20).num_steps == 20


def test_a_directory_without_manifest_is_incomplete(tmp_path):
    assert read_manifest(tmp_path) is None
    write_manifest(tmp_path, "t", 2, [{"engine_index": 0}, {"engine_index": 1}])
    assert read_manifest(tmp_path)["num_shards"] == 2
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other"}))
    assert read_manifest(tmp_path) is None


def test_atomic_json_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["x.json"]


def test_meta_of_another_format_is_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "nope"}))
    with pytest.raises(ValueError, match="format"):
        read_meta(path)
