"""Our addition to the paper's tables, labelled as such: the sessions averaged into three
rows (N1–N2, N–S, N–C) with a ``whole``-video column, the ground-truth table (synthetic
subjects) and the temporal-stability table; and every table once more on our composited
video (:func:`composited_tables`) where the paper's tables were computed on the full repaint.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from evaluation.metrics.groundtruth import MASK_SCORES
from evaluation.report.paper import MAPE_UNIT, _facial_subset, models_of
from evaluation.report.tables import (
    GT_COMPOSITED_LABEL,
    GT_LABELS,
    KIND_ROWS,
    Table,
    _segments_present,
    build_table,
)


def perceptual_table(df: pd.DataFrame) -> Table | None:
    """Table 1: LPIPS and FID; rows N1–N2, N–S, N–C; columns task × metric."""
    d = df[df["metric"].isin(["lpips", "fid"])]
    if d.empty:
        return None
    metrics = [m for m in ("lpips", "fid") if m in set(d["metric"])]
    cols = [(s, m) for s in _segments_present(d) for m in metrics]
    return build_table(
        d,
        KIND_ROWS,
        "kind",
        cols,
        ("segment", "metric"),
        "table1_perceptual",
        "Table 1 — perceptual distance to the normal video",
        "LPIPS (AlexNet) and FID (Inception-v3, sets of N frames) between the normal video and the second "
        "session's normal video (N1–N2), the sensor video (N–S) and the cleaned video (N–C); lower is closer. "
        "Mean ± std over subjects; within a subject first the mean over the comparisons of the row (both "
        "sessions, every sensor video).",
    )


def facial_table(df: pd.DataFrame, group: str, model: str | None = None) -> Table | None:
    """Table 2 (``group="au"``, AU43 excluded) or Table 3 (``group="emotion"``): DTW and
    MAPE averaged over the group's features per comparison, then per subject, then over
    subjects. ``model``: only the rows of this AU model (None: all rows)."""
    d = _facial_subset(df, group, model)
    if d.empty:
        return None
    per_pair = (
        d.groupby(["subject", "session", "kind", "segment", "reference", "other", "metric"])["value"]
        .mean()
        .reset_index()
    )
    cols = [(s, m) for s in _segments_present(d) for m in ("dtw", "mape")]
    suffix, label = (f"_{model}", f" — {model}") if model else ("", "")
    if group == "au":
        name, title = f"table2_au{suffix}", f"Table 2 — Action Unit time series{label}"
        what = "AU intensities (py-feat; AU43 excluded as in the paper)"
    else:
        name, title = f"table3_emotion{suffix}", f"Table 3 — emotion time series{label}"
        what = "emotion probabilities (py-feat)"
    return build_table(
        per_pair,
        KIND_ROWS,
        "kind",
        cols,
        ("segment", "metric"),
        name,
        title,
        f"DTW distance and MAPE of {what} against the normal video, at the pair's shift within ±20 s. "
        f"{MAPE_UNIT}. Mean ± std over subjects; within a subject first the mean over the features of each "
        "comparison, then over the comparisons of the row (both sessions, every sensor video).",
    )


def extension_tables(df: pd.DataFrame) -> list[Table]:
    """Our addition: sessions averaged into three rows (N1–N2, N–S, N–C), plus the
    ``whole`` video column; labelled as ours in titles and file names."""
    tables = [perceptual_table(df)]
    for model in models_of(df):
        tables += [facial_table(df, "au", model), facial_table(df, "emotion", model)]
    return _relabelled(tables, "ours_", " (our addition: sessions averaged, whole video)")


def _relabelled(tables: Iterable[Table | None], prefix: str, suffix: str, *, keep_paper: bool = True) -> list[Table]:
    """The tables that exist, each in its own file (``prefix``) and titled (``suffix``) as
    ours; without the paper's published block unless ``keep_paper``."""
    out = []
    for t in tables:
        if t is None:
            continue
        t.name = f"{prefix}{t.name}"
        t.title = f"{t.title}{suffix}"
        if not keep_paper:
            t.paper = None
        out.append(t)
    return out


