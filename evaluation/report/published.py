"""The paper's published Tables 1–3 as data, printed under our tables with the same rows
and columns, and the qualitative checks the paper draws from them.

The values live in ``evaluation/report/data/paper_tables.csv`` (shipped with the
package; one line per cell: ``table, model, row, task, metric, mean, std``, the numbers
exactly as printed in the paper). Only cells read off the paper belong there; a table
without lines is reported as "not shipped", never filled in.

Checks (paper Sec. 5 reads its tables this way): per task and metric, is the cleaned
video closer to the normal one than the sensor video, measured against the baseline —
``|N–C − N–N| < |N–S − N–N|`` — and the share of the sensor's gap that the cleaning
closes, ``(N–S − N–C) / (N–S − N–N)`` (1: down to the baseline; 0: no better than the
sensor video; above 1: closer than a second normal recording). N–S and N–C are the
means of the sessions' rows Nk–Sk and Nk–Ck.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.pairs import KIND_LABELS
from evaluation.report.tables import METRIC_LABELS, SEGMENT_LABELS, Table

#: The shipped data file.
PUBLISHED_CSV: Path = Path(__file__).with_name("data") / "paper_tables.csv"
COLUMNS: tuple[str, ...] = ("table", "model", "row", "task", "metric", "mean", "std")
#: The paper's emotion model (Table 3 has one block).
PAPER_EMOTION_MODEL = "resmasknet"
_METRICS = {1: ("lpips", "fid"), 2: ("dtw", "mape"), 3: ("dtw", "mape")}
_ROWS = ("N1–N2", "N1–S1", "N1–C1", "N2–S2", "N2–C2")
_TASKS = ("schaede", "emotion", "sentence")
#: How the paper's models are printed.
PAPER_MODEL_LABELS: dict[str, str] = {"rdf": "RDF", "jaa-net": "JAA-Net", "resmasknet": "ResMaskNet"}


class PublishedDataError(ValueError):
    """The data file of the paper's values is malformed; the message names file and line."""


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's cells (``COLUMNS``; rows with ASCII ``-`` or ``–`` both read as
    ``N1–N2`` …), validated: a bad line raises :class:`PublishedDataError` naming the
    file, the line and the field."""
    path = Path(path) if path is not None else PUBLISHED_CSV
    try:
        df = pd.read_csv(
            path, comment="#", dtype={"model": str, "row": str, "task": str, "metric": str}, keep_default_na=False
        )
    except FileNotFoundError as e:
        raise PublishedDataError(f"{path}: the data file of the paper's tables is missing") from e
    if tuple(df.columns) != COLUMNS:
        raise PublishedDataError(f"{path}: columns must be {','.join(COLUMNS)}, got {','.join(map(str, df.columns))}")
    header = _header_line(path)
    out = []
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path}, line {header + 1 + i}"
        try:
            table = int(r.table)
        except ValueError as e:
            raise PublishedDataError(f"{where}: table must be 1, 2 or 3, got {r.table!r}") from e
        row = str(r.row).replace("-", "–")
        checks = (
            ("table", table in _METRICS, "1, 2 or 3"),
            ("row", row in _ROWS, ", ".join(_ROWS)),
            ("task", r.task in _TASKS, ", ".join(_TASKS)),
            ("metric", table in _METRICS and r.metric in _METRICS[table], "the table's metrics"),
            ("model", (r.model == "") == (table == 1), "empty for Table 1, the paper's model otherwise"),
        )
        for field, ok, expected in checks:
            if not ok:
                raise PublishedDataError(f"{where}: {field} {getattr(r, field)!r} is not one of {expected}")
        try:
            mean, std = float(r.mean), (math.nan if str(r.std) == "" else float(r.std))
        except ValueError as e:
            raise PublishedDataError(f"{where}: mean and std must be numbers, got {r.mean!r}, {r.std!r}") from e
        out.append(
            {"table": table, "model": r.model, "row": row, "task": r.task, "metric": r.metric, "mean": mean, "std": std}
        )
    result = pd.DataFrame(out, columns=list(COLUMNS))
    dup = result.duplicated(["table", "model", "row", "task", "metric"])
    if dup.any():
        r = result[dup].iloc[0]
        raise PublishedDataError(
            f"{path}: the cell table {r.table}, {r.model or '-'}, {r.row}, {r.task}, {r.metric} is given twice"
        )
    return result


def _header_line(path: Path) -> int:
    """1-based line number of the CSV header (after the comment lines)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("#"):
                return n
    return 1


