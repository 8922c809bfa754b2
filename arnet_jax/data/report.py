"""The preparation report: what was prepared, what was skipped and why.

Written as `prepare_report.json` and `prepare_report.txt` next to the prepared
dataset (in its version folder) and summarised in one line:
`prepared N, skipped M (too short: 2, missing file: 1)`.
A skip reason reads 'category: detail'; the summary counts categories.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

JSON_NAME = 'prepare_report.json'
TEXT_NAME = 'prepare_report.txt'


def reason_category(reason: str) -> str:
  """'too short: 2 frame(s) ...' -> 'too short'."""
  return reason.split(':', 1)[0].strip()


@dataclasses.dataclass
class PrepareReport:
  """Counts and per-file details of one preparation."""

  dataset: str
  config: str
  source: str  # manual_dir, or 'generated' for the demo
  prepared: dict[str, int] = dataclasses.field(default_factory=dict)  # per split
  skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
  warnings: list[dict[str, str]] = dataclasses.field(default_factory=list)

  def add_prepared(self, split: str) -> None:
    self.prepared[split] = self.prepared.get(split, 0) + 1

  def add_skipped(self, split: str, video_id: str, path: str, reason: str) -> None:
    self.skipped.append({'split': split, 'video_id': video_id, 'path': path, 'reason': reason})

  def add_warning(self, split: str, video_id: str, warning: str) -> None:
    self.warnings.append({'split': split, 'video_id': video_id, 'warning': warning})

  @property
  def num_prepared(self) -> int:
    return sum(self.prepared.values())

  def reason_counts(self) -> dict[str, int]:
    counts = collections.Counter(reason_category(s['reason']) for s in self.skipped)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))  # most frequent first

  def summary(self) -> str:
    """'prepared N, skipped M (reason: count, ...)'."""
    text = f'prepared {self.num_prepared}, skipped {len(self.skipped)}'
    counts = self.reason_counts()
    if counts:
      text += ' (' + ', '.join(f'{k}: {v}' for k, v in counts.items()) + ')'
    return text

  def to_json(self) -> dict:
    return {
        'dataset': self.dataset,
        'config': self.config,
        'source': self.source,
        'prepared': self.num_prepared,
        'skipped': len(self.skipped),
        'prepared_per_split': dict(sorted(self.prepared.items())),
        'skipped_per_reason': self.reason_counts(),
        'skipped_files': self.skipped,
        'warnings': self.warnings,
        'summary': self.summary(),
    }

  def to_text(self) -> str:
    lines = [f'{self.dataset} ({self.config}) from {self.source}', self.summary()]
    for split, n in sorted(self.prepared.items()):
      lines.append(f'  {split}: {n} prepared')
    if self.skipped:
      lines.append('Skipped files:')
      lines += [f'  [{s["split"]}] {s["path"]}: {s["reason"]}' for s in self.skipped]
    if self.warnings:
      lines.append('Warnings (prepared anyway):')
      lines += [f'  [{w["split"]}] {w["video_id"]}: {w["warning"]}' for w in self.warnings]
    return '\n'.join(lines) + '\n'

  def write(self, folder: str) -> str:
    """Writes both files into `folder`; returns the JSON path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, JSON_NAME)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(self.to_json(), f, indent=1)
    with open(os.path.join(folder, TEXT_NAME), 'w', encoding='utf-8') as f:
      f.write(self.to_text())
    return path


def read_report(folder: str) -> dict:
  """The JSON report written in `folder` by `PrepareReport.write`."""
  with open(os.path.join(folder, JSON_NAME), encoding='utf-8') as f:
    return json.load(f)
