"""Reports over a sweep's grid points: the paper's tables per grid point (mean ± std over
subjects) and one table comparing the grid points.

A sweep writes one run folder per subject × grid point, ``<root>/<subject>/<point>``,
each with the post-fit evaluation in ``<run>/evaluation``. ``python -m evaluation report
ROOT/*/<point>`` then reports one grid point over all subjects (the paper's Tables 1–3 for
that setting); ``ROOT/*/*`` reports every grid point into ``<out>/<point>/`` and compares
them in ``<out>/grid_points.md`` / ``grid_points.csv``: the same cells as the paper's
tables, one block of rows per grid point, so a hyperparameter's effect reads down a column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluation.protocol import read_results
from evaluation.report import ReportError, Table, groundtruth_table, make_report, paper_tables
from evaluation.report.output import _write_csv, _write_text

RESULTS_CSV = "results.csv"
#: Where the post-fit benchmark writes a run's evaluation (``<run>/evaluation``).
RUN_EVALUATION_DIR = "evaluation"
GRID_FILE = "grid_points"


def results_folder(path: Path) -> tuple[Path, str | None]:
    """The results folder behind ``path`` and its grid point: a ``python -m evaluation
    run`` folder is itself (no grid point); a run folder ``<root>/<subject>/<point>``
    holds its results in ``evaluation/`` and is named for its grid point."""
    path = Path(path)
    if (path / RESULTS_CSV).is_file() or (path.is_file() and path.suffix == ".csv"):
        return path, None
    if (path / RUN_EVALUATION_DIR / RESULTS_CSV).is_file():
        return path / RUN_EVALUATION_DIR, path.name
    raise ReportError(
        f"{path}: no {RESULTS_CSV} here nor in {path / RUN_EVALUATION_DIR} "
        "(run `python -m evaluation run --out ...` or let the fit's post-fit benchmark finish)"
    )


def group_by_grid_point(paths: Sequence[str | Path]) -> dict[str | None, list[Path]]:
    """Results folders grouped by grid point, in the order first seen."""
    groups: dict[str | None, list[Path]] = {}
    for p in paths:
        folder, point = results_folder(Path(p))
        groups.setdefault(point, []).append(folder)
    return groups


def compared_tables(df: pd.DataFrame) -> list[Table]:
    """The tables a grid-point comparison shows: Tables 1–3 in the paper's layout, and
    the ground-truth table where the subjects have ground truth."""
    return [*paper_tables(df), *(t for t in (groundtruth_table(df),) if t is not None)]


def compare_grid_points(groups: dict[str, list[Path]]) -> tuple[str, pd.DataFrame]:
    """Markdown and tidy rows of the grid-point comparison: per paper table, the rows of
    every grid point (mean ± std over that grid point's subjects)."""
    per_point = {point: compared_tables(read_results(dirs)) for point, dirs in groups.items()}
    names = list(dict.fromkeys(t.name for tables in per_point.values() for t in tables))
    md = [
        "# Sensor removal — grid points compared",
        "",
        f"Grid points ({len(groups)}): {', '.join(groups)}. Each cell: mean ± std over the grid point's subjects.",
        "",
    ]
    tidy = []
    for name in names:
        found = {p: t for p, tables in per_point.items() for t in tables if t.name == name}
        first = next(iter(found.values()))
        cols = list(first.mean.columns)
        md += [
            f"### {first.title}",
            "",
            "| grid point | |" + "|".join(f" {g} {m} " for g, m in cols) + "|",
            "|---|---|" + "|".join("---:" for _ in cols) + "|",
        ]
        for point, t in found.items():
            for row in t.mean.index:
                md.append(f"| {point} | {row} |" + "|".join(f" {t.cell(row, c)} " for c in cols) + "|")
            tidy.append(t.tidy().assign(table=name, grid_point=point))
        md.append("")
    rows = pd.concat(tidy, ignore_index=True) if tidy else pd.DataFrame()
    return "\n".join(md), rows


def make_grid_report(paths: Sequence[str | Path], out: str | Path, plot_subject: str | None = None) -> dict[str, Path]:
    """One report for one grid point (or plain result folders); with several grid
    points, one report per grid point in ``out/<point>`` plus the comparison."""
    groups = group_by_grid_point(paths)
    out = Path(out)
    if len(groups) == 1:
        return make_report(next(iter(groups.values())), out, plot_subject=plot_subject)
    if None in groups:
        raise ReportError("mix of plain result folders and sweep run folders: report them separately")
    written: dict[str, Path] = {}
    for point, dirs in groups.items():
        for name, path in make_report(dirs, out / str(point), plot_subject=plot_subject).items():
            written[f"{point}/{name}"] = path
    md, rows = compare_grid_points({str(k): v for k, v in groups.items()})
    written[f"{GRID_FILE}.csv"] = _write_csv(out / f"{GRID_FILE}.csv", rows)
    written[f"{GRID_FILE}.md"] = _write_text(out / f"{GRID_FILE}.md", md)
    return written
