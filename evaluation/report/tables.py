"""What every table of the report is made of: the labels and number formats, the
:class:`Table` (mean, std and subject count per cell), and :func:`build_table`, the one
aggregation all tables share — per subject first, then mean ± std over subjects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.pairs import KIND_LABELS, KINDS, SEGMENTS

SEGMENT_LABELS: dict[str, str] = {"schaede": "Schaede", "sentence": "Sentence", "emotion": "Emotion", "whole": "Whole"}
METRIC_LABELS: dict[str, str] = {
    "lpips": "LPIPS",
    "fid": "FID",
    "dtw": "DTW",
    "mape": "MAPE",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "mask": "Mask",
    "outside": "Outside",
    "flicker": "flicker",
    "temporal": "Δ change",
}
_FORMATS: dict[str, str] = {
    "lpips": "{:.3f}",
    "fid": "{:.2f}",
    "dtw": "{:.2f}",
    "mape": "{:.3f}",
    "psnr": "{:.2f}",
    "ssim": "{:.4f}",
    "flicker": "{:.2f}",
    "temporal": "{:+.2f}",
}
METRIC_LABELS.update({"iou": "IoU", "precision": "Precision", "recall": "Recall"})  # the compositing mask
_FORMATS.update({"iou": "{:.3f}", "precision": "{:.3f}", "recall": "{:.3f}"})
METRIC_LABELS.update({"nme": "NME", "detection": "Det. rate"})  # landmarks (evaluation.report.landmarks)
_FORMATS.update({"nme": "{:.3f}", "detection": "{:.2f}"})
GT_LABELS: dict[str, str] = {"sensor": "S (no cleaning)", "repaint": "C full repaint (paper)", "clean": "C (cleaned)"}
#: Rows N1–N2, N–S, N–C: comparison kind → label, in table order.
KIND_ROWS: dict[str, str] = {k: KIND_LABELS[k] for k in KINDS}
#: The cleaned row's label when a full repaint was kept next to it: the cleaned video is
#: our extension's (composited, steadied or both; sensor_removal.cleaning.mask, sensor_removal.cleaning.steady).
GT_COMPOSITED_LABEL = "C cleaned (ours)"


@dataclass
class Table:
    """One aggregated table: ``mean``/``std``/``count`` share rows and (group, metric)
    columns; ``title`` and ``caption`` go to Markdown and LaTeX."""

    name: str
    title: str
    caption: str
    mean: pd.DataFrame
    std: pd.DataFrame
    count: pd.DataFrame
    formats: dict[str, str] | None = None  # metric -> format (None: the defaults)
    #: (paper table number, our AU model) for the paper-layout Tables 1–3, else None:
    #: the report prints the paper's published block under these (evaluation.report.published).
    paper: tuple[int, str] | None = None

    def cell(self, row: str, col: tuple[str, str], latex: bool = False) -> str:
        m = self.mean.at[row, col] if row in self.mean.index and col in self.mean.columns else math.nan
        s = self.std.at[row, col] if row in self.std.index and col in self.std.columns else math.nan
        formats = self.formats or _FORMATS
        fmt = formats.get(col[1]) or formats.get(col[0], "{:.3f}")
        return _fmt(m, s, fmt, latex)

    def tidy(self) -> pd.DataFrame:
        m = self.mean.stack(list(range(self.mean.columns.nlevels)), future_stack=True).rename("mean")
        s = self.std.stack(list(range(self.std.columns.nlevels)), future_stack=True).rename("std")
        c = (
            self.count.stack(list(range(self.count.columns.nlevels)), future_stack=True)
            .rename("subjects")
            .astype("Int64")
        )
        out = pd.concat([m, s, c], axis=1).reset_index()
        out.columns = ["row", "group", "metric", "mean", "std", "subjects"]
        return out


def _fmt(m: float, s: float, fmt: str, latex: bool) -> str:
    def one(v: float) -> str:
        if math.isinf(v):
            return ("$\\infty$" if latex else "∞") if v > 0 else ("$-\\infty$" if latex else "-∞")
        return fmt.format(v)

    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    if s is None or math.isnan(s) or math.isinf(m):
        return one(m)
    pm = " $\\pm$ " if latex else " ± "
    return one(m) + pm + one(s)


def subject_means(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean of ``value`` per subject and ``by`` columns (the per-subject mean first)."""
    return df.groupby(["subject", *by], dropna=False)["value"].mean().reset_index()


def over_subjects(per_subject: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof 1) and count over subjects per ``by``; inf-safe."""

    def agg(v: pd.Series) -> pd.Series:
        x = v.to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            return pd.Series({"mean": math.nan, "std": math.nan, "subjects": 0})
        mean = float(np.mean(x))
        std = float(np.std(x, ddof=1)) if x.size > 1 and np.isfinite(x).all() else math.nan
        return pd.Series({"mean": mean, "std": std, "subjects": int(x.size)})

    return per_subject.groupby(list(by))["value"].apply(agg).unstack(-1).reset_index()


def _pivot(
    stats: pd.DataFrame,
    rows: Sequence[str],
    row_col: str,
    col_keys: Sequence[tuple[str, str]],
    col_names: tuple[str, str],
    name: str,
    title: str,
    caption: str,
) -> Table:
    mats = {}
    for field in ("mean", "std", "subjects"):
        mat = pd.DataFrame(
            np.nan, index=list(rows), columns=pd.MultiIndex.from_tuples(list(col_keys), names=list(col_names))
        )
        for r in stats.itertuples(index=False):
            d = r._asdict()
            key = (d[col_names[0]], d[col_names[1]])
            if d[row_col] in mat.index and key in mat.columns:
                mat.at[d[row_col], key] = d[field]
        mats[field] = mat
    return Table(name, title, caption, mats["mean"], mats["std"], mats["subjects"])


def build_table(
    d: pd.DataFrame,
    rows: dict[str, str],
    row_col: str,
    cols: Sequence[tuple[str, str]],
    col_names: tuple[str, str],
    name: str,
    title: str,
    caption: str,
    formats: dict[str, str] | None = None,
) -> Table:
    """The shape of every table of the report: ``value`` averaged within a subject per
    row (``d[row_col]``) and column (``col_names``), then mean ± std over subjects
    (:func:`over_subjects`), laid out with the rows ``rows`` (key → label, in table order)
    and the columns ``cols``."""
    by = [row_col, *col_names]
    stats = over_subjects(subject_means(d, by), by)
    stats["row"] = stats[row_col].map(rows)
    t = _pivot(stats, list(rows.values()), "row", cols, col_names, name, title, caption)
    t.formats = formats
    return t


#: Task columns of every table: the paper's order (Schaede | Emotion | Sentence), then ours.
TABLE_SEGMENTS: tuple[str, ...] = (
    "schaede",
    "emotion",
    "sentence",
    *(s for s in SEGMENTS if s not in ("schaede", "emotion", "sentence")),
)


def _segments_present(df: pd.DataFrame) -> list[str]:
    present = set(df["segment"].unique())
    return [s for s in TABLE_SEGMENTS if s in present]
