"""`specrl-sglang stats` on recorded data: server JSONL reports, the demo's report.json, snapshots."""

import dataclasses
import json
import struct

import numpy as np
import pytest

from radix_cache.responses import Response
from radix_cache.snapshot import save_snapshot
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.cli import main
from specrl_sglang.inspect.plot import PANELS, plot_report
from specrl_sglang.inspect.sources import bucket_labels, from_report, from_snapshot
from specrl_sglang.rollout_types import Sample
from specrl_sglang.step_stats import StepCounters, StepTimings, summarize_step

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def step_row(step, rng, kv_hit=True):
    """A row as the server writes it: StepStats of made-up samples plus the store's state."""
    samples = []
    for i in range(8):
        draft = 0 if step == 0 else int(rng.integers(1, 40))
        accepted = int(rng.integers(0, draft + 1))
        length = max(accepted + int(rng.integers(0 if accepted == draft else 1, 10)), 1)
        samples.append(Sample(i // 2, np.zeros(length, np.int32), np.zeros(length, np.float32), draft, accepted,
                              draft > 0 and accepted == draft and length == accepted, "stop"))
    counters = StepCounters(num_verify_requests=8 if step else 0, kv_cached_tokens=90 if kv_hit and step else 0,
                            kv_expected_tokens=100 if kv_hit and step else 0)
    stats = summarize_step(samples, step_index=step, mode="spec-rl", lenience=1.65, policy_version=step, num_prompts=4,
                           counters=counters, timings=StepTimings(verify_s=0.1, continue_s=0.3, total_s=0.45), pipelined=True)
    store = {"num_puts": 4 * (step + 1), "num_lookups": 4 * (step + 1), "num_lookups_with_draft": 4 * step,
             "num_slots_requested": 8 * (step + 1), "num_drafts_returned": 8 * step, "num_draft_tokens_returned": 100 * step,
             "num_evicted_prompts": step, "num_evicted_tokens": 20 * step, "num_prompts": 4, "num_samples": 8,
             "total_tokens": 160, "slot_hit_rate": step / (step + 1), "max_tokens": 200}
    d = stats.to_dict()
    d["kv_hit_ratio"] = None if np.isnan(d["kv_hit_ratio"]) else d["kv_hit_ratio"]
    return {"step": step, "unix_time": 0.0, "queue_s": 0.0, **d, "store": store}


@pytest.fixture
def report_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(step_row(k, rng)) + "\n" for k in range(6)) + '{"step": 6, "trunc')  # killed mid-line
    return path


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_table_from_a_server_report(report_file, capsys):
    assert main(["stats", "--report", str(report_file)]) == 0
    out = capsys.readouterr().out
    assert "server: 6 steps" in out  # the half-written last line is skipped
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["step", "ver", "samples"])
    assert [line.split()[0] for line in lines[header + 2 : header + 8]] == [str(k) for k in range(6)]
    assert "0.90" in lines[header + 3]  # KV hit ratio of step 1
    assert "evicted prompts 5" in out and "tokens 160 / 200" in out
    assert all(label in out for label in bucket_labels([0, 1, 4, 16, 64, 256, 1024]))


def test_plot_and_html_from_a_server_report(report_file, tmp_path, capsys):
    png, page = tmp_path / "out" / "reuse.png", tmp_path / "reuse.html"
    assert main(["stats", "--report", str(report_file), "--plot", str(png), "--html", str(page)]) == 0
    assert png_size(png) == (1200, 800) and png.stat().st_size > 30_000
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.std() > 0.05  # not a blank canvas
    html = page.read_text()
    assert "data:image/png;base64," in html and html.count("<tr>") == 7  # header + 6 steps
    info = plot_report(from_report(report_file), tmp_path / "again.png")
    assert list(info.panels) == list(PANELS)
    assert info.panels[PANELS[0]] == ["full reuse", "drafted", "token reuse"]
    assert info.panels[PANELS[1]] == ["samples"]
    assert info.panels[PANELS[2]] == ["decoded", "reused"]
    assert info.panels[PANELS[3]] == ["KV hit"]


def test_demo_report_draws_one_series_per_arm(tmp_path, capsys):
    rng = np.random.default_rng(1)
    arms = {}
    for arm in ("vanilla", "spec"):
        rows = []
        for k in range(4):
            row = {key: v for key, v in step_row(k, rng, kv_hit=arm == "spec").items() if key not in ("histogram_edges", "store")}
            rows.append({**row, "arm": arm, "epoch": k // 2, "reward": 0.5, "rollout_s": 0.4})
        arms[arm] = {"epochs": [], "steps": rows}
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"config": {"lenience": 1.65}, "arms": arms}, indent=2))
    assert main(["stats", "--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "vanilla: 4 steps" in out and "spec: 4 steps" in out and "trajectory store" not in out
    info = plot_report(from_report(path), tmp_path / "demo.png")
    assert info.panels[PANELS[0]] == ["vanilla: full reuse", "vanilla: drafted", "vanilla: token reuse", "spec: full reuse", "spec: drafted", "spec: token reuse"]
    assert info.panels[PANELS[2]] == ["vanilla: decoded", "vanilla: reused", "spec: decoded", "spec: reused"]
    assert png_size(tmp_path / "demo.png") == (1200, 800)


def test_snapshot_summary(tmp_path, capsys):
    store = TrajectoryStore(max_tokens=None)
    rng = np.random.default_rng(2)
    shared = rng.integers(0, 50, 10)
    for p in range(3):
        responses = [Response(np.concatenate([shared, rng.integers(0, 50, 5)]).astype(np.int32), np.full(15, -1.0, np.float32)) for _ in range(4)]
        store.put(f"p{p}", [1, 2, p], responses)
    path = tmp_path / "store.snap"
    save_snapshot(store, path)
    report = from_snapshot(path)
    assert report.rows == [] and report.contents["num_samples"] == 12 and report.contents["response_len_max"] == 15
    assert report.contents["prefix_sharing"] == 2.0  # per prompt: 4 x 15 sample tokens in 10 shared + 4 x 5 tree tokens
    assert report.store == {**dataclasses.asdict(store.stats()), "slot_hit_rate": 0.0, "max_tokens": None}
    assert main(["stats", "--snapshot", str(path)]) == 0
    assert "snapshot contents: 3 prompts, 12 samples" in capsys.readouterr().out
    assert main(["stats", "--snapshot", str(path), "--plot", str(tmp_path / "x.png")]) == 2  # no steps to plot


def test_unreadable_sources_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"not a snapshot")
    assert main(["stats", "--snapshot", str(bad)]) == 2
    assert main(["stats", "--report", str(tmp_path / "missing.jsonl")]) == 2
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{oops\n{}\n")
    assert main(["stats", "--report", str(garbage)]) == 2
    assert "cannot read the source" in capsys.readouterr().err