def groundtruth_table(df: pd.DataFrame) -> Table | None:
    """PSNR / SSIM of the sensor (no cleaning), full-repaint and cleaned crops against the
    ground truth — whole crop, inside and outside the sensor mask — and the flicker inside
    the sensor area (segment ``whole``)."""
    d = df[df["metric"].isin(["psnr", "ssim", "flicker", *MASK_SCORES]) & (df["segment"] == "whole")]
    if d.empty:
        return None
    d = d.rename(columns={"feature": "region"})
    kinds = [k for k in GT_LABELS if k in set(d["kind"])]
    labels = dict(GT_LABELS, clean=GT_COMPOSITED_LABEL) if "repaint" in kinds else GT_LABELS
    present = set(zip(d["region"], d["metric"], strict=True))
    # Like Tables 1-3: the group (here the region) first, the metric second.
    cols = [(r, m) for r in ("whole", "mask", "outside") for m in ("psnr", "ssim") if (r, m) in present]
    cols += [("mask", m) for m in ("flicker", *MASK_SCORES) if ("mask", m) in present]
    return build_table(
        d,
        {k: labels[k] for k in kinds},
        "kind",
        cols,
        ("region", "metric"),
        "table_groundtruth",
        "Ground truth — pixel fidelity and temporal stability (synthetic subjects)",
        "PSNR (dB) and SSIM of the face crops against the sensor-free ground truth, over the whole crop, "
        "inside the sensor mask and outside it (higher is better); flicker: the frame-to-frame change inside "
        "the sensor area that the ground truth does not have, in 8-bit levels (lower is steadier). "
        + (_COMPOSITED_NOTE if "repaint" in kinds else "")
        + "Mean ± std over subjects; within a subject first the mean over its sensor videos.",
    )


#: What the ground-truth table says of its composited row, when it has one.
_COMPOSITED_NOTE = (
    "Composited C (our extension): the repaint where an estimated sensor mask says a sensor covers the "
    "crop, the recorded pixels elsewhere; IoU / precision / recall: that estimated mask (at 0.5) against "
    "the true one, per frame. "
)


def temporal_table(df: pd.DataFrame) -> Table | None:
    """Frame-to-frame change in excess of the normal video's (our extension, no ground
    truth needed); rows N1–N2, N–S, N–C; columns per task."""
    d = df[df["metric"] == "temporal"]
    if d.empty:
        return None
    cols = [(s, "temporal") for s in _segments_present(d)]
    return build_table(
        d,
        KIND_ROWS,
        "kind",
        cols,
        ("segment", "metric"),
        "table_temporal",
        "Temporal stability — frame-to-frame change beyond the normal video's",
        "Mean absolute change between consecutive face crops (8-bit levels) of the second video minus that "
        "of the normal video it is compared with; a cleaning that flickers moves more than the recorded face "
        "(positive). Our extension, not in the paper. Mean ± std over subjects; within a subject first the mean "
        "over the comparisons of the row.",
    )


#: File-name prefix of the tables computed on the composited video (our extension), when
#: the report's main tables are computed on the paper's full repaint.
COMPOSITED_PREFIX = "composited_"
#: The report section of those tables: what they measure and how they relate to the others.
COMPOSITED_SECTION = (
    "## Our extension: the same tables on the composited video\n\n"
    "The tables above are computed on the paper's method, the full repaint G(S) of every frame "
    "(`NAME.repaint.mp4`). These are the same tables on the video `clean` writes by default (ours): "
    "the repaint inside an estimated sensor mask and the recorded pixels outside it (with the steady fill "
    "where it is on). The N1–N2 and N–S rows compare the same videos as above; only the rows with C differ."
)


def composited_tables(tables: Iterable[Table | None]) -> list[Table]:
    """``tables`` (computed on the composited video) renamed into their own files
    (:data:`COMPOSITED_PREFIX`) and titled as ours, so that no number of them can be read
    as the paper's; without the paper's published block, which belongs to the repaint."""
    return _relabelled(tables, COMPOSITED_PREFIX, " — composited C (ours)", keep_paper=False)
