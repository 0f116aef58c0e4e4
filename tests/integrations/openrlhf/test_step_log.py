"""Per-sample metrics, step records and the end-of-run summary."""

import json
from types import SimpleNamespace

import numpy as np

from integrations.openrlhf.step_log import METRIC_NAMES, StepLog, merge_turn_metrics, sample_metrics, summarize, summary_lines


class Stats(SimpleNamespace):
    def to_dict(self):
        return dict(vars(self))


def stats(**kw):
    base = dict(num_rounds=1, policy_version=2, verify_s=0.1, continue_s=0.2, total_s=0.3, num_samples=2,
                num_with_draft=2, num_fully_reused=1, mean_accepted_len=3.0, num_tokens_decoded=5, mode="spec-rl")
    return Stats(**{**base, **kw})


def sample(draft_len=4, accepted=3, full=False, decoded=2):
    return SimpleNamespace(draft_len=draft_len, accepted_len=accepted, fully_reused=full, num_decoded=decoded,
                           response_len=accepted + decoded)


def test_sample_metrics_cover_every_name_and_turns_merge():
    m = sample_metrics(sample(), stats(num_rounds=2), fresh=True)
    assert set(m) == set(METRIC_NAMES) and m["spec_fresh_draw"] == 1.0 and m["spec_rounds"] == 2.0
    total = {}
    merge_turn_metrics(total, m)
    merge_turn_metrics(total, sample_metrics(sample(full=True, accepted=4, decoded=0), stats(policy_version=3), fresh=False))
    assert total["spec_accepted_len"] == 7 and total["spec_decoded_tokens"] == 2 and total["spec_full_reuse"] == 0.0
    assert total["spec_policy_version"] == 3.0


def test_records_go_to_history_and_jsonl(tmp_path):
    path = tmp_path / "steps.jsonl"
    log = StepLog(1, str(path))
    result = SimpleNamespace(samples=[sample(), sample(0, 0)], stats=stats())
    log.add(result, purpose="train", prompt_id="p", fresh_reason=None, temperature=1.0)
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line == log.records[0] and line["engine_index"] == 1 and line["accepted_lens"] == [3, 0]
    assert line["draft_lens"] == [4, 0] and line["response_lens"] == [5, 2]
    assert line["purpose"] == "train" and line["policy_version"] == 2


def test_summary_folds_training_steps_per_engine_and_version():
    log = StepLog(0)
    for pv, fresh in ((1, None), (1, "filtered"), (2, None)):
        log.add(SimpleNamespace(samples=[], stats=stats(policy_version=pv)), purpose="train", prompt_id="p",
                fresh_reason=fresh, temperature=1.0)
    log.add(SimpleNamespace(samples=[], stats=stats()), purpose="eval", prompt_id="e", fresh_reason=None, temperature=0.6)
    rows = summarize(log.records)
    assert [(r["policy_version"], r["num_steps"], r["num_samples"], r["num_fresh"]) for r in rows] == [(1, 2, 4, 2), (2, 1, 2, 0)]
    assert np.isclose(rows[0]["full_reuse_ratio"], 0.5) and rows[0]["mean_accepted_len"] == 3.0
    assert any("1 plain (vanilla) groups" in line for line in summary_lines(log.records))


def test_history_in_memory_is_bounded():
    log = StepLog(0, history_len=2)
    for i in range(5):
        log.add(SimpleNamespace(samples=[], stats=stats(policy_version=i)), purpose="train", prompt_id="p",
                fresh_reason=None, temperature=1.0)
    assert [r["policy_version"] for r in log.records] == [3, 4]
