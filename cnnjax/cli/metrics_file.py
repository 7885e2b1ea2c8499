"""`cnnjax train --metrics-out FILE`: one JSON line per epoch, kept in epoch order across resumes."""
from __future__ import annotations

import json
import os
import tempfile


class MetricsFile:
    """`--metrics-out`: one JSON line per epoch, in epoch order, one line per epoch. Writing epoch E drops any
    line of epoch E or later (a resumed run that fell back to an older checkpoint trains those epochs again), and
    the whole file is replaced atomically. On resume, the epochs of the checkpoint's `history` that the file
    lacks (a run killed between an epoch's checkpoint and its line) are written back first."""

    def __init__(self, path: str, *, resume: bool, history: dict | None = None):
        self.path = path
        self.records: list[dict] = []
        if resume and os.path.exists(path):
            with open(path) as f:
                for text in f:
                    try:
                        record = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and "epoch" in record:
                        self.records.append(record)
        have = {r["epoch"] for r in self.records}
        for i, epoch in enumerate((history or {}).get("epoch", [])):
            if epoch not in have:
                self.records.append({k: v[i] for k, v in history.items() if i < len(v)})
        self.records.sort(key=lambda r: r["epoch"])
        self._flush()

    def write(self, record: dict) -> None:
        self.records = [r for r in self.records if r["epoch"] < record["epoch"]] + [dict(record)]
        self._flush()

    def _flush(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".metrics-", delete=False) as f:
            for record in self.records:
                f.write(_metric_line(record) + "\n")
        os.replace(f.name, self.path)


def _metric_line(record: dict) -> str:
    line = {k: v for k, v in record.items() if not k.endswith("_members")}
    line.update({k: v for k, v in record.items() if k.endswith("_members")})
    return json.dumps(line)
