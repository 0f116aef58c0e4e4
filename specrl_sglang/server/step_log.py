"""The server's record of rollout steps: an in-memory history for GET /stats and the JSONL report.

One row per finished step (StepStats' fields, `step` = the runtime's step index, the unix time and
the store's state), appended to `report_path` as soon as the step ends, so `specrl-sglang stats
--report` can read it while the server runs or after it died. Concurrent steps finish in any
order, so rows are in completion order. Called from the server's event loop only.

`resume_report(path)` prepares an existing report for a restarted server: it drops a row cut off
by a crash mid-write and returns the next step index (step numbers, and with them the acceptance
randomness keyed by step, continue instead of repeating).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from specrl_sglang.plain_json import dumps, plain


def resume_report(path: str | Path | None) -> int:
    """Truncate a partial last line of the report; return max(step) + 1 over its rows (0 if none)."""
    if path is None or not Path(path).exists():
        return 0
    data = Path(path).read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        with open(path, "r+b") as f:
            f.truncate(complete)
    next_step = 0
    for number, line in enumerate(data[:complete].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"report {path}:{number} is not a JSON line; move the file away or fix it") from None
        step = row.get("step") if isinstance(row, dict) else None
        next_step = max(next_step, step + 1 if isinstance(step, int) and step >= 0 else number)
    return next_step


class StepLog:
    def __init__(self, report_path: str | Path | None, history_len: int = 10_000) -> None:
        self.report_path = None if report_path is None else Path(report_path)
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history_len)
        self.num_rows = 0

    def append(self, row: dict[str, Any]) -> None:
        row = plain(row)
        self._history.append(row)
        self.num_rows += 1
        if self.report_path is not None:
            with open(self.report_path, "a", encoding="utf-8") as f:
                f.write(dumps(row) + "\n")

    def since(self, step: int) -> list[dict[str, Any]]:
        """Rows with `step >= step`, in completion order (at most `history_len` kept)."""
        return [r for r in self._history if r["step"] >= step]
