"""The snapshot directory and the weight allow-list without a server: ownership survives restarts,
stale temp files go, nothing outside is reachable."""

import os

import pytest

from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.sandbox import MANIFEST_NAME, SnapshotDir, WeightsAllowList


def test_ownership_is_recorded_and_survives_a_restart(tmp_path):
    d = SnapshotDir(tmp_path, "store.snap")
    (tmp_path / "mine.snap").write_bytes(b"x")
    with pytest.raises(ApiError) as err:  # exists, not created by the server
        d.resolve("mine.snap", for_write=True)
    assert err.value.status == 409
    target = d.resolve("new.snap", for_write=True)
    target.write_bytes(b"snapshot")
    d.claim(target)
    again = SnapshotDir(tmp_path, "store.snap")  # a restarted server
    assert again.owns("new.snap") and again.owns("store.snap") and not again.owns("mine.snap")
    assert again.resolve("new.snap", for_write=True) == tmp_path / "new.snap"


def test_a_name_is_owned_from_the_accepted_write_on(tmp_path):
    # two requests for one new file: the second is resolved after the first's write landed, before
    # that write finished (the race the concurrent-snapshot test of the server hit)
    d = SnapshotDir(tmp_path)
    first = d.resolve("shared.snap", for_write=True)
    assert d.owns("shared.snap")
    first.write_bytes(b"half-finished write")
    assert d.resolve("shared.snap", for_write=True) == first
    assert SnapshotDir(tmp_path).owns("shared.snap")  # recorded on disk, not only in memory


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    for name in (".store.snap.abc123.tmp", ".other.snap.x.tmp", "keep.tmp", ".notes.txt.1.tmp", "a.snap"):
        (tmp_path / name).write_bytes(b"")
    removed = SnapshotDir(tmp_path).remove_stale_tmp()
    assert removed == [".other.snap.x.tmp", ".store.snap.abc123.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".notes.txt.1.tmp", "a.snap", "keep.tmp"]


def test_a_corrupt_manifest_stops_the_start(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        SnapshotDir(tmp_path)


def test_default_name_must_be_a_snapshot_name(tmp_path):
    with pytest.raises(ValueError, match="--snapshot must be a plain file name"):
        SnapshotDir(tmp_path, "../store.snap")


def test_weights_allow_list(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "ckpt").mkdir(parents=True)
    outside.mkdir()
    wl = WeightsAllowList([allowed])
    assert wl.resolve(str(allowed / "ckpt")) == (allowed / "ckpt").resolve()
    assert wl.resolve(str(allowed)) == allowed.resolve()
    for bad in (str(outside), str(allowed / ".." / "outside"), "/"):
        with pytest.raises(ApiError, match="outside the allowed"):
            wl.resolve(bad)
    with pytest.raises(ApiError, match="loads no weights from disk"):
        WeightsAllowList().resolve(str(allowed))
    with pytest.raises(ValueError, match="--weights-dir"):
        WeightsAllowList([tmp_path / "missing"])
