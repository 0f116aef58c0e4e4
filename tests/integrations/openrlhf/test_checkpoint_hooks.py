"""Trainer-side checkpoint plumbing: DeepSpeed's latest tag, pruning draft saves with their checkpoints.

(The wrapped OpenRLHF trainer saving and restoring drafts runs in test_e2e_cpu.py; the wrappers
are installed and checked in a fresh worker-like process in test_worker_setup.py.)
"""

from integrations.openrlhf.checkpoint_hooks import latest_tag, load_drafts, prune
from integrations.openrlhf.draft_snapshots import drafts_dir


def test_latest_tag_follows_deepspeeds_file(tmp_path):
    assert latest_tag(str(tmp_path)) is None
    (tmp_path / "_actor").mkdir()
    (tmp_path / "_actor" / "latest").write_text("global_step2\n")
    tag, mtime = latest_tag(str(tmp_path))
    assert tag == "global_step2" and mtime > 0


def test_draft_saves_are_pruned_with_their_deepspeed_checkpoints(tmp_path):
    for tag in ("global_step2", "global_step4", "best_global_step2"):
        drafts_dir(tmp_path, tag).mkdir(parents=True)
    for tag in ("global_step4", "best_global_step2"):
        (tmp_path / "_actor" / tag).mkdir(parents=True)
    assert prune(str(tmp_path)) == ["global_step2"]
    assert sorted(p.name for p in (tmp_path / "_specrl_drafts").iterdir()) == ["best_global_step2", "global_step4"]


def test_resuming_without_a_complete_draft_save_goes_on_without_drafts(tmp_path):
    (tmp_path / "_actor").mkdir()
    assert "no DeepSpeed checkpoint tag" in load_drafts([], str(tmp_path))
    (tmp_path / "_actor" / "latest").write_text("global_step2")
    drafts_dir(tmp_path, "global_step2").mkdir(parents=True)  # shards written, manifest missing
    assert "no complete draft save" in load_drafts([], str(tmp_path))
