"""Report tables of the ``landmarks`` family (ours; :mod:`evaluation.landmark_rows`).

* ``table_landmarks`` — rows N1–N2, N–S, N–C; per task: DTW and MAPE of the landmark
  geometry series (averaged over the seven features, like the paper's AU table averages
  over AUs) and the face detection rate of the compared video (N2, S or C).
* ``table_landmarks_groundtruth`` — synthetic subjects: S (no cleaning) and C (cleaned)
  against the ground truth, whole video: NME at the ground-truth face box, NME where the
  detector found the face itself, and detection rate (the ground truth's in the caption).

Aggregation as in :mod:`evaluation.report`: per pair, then per subject, then mean ± std
over subjects.
"""

from __future__ import annotations

import pandas as pd

from evaluation.landmark_rows import GT_SUFFIX
from evaluation.report.tables import GT_LABELS, KIND_ROWS, Table, _segments_present, build_table

_PAIR_KEYS = ["subject", "session", "kind", "segment", "reference", "other", "metric"]


def _is_gt(df: pd.DataFrame) -> pd.Series:
    return df["reference"].astype(str).str.endswith(GT_SUFFIX)


def landmark_series_table(df: pd.DataFrame) -> Table | None:
    """Geometry-series DTW / MAPE and detection rate per comparison and task."""
    d = df[~_is_gt(df)]
    series = d[d["metric"].isin(["lm_dtw", "lm_mape"])]
    detect = d[(d["metric"] == "lm_detection") & (d["feature"] == "other")]
    if series.empty and detect.empty:
        return None
    per_pair = pd.concat([series.groupby(_PAIR_KEYS)["value"].mean().reset_index(), detect[_PAIR_KEYS + ["value"]]])
    per_pair["metric"] = per_pair["metric"].map({"lm_dtw": "dtw", "lm_mape": "mape", "lm_detection": "detection"})
    cols = [(s, m) for s in _segments_present(per_pair) for m in ("dtw", "mape", "detection")]
    return build_table(
        per_pair,
        KIND_ROWS,
        "kind",
        cols,
        ("segment", "metric"),
        "table_landmarks",
        "Landmarks — geometry time series (ours: dlib 68 points)",
        "DTW and MAPE (fraction, ×100 for percent; at the pair's one shift within ±20 s, chosen over these "
        "features) of landmark geometry series normalised by the "
        "inter-ocular distance (mouth opening, lip-corner width, inner and outer brow height, eye aspect ratio "
        "per eye, nose–upper-lip), averaged over the features, against the normal video; Det. rate: frames in "
        "which dlib's detector found the face in the compared video. Mean ± std over subjects; within a subject "
        "first the mean over the features of each comparison, then over the comparisons of the row.",
    )


def landmark_groundtruth_table(df: pd.DataFrame) -> Table | None:
    """NME and detection rate of S and C against the ground truth (segment ``whole``)."""
    d = df[_is_gt(df) & df["metric"].isin(["lm_nme", "lm_detection"]) & (df["segment"] == "whole")].copy()
    if d.empty:
        return None
    gt_rate = d[(d["metric"] == "lm_detection") & (d["feature"] == "reference")]["value"].mean()
    d = d[~((d["metric"] == "lm_detection") & (d["feature"] == "reference"))]
    d["measure"] = d["metric"].map({"lm_nme": "nme", "lm_detection": "detection"})
    d["region"] = d["feature"].map({"gt_box": "at GT box", "detected": "own detection", "other": "frames"})
    cols = [("at GT box", "nme"), ("own detection", "nme"), ("frames", "detection")]
    return build_table(
        d,
        {k: GT_LABELS[k] for k in ("sensor", "clean")},
        "kind",
        cols,
        ("region", "measure"),
        "table_landmarks_groundtruth",
        "Landmarks — error against the ground truth (ours; synthetic subjects)",
        "Normalised mean error (mean point distance / inter-ocular distance, 300-W) of dlib's 68 landmarks on the "
        "sensor and cleaned frames against those on the sensor-free ground truth: with the predictor in the face "
        "box found on the ground truth, and where the detector found the face itself; lower is better. Det. rate: "
        f"frames with a face (ground truth: {gt_rate:.2f}). Mean ± std over subjects; within a subject first the "
        "mean over its sensor videos.",
    )


def landmark_tables(df: pd.DataFrame) -> list[Table]:
    """The family's tables present in ``df`` (none without ``lm_*`` rows)."""
    return [t for t in (landmark_series_table(df), landmark_groundtruth_table(df)) if t is not None]
