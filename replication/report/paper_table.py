"""The paper's published numbers (``tables/paper/*.csv``), read for the table specs and the renderer.

A paper table has the columns ``method,generator,<metric keys>``: one line per row of the
paper's Tables 1–3 (``baseline``, the four labeling rules × the two GANs, and literature rows
such as WARP or CNN-RNN with an empty generator). An empty cell is a value the paper does not
report ("-"). Values are percentages as printed in the paper.

This module sits below both :mod:`replication.experiments.spec` (which checks that a spec's
columns and literature rows exist in its CSV) and :mod:`replication.report.table` (which renders them).
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from replication.errors import ConfigError
from replication.vocabulary import BASELINE, METRIC_KEYS, parse_row


@dataclass(frozen=True)
class PaperTable:
    """The paper's numbers: ``values[(method, generator)][metric]`` (None where the paper has "-")."""

    path: Path
    columns: tuple[str, ...]
    values: Mapping[tuple[str, str | None], Mapping[str, float | None]]

    @property
    def literature(self) -> tuple[str, ...]:
        """Methods shown from the literature only (no generator, not the baseline)."""
        return tuple(m for (m, g) in self.values if g is None and m != BASELINE)

    def get(self, row: str, metric: str) -> float | None:
        """The paper's value of ``metric`` for a row id (``baseline``, ``spl/dcgan``) or literature name."""
        key = parse_row(row) if row == BASELINE or "/" in row else (row, None)
        return self.values.get(key, {}).get(metric)


def read_paper_table(path: str | Path) -> PaperTable:
    """Read one of ``tables/paper/*.csv`` (columns ``method,generator,<metric keys>``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: paper table not found")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if header[:2] != ["method", "generator"]:
            raise ConfigError(f"{p}: a paper table starts with columns 'method,generator'")
        columns = tuple(header[2:])
        bad = [c for c in columns if c not in METRIC_KEYS]
        if bad:
            raise ConfigError(f"{p}: unknown metric column {bad[0]!r}")
        values: dict[tuple[str, str | None], dict[str, float | None]] = {}
        for rec in reader:
            key = (rec["method"], rec["generator"] or None)
            try:
                values[key] = {c: (float(rec[c]) if rec[c] else None) for c in columns}
            except ValueError as e:
                raise ConfigError(f"{p}: line {reader.line_num}: {e}") from None
    return PaperTable(path=p, columns=columns, values=values)