def paper_model(table: int, our_model: str) -> str:
    """The paper's model that our AU model's block is set against: Table 1 none, Table 2
    the paper's AU model it stands for (:data:`evaluation.metrics.facial.PAPER_AU_LIST`), Table 3
    the paper's one emotion model."""
    if table == 1:
        return ""
    if table == 3:
        return PAPER_EMOTION_MODEL
    from evaluation.metrics.facial import PAPER_AU_LIST

    return PAPER_AU_LIST.get(our_model, "")


def published_block(ours: Table, published: pd.DataFrame, table: int, model: str) -> Table | None:
    """The paper's cells in the layout of ``ours`` (same rows, same task × metric
    columns, the same precision); None when the data has no cell for it."""
    d = published[(published["table"] == table) & (published["model"] == model)]
    if d.empty:
        return None
    mean = pd.DataFrame(np.nan, index=ours.mean.index, columns=ours.mean.columns)
    std = mean.copy()
    for r in d.itertuples(index=False):
        key = (r.task, r.metric)
        if r.row in mean.index and key in mean.columns:
            mean.at[r.row, key], std.at[r.row, key] = r.mean, r.std
    count = pd.DataFrame(np.nan, index=mean.index, columns=mean.columns)
    label = f", {PAPER_MODEL_LABELS.get(model, model)}" if model else ""
    return Table(
        f"paper_{ours.name}", f"Paper, Table {table}{label} — as published", "", mean, std, count, ours.formats
    )


def qualitative_checks(t: Table) -> dict[tuple[str, str], tuple[bool, float] | None]:
    """Per (task, metric) column: (N–C closer to N–N than N–S, share of the gap closed);
    None where a row is missing."""
    base = KIND_LABELS["baseline"]
    sensor = [r for r in t.mean.index if "–S" in r]
    clean = [r for r in t.mean.index if "–C" in r]
    out: dict[tuple[str, str], tuple[bool, float] | None] = {}
    for col in t.mean.columns:
        nn = t.mean.at[base, col] if base in t.mean.index else math.nan
        ns = (
            float(np.nanmean(t.mean.loc[sensor, col].to_numpy(float)))
            if sensor and t.mean.loc[sensor, col].notna().any()
            else math.nan
        )
        nc = (
            float(np.nanmean(t.mean.loc[clean, col].to_numpy(float)))
            if clean and t.mean.loc[clean, col].notna().any()
            else math.nan
        )
        if any(math.isnan(v) for v in (nn, ns, nc)):
            out[col] = None
            continue
        closer = abs(nc - nn) < abs(ns - nn)
        gap = ns - nn
        out[col] = (closer, (ns - nc) / gap if gap != 0 else math.nan)
    return out


def checks_markdown(ours: Table, paper: Table | None) -> str:
    """The checks of our table and of the paper's block, one line each, as a Markdown
    table with the same columns."""
    cols = list(ours.mean.columns)
    head = "| check |" + "|".join(f" {SEGMENT_LABELS.get(g, g)} {METRIC_LABELS.get(m, m)} " for g, m in cols) + "|"
    lines = [head, "|---|" + "|".join("---:" for _ in cols) + "|"]
    for who, t in (("ours", ours), ("paper", paper)):
        if t is None:
            continue
        c = qualitative_checks(t)
        cells = []
        for col in cols:
            v = c.get(col)
            cells.append("–" if v is None else f"{'yes' if v[0] else 'no'} ({v[1]:.2f})")
        lines.append(f"| {who}: N–C closer to N–N than N–S (gap closed) |" + "|".join(f" {x} " for x in cells) + "|")
    return "\n".join(lines)
