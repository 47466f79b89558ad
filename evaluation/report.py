"""Paper-style tables and plots over subjects (docs/evaluation.md, "Report").

``make_report(results_dirs, out)`` reads the ``results.csv`` (and ``summary.json``,
``series/``) of one or more ``python -m evaluation run`` folders — usually one per
subject — and writes into ``out``:

* ``report.md`` and ``tables.tex`` (booktabs) with
  - **Tables 1–3 in the paper's layout** (the default view): five rows N1–N2, N1–S1,
    N1–C1, N2–S2, N2–C2 (:func:`paper_row`), the task columns Schaede | Sentence |
    Emotion, the paper's precision (LPIPS 2 decimals, FID 1, DTW 1, MAPE 2): Table 1
    LPIPS / FID; Table 2 AU time series, one block per AU model (``xgb``, ``v2``; the
    caption names the paper model it stands for, its AUs and their count, and the
    paper model's AUs it lacks; AU43 excluded); Table 3 emotion time series, per model;
  - **our addition**, labelled as such: the same tables with the sessions averaged into
    three rows (N1–N2, N–S, N–C) and a ``whole``-video column (files ``ours_*``), and a
    ground-truth table (PSNR / SSIM over the whole crop, inside and outside the sensor
    mask, flicker in the sensor area; sensor, full repaint and composited/cleaned) when
    the results have ground-truth rows (synthetic subjects), and a temporal-stability
    table (frame-to-frame change beyond the normal video's) with ``temporal`` rows;
  - the frames without a face per video (py-feat NaN rows);
  - the landmark tables (ours, :mod:`evaluation.landmark_report`) when the results have
    ``lm_*`` rows;
  - an appendix with every subject's own Tables 1–3 in the paper's layout
    (``subjects/<subject>_table*.csv``);
* ``table1_perceptual.csv``, ``table2_au_<model>.csv``, ``table3_emotion_<model>.csv``,
  ``ours_*.csv``, ``table_groundtruth.csv``, ``no_face_frames.csv`` — the same numbers,
  machine-readable (``mean``, ``std``, ``subjects`` per cell);
* ``fig_au_<subject>.png`` / ``fig_emotion_<subject>.png`` — AU and emotion curves of
  N, S and C of one subject, session 1 (like the paper's Fig. 6 and 7).

Aggregation: every value is first averaged within a subject (over the comparisons of a
row — in the paper layout the sensor videos of one session, in ours also the sessions —
and, for Tables 2/3, over AUs without AU43, resp. over emotions), then mean ±
std (sample std, ddof 1) over subjects; with a single subject the std is left out.
MAPE is a fraction (×100 for percent). All files are written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.pairs import KIND_LABELS, KINDS, SEGMENTS
from evaluation.protocol import SERIES_DIR, SUMMARY_JSON, read_results
from evaluation.timeseries import EXCLUDED_AUS, is_au
from sensor_removal.video import atomic_output

SEGMENT_LABELS: dict[str, str] = {"schaede": "Schaede", "sentence": "Sentence", "emotion": "Emotion", "whole": "Whole"}
METRIC_LABELS: dict[str, str] = {"lpips": "LPIPS", "fid": "FID", "dtw": "DTW", "mape": "MAPE", "psnr": "PSNR", "ssim": "SSIM", "mask": "Mask", "outside": "Outside", "flicker": "flicker", "temporal": "Δ change"}
_FORMATS: dict[str, str] = {"lpips": "{:.3f}", "fid": "{:.2f}", "dtw": "{:.2f}", "mape": "{:.3f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "flicker": "{:.2f}", "temporal": "{:+.2f}"}
METRIC_LABELS.update({"nme": "NME", "detection": "Det. rate"})  # landmarks (evaluation.landmark_report)
_FORMATS.update({"nme": "{:.3f}", "detection": "{:.2f}"})
GT_LABELS: dict[str, str] = {"sensor": "S (no cleaning)", "repaint": "C full repaint (paper)", "clean": "C (cleaned)"}
#: Rows N1–N2, N–S, N–C: comparison kind → label, in table order.
KIND_ROWS: dict[str, str] = {k: KIND_LABELS[k] for k in KINDS}
#: The cleaned row's label when a full repaint was kept next to it: it was composited.
GT_COMPOSITED_LABEL = "C composited (ours)"


class ReportError(ValueError):
    """The result folders cannot be reported (missing or empty); message names them."""


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

    def cell(self, row: str, col: tuple[str, str], latex: bool = False) -> str:
        m = self.mean.at[row, col] if row in self.mean.index and col in self.mean.columns else math.nan
        s = self.std.at[row, col] if row in self.std.index and col in self.std.columns else math.nan
        formats = self.formats or _FORMATS
        fmt = formats.get(col[1]) or formats.get(col[0], "{:.3f}")
        return _fmt(m, s, fmt, latex)

    def tidy(self) -> pd.DataFrame:
        m = self.mean.stack(list(range(self.mean.columns.nlevels)), future_stack=True).rename("mean")
        s = self.std.stack(list(range(self.std.columns.nlevels)), future_stack=True).rename("std")
        c = self.count.stack(list(range(self.count.columns.nlevels)), future_stack=True).rename("subjects").astype("Int64")
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


def _pivot(stats: pd.DataFrame, rows: Sequence[str], row_col: str, col_keys: Sequence[tuple[str, str]], col_names: tuple[str, str], name: str, title: str, caption: str) -> Table:
    mats = {}
    for field in ("mean", "std", "subjects"):
        mat = pd.DataFrame(np.nan, index=list(rows), columns=pd.MultiIndex.from_tuples(list(col_keys), names=list(col_names)))
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


def _segments_present(df: pd.DataFrame) -> list[str]:
    present = set(df["segment"].unique())
    return [s for s in SEGMENTS if s in present]


def perceptual_table(df: pd.DataFrame) -> Table | None:
    """Table 1: LPIPS and FID; rows N1–N2, N–S, N–C; columns task × metric."""
    d = df[df["metric"].isin(["lpips", "fid"])]
    if d.empty:
        return None
    metrics = [m for m in ("lpips", "fid") if m in set(d["metric"])]
    cols = [(s, m) for s in _segments_present(d) for m in metrics]
    return build_table(
        d, KIND_ROWS, "kind", cols, ("segment", "metric"), "table1_perceptual",
        "Table 1 — perceptual distance to the normal video",
        "LPIPS (AlexNet) and FID (Inception-v3, sets of N frames) between the normal video and the second "
        "session's normal video (N1–N2), the sensor video (N–S) and the cleaned video (N–C); lower is closer. "
        "Mean ± std over subjects.",
    )


def facial_table(df: pd.DataFrame, group: str, model: str | None = None) -> Table | None:
    """Table 2 (``group="au"``, AU43 excluded) or Table 3 (``group="emotion"``): DTW and
    MAPE averaged over the group's features per comparison, then per subject, then over
    subjects. ``model``: only the rows of this AU model (None: all rows)."""
    d = _facial_subset(df, group, model)
    if d.empty:
        return None
    per_pair = d.groupby(["subject", "session", "kind", "segment", "reference", "other", "metric"])["value"].mean().reset_index()
    cols = [(s, m) for s in _segments_present(d) for m in ("dtw", "mape")]
    suffix, label = (f"_{model}", f" — {model}") if model else ("", "")
    if group == "au":
        name, title = f"table2_au{suffix}", f"Table 2 — Action Unit time series{label}"
        what = "AU intensities (py-feat; AU43 excluded as in the paper)"
    else:
        name, title = f"table3_emotion{suffix}", f"Table 3 — emotion time series{label}"
        what = "emotion probabilities (py-feat)"
    return build_table(
        per_pair, KIND_ROWS, "kind", cols, ("segment", "metric"), name, title,
        f"DTW distance and MAPE (fraction, at the best shift within ±20 s) of {what} against the normal video, "
        "averaged over the features. Mean ± std over subjects.",
    )


# ------------------------------------------------------------- the paper's layout (default)

#: The paper's task columns, in its order (Tables 1–3).
PAPER_SEGMENTS: tuple[str, ...] = ("schaede", "sentence", "emotion")
#: The paper's precision: LPIPS 2 decimals, FID 1, DTW 1, MAPE 2.
PAPER_FORMATS: dict[str, str] = {"lpips": "{:.2f}", "fid": "{:.1f}", "dtw": "{:.1f}", "mape": "{:.2f}"}


def paper_row(kind: str, session: str) -> str:
    """The paper's row label: ``N1–N2`` for the baseline, ``Nk–Sk`` / ``Nk–Ck`` per session."""
    if kind == "baseline":
        return KIND_LABELS["baseline"]
    letter = {"sensor": "S", "clean": "C"}[kind]
    return f"N{session}–{letter}{session}"


def _paper_rows(d: pd.DataFrame) -> list[str]:
    """N1–N2, then per session k: Nk–Sk, Nk–Ck (paper Tables 1–3: five rows for two sessions)."""
    sessions = sorted({str(s) for s in d.loc[d["kind"] != "baseline", "session"]}, key=lambda s: (len(s), s)) or ["1", "2"]
    return [KIND_LABELS["baseline"]] + [paper_row(k, s) for s in sessions for k in ("sensor", "clean")]


def _paper_table(d: pd.DataFrame, metrics: Sequence[str], name: str, title: str, caption: str) -> Table:
    """Rows :func:`paper_row`, columns Schaede | Sentence | Emotion × ``metrics``. Within a
    subject the comparisons of one row (e.g. two sensor videos of a session) are
    averaged; then mean ± std over subjects."""
    d = d.assign(row=[paper_row(k, s) for k, s in zip(d["kind"], d["session"], strict=True)])
    cols = [(s, m) for s in PAPER_SEGMENTS for m in metrics]
    rows = {r: r for r in _paper_rows(d)}
    return build_table(d, rows, "row", cols, ("segment", "metric"), name, title, caption, PAPER_FORMATS)


def paper_perceptual_table(df: pd.DataFrame, name: str = "table1_perceptual") -> Table | None:
    """Table 1 in the paper's layout: LPIPS and FID, five rows, the three tasks."""
    d = df[df["metric"].isin(["lpips", "fid"]) & df["segment"].isin(PAPER_SEGMENTS)]
    if d.empty:
        return None
    return _paper_table(
        d, ("lpips", "fid"), name, "Table 1 — perceptual distance to the normal video",
        "LPIPS (AlexNet) and FID (Inception-v3, sets of N frames) of the second session's normal video (N1–N2), "
        "the sensor videos (Nk–Sk) and the cleaned videos (Nk–Ck) against the normal video of the session; lower "
        "is closer. Mean ± std over subjects.",
    )


def au_model_note(d: pd.DataFrame, model: str) -> str:
    """Caption text for one AU model: which paper model it stands for, its AUs (AU43
    excluded) with their count, and the paper model's AUs it lacks."""
    from evaluation.facial import PAPER_AU_LIST, PAPER_AUS, PAPER_COUNTERPART

    aus = sorted({f for f in d.loc[d["value"].notna(), "feature"] if is_au(f) and f not in EXCLUDED_AUS})
    text = f"py-feat AU model `{model}`" if model else "py-feat"
    if model in PAPER_COUNTERPART:
        text += f" ({PAPER_COUNTERPART[model]})"
    text += f"; {len(aus)} AUs compared: {', '.join(aus)}"
    if model in PAPER_AU_LIST:
        paper = [a for a in PAPER_AUS[PAPER_AU_LIST[model]] if a not in EXCLUDED_AUS]
        lacks = [a for a in paper if a not in aus]
        text += f"; lacks of the paper model's {len(paper)} AUs: {', '.join(lacks) if lacks else 'none'}"
    return text + " (AU43 excluded as in the paper)"


def _facial_subset(df: pd.DataFrame, group: str, model: str | None) -> pd.DataFrame:
    d = df[df["metric"].isin(["dtw", "mape"])]
    if model is not None and "model" in d.columns:
        d = d[d["model"].fillna("") == model]
    if group == "au":
        return d[d["feature"].map(is_au) & ~d["feature"].isin(EXCLUDED_AUS)]
    return d[~d["feature"].map(is_au)]


def models_of(df: pd.DataFrame) -> list[str]:
    """The AU models in the facial rows, in order of appearance ('' for unnamed)."""
    d = df[df["metric"].isin(["dtw", "mape"])]
    if "model" not in d.columns:
        return [""] if len(d) else []
    return list(dict.fromkeys(d["model"].fillna("")))


def paper_facial_table(df: pd.DataFrame, group: str, model: str, name: str | None = None) -> Table | None:
    """Table 2 (``group="au"``) or 3 (``"emotion"``) for one AU model in the paper's
    layout: DTW and MAPE averaged over the features per comparison, then as Table 1."""
    d = _facial_subset(df, group, model)
    d = d[d["segment"].isin(PAPER_SEGMENTS)]
    if d.empty:
        return None
    per_pair = d.groupby(["subject", "session", "kind", "segment", "reference", "other", "metric"])["value"].mean().reset_index()
    suffix = f"_{model}" if model else ""
    label = f" — {model}" if model else ""
    if group == "au":
        name = name or f"table2_au{suffix}"
        title, what = f"Table 2 — Action Unit time series{label}", f"AU intensities ({au_model_note(d, model)})"
    else:
        name = name or f"table3_emotion{suffix}"
        title, what = f"Table 3 — emotion time series{label}", f"emotion probabilities (py-feat, run with AU model `{model or 'py-feat'}`)"
    return _paper_table(
        per_pair, ("dtw", "mape"), name, title,
        f"DTW distance and MAPE (fraction, at the pair's one shift within ±20 s, chosen jointly over the series; "
        f"denominator floored at ε, default 0.01, see docs/fidelity.md) of {what} against the normal video, "
        "averaged over the features. Mean ± std over subjects.",
    )


def paper_tables(df: pd.DataFrame, prefix: str = "") -> list[Table]:
    """Tables 1–3 in the paper's layout (one Table 2 and 3 block per AU model)."""
    tables = [paper_perceptual_table(df, f"{prefix}table1_perceptual")]
    for group in ("au", "emotion"):
        for model in models_of(df):
            base = ("table2_au" if group == "au" else "table3_emotion") + (f"_{model}" if model else "")
            tables.append(paper_facial_table(df, group, model, f"{prefix}{base}"))
    return [t for t in tables if t is not None]


def extension_tables(df: pd.DataFrame) -> list[Table]:
    """Our addition: sessions averaged into three rows (N1–N2, N–S, N–C), plus the
    ``whole`` video column; labelled as ours in titles and file names."""
    tables = [perceptual_table(df)]
    for model in models_of(df):
        tables += [facial_table(df, "au", model), facial_table(df, "emotion", model)]
    out = []
    for t in tables:
        if t is None:
            continue
        t.name = f"ours_{t.name}"
        t.title = f"{t.title} (our addition: sessions averaged, whole video)"
        out.append(t)
    return out


def groundtruth_table(df: pd.DataFrame) -> Table | None:
    """PSNR / SSIM of the sensor (no cleaning), full-repaint and cleaned crops against the
    ground truth — whole crop, inside and outside the sensor mask — and the flicker inside
    the sensor area (segment ``whole``)."""
    d = df[df["metric"].isin(["psnr", "ssim", "flicker"]) & (df["segment"] == "whole")]
    if d.empty:
        return None
    d = d.rename(columns={"feature": "region"})
    kinds = [k for k in GT_LABELS if k in set(d["kind"])]
    labels = dict(GT_LABELS, clean=GT_COMPOSITED_LABEL) if "repaint" in kinds else GT_LABELS
    present = set(zip(d["region"], d["metric"], strict=True))
    # Like Tables 1-3: the group (here the region) first, the metric second.
    cols = [(r, m) for r in ("whole", "mask", "outside") for m in ("psnr", "ssim") if (r, m) in present]
    cols += [("mask", "flicker")] if ("mask", "flicker") in present else []
    return build_table(
        d, {k: labels[k] for k in kinds}, "kind", cols, ("region", "metric"), "table_groundtruth",
        "Ground truth — pixel fidelity and temporal stability (synthetic subjects)",
        "PSNR (dB) and SSIM of the face crops against the sensor-free ground truth, over the whole crop, "
        "inside the sensor mask and outside it (higher is better); flicker: the frame-to-frame change inside "
        "the sensor area that the ground truth does not have, in 8-bit levels (lower is steadier). "
        "Composited C (our extension): the full repaint inside an estimated sensor mask, the recorded pixels "
        "outside. Mean ± std over subjects.",
    )


def temporal_table(df: pd.DataFrame) -> Table | None:
    """Frame-to-frame change in excess of the normal video's (our extension, no ground
    truth needed); rows N1–N2, N–S, N–C; columns per task."""
    d = df[df["metric"] == "temporal"]
    if d.empty:
        return None
    cols = [(s, "temporal") for s in _segments_present(d)]
    return build_table(
        d, KIND_ROWS, "kind", cols, ("segment", "metric"), "table_temporal",
        "Temporal stability — frame-to-frame change beyond the normal video's",
        "Mean absolute change between consecutive face crops (8-bit levels) of the second video minus that "
        "of the normal video it is compared with; a cleaning that flickers moves more than the recorded face "
        "(positive). Our extension, not in the paper. Mean ± std over subjects.",
    )


def no_face_table(dirs: Sequence[Path]) -> pd.DataFrame:
    """Frames without a face per video, from each folder's ``summary.json``."""
    rows = []
    for d in dirs:
        f = Path(d) / SUMMARY_JSON
        if not f.is_file():
            continue
        doc = json.loads(f.read_text())
        for name, v in (doc.get("videos") or {}).items():
            row = {
                "subject": doc.get("subject"),
                "video": name,
                "condition": v.get("condition"),
                "session": v.get("session"),
                "analysed_frames": v.get("analysed_frames"),
                "no_face_frames": v.get("no_face_frames"),
            }
            for seg, n in (v.get("no_face_by_segment") or {}).items():
                row[f"no_face_{seg}"] = n
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ output


def _md_table(t: Table) -> str:
    head = "| |" + "|".join(f" {SEGMENT_LABELS.get(g, METRIC_LABELS.get(g, g))} {METRIC_LABELS.get(m, m)} " for g, m in t.mean.columns) + "|"
    sep = "|---|" + "|".join("---:" for _ in t.mean.columns) + "|"
    lines = [f"### {t.title}", "", t.caption, "", head, sep]
    for r in t.mean.index:
        lines.append(f"| {r} |" + "|".join(f" {t.cell(r, c)} " for c in t.mean.columns) + "|")
    n = int(np.nanmax(t.count.to_numpy())) if np.isfinite(t.count.to_numpy()).any() else 0
    lines += ["", f"Subjects: {n}" + (" (a single subject: no std)." if n == 1 else "."), ""]
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    return s.replace("&", "\\&").replace("%", "\\%").replace("_", "\\_").replace("–", "--").replace("±", "$\\pm$")


def _tex_table(t: Table) -> str:
    cols = list(t.mean.columns)
    groups = list(dict.fromkeys(g for g, _ in cols))
    per = {g: [c for c in cols if c[0] == g] for g in groups}
    spec = "l" + "".join("r" * len(per[g]) for g in groups)
    top = " & " + " & ".join(f"\\multicolumn{{{len(per[g])}}}{{c}}{{{SEGMENT_LABELS.get(g, METRIC_LABELS.get(g, g))}}}" for g in groups) + " \\\\"
    rules, start = [], 2
    for g in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + len(per[g]) - 1}}}")
        start += len(per[g])
    sub = " & " + " & ".join(METRIC_LABELS.get(m, m) for _, m in cols) + " \\\\"
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex_escape(t.caption)}}}",
        f"\\label{{tab:{t.name}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        top,
        " ".join(rules),
        sub,
        "\\midrule",
    ]
    for r in t.mean.index:
        lines.append(_tex_escape(r) + " & " + " & ".join(t.cell(r, c, latex=True) for c in cols) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


# ------------------------------------------------------------------------------- plots


def _plot_videos(d: Path, session: int = 1) -> dict[str, str] | None:
    """Names of N, S, C of ``session`` in result folder ``d`` (from summary.json)."""
    f = d / SUMMARY_JSON
    if not f.is_file():
        return None
    videos = json.loads(f.read_text()).get("videos") or {}
    in_session = {n: v for n, v in videos.items() if v.get("session") == session and (d / SERIES_DIR / f"{n}.csv").is_file()}
    normal = next((n for n, v in sorted(in_session.items()) if v["condition"] == "normal"), None)
    sensor = next((n for n, v in sorted(in_session.items()) if v["condition"] == "sensor"), None)
    clean = next((n for n, v in sorted(in_session.items()) if v["condition"] == "clean" and v.get("source") == sensor), None)
    if normal is None or (sensor is None and clean is None):
        return None
    out = {"N": normal}
    if sensor:
        out["S"] = sensor
    if clean:
        out["C"] = clean
    return out


def plot_curves(result_dir: Path, out: Path, subject: str, session: int = 1) -> list[Path]:
    """AU and emotion curves of N, S and C (paper Fig. 6 and 7) from ``series/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _plot_videos(result_dir, session)
    if names is None:
        return []
    series = {k: pd.read_csv(result_dir / SERIES_DIR / f"{v}.csv", index_col="frame") for k, v in names.items()}
    first = next(iter(series.values()))
    features = [c for c in first.columns if c != "time_s"]
    aus = [c for c in features if is_au(c) and c not in EXCLUDED_AUS]
    emotions = [c for c in features if not is_au(c)]
    colors = {"N": "black", "S": "tab:red", "C": "tab:blue"}
    paths = []
    for group, feats in (("au", aus), ("emotion", emotions)):
        if not feats:
            continue
        ncol = 4 if len(feats) > 8 else 2
        nrow = math.ceil(len(feats) / ncol)
        height = 1.7 * nrow + 1.1
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, height), sharex=True, squeeze=False)
        for ax, feat in zip(axes.ravel(), feats, strict=False):
            for key, s in series.items():
                ax.plot(s["time_s"], s[feat], lw=0.8, color=colors[key], label=f"{key}: {names[key]}")
            ax.set_title(feat, fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(feats):]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel("time (s)", fontsize=8)
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        top = 1.0 - 0.75 / height  # room for title and legend, in figure fraction
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, top), ncol=len(series), fontsize=8, frameon=False)
        what = "Action Units (AU43 excluded)" if group == "au" else "emotions"
        fig.suptitle(f"{subject}, session {session}: {what}", fontsize=10, y=0.99)
        fig.tight_layout(rect=(0, 0, 1, top))
        path = out / f"fig_{group}_{subject}.png"
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


# -------------------------------------------------------------------------------- main


def make_report(results: Sequence[str | Path], out: str | Path, plot_subject: str | None = None) -> dict[str, Path]:
    """Aggregate the result folders into ``out`` (module docstring). Returns the written
    files by name."""
    dirs = [Path(r) for r in results]
    if not dirs:
        raise ReportError("no result folders given")
    for d in dirs:
        if not (d / "results.csv").is_file() and not (d.is_file() and d.suffix == ".csv"):
            raise ReportError(f"{d}: no results.csv here (run `python -m evaluation run --out {d}` first)")
    df = read_results(dirs)
    if df.empty:
        raise ReportError(f"{', '.join(map(str, dirs))}: the results are empty")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: --out exists and is not a folder; the report goes into a folder")
    out.mkdir(parents=True, exist_ok=True)
    from evaluation.landmark_report import landmark_tables

    nan_frames = no_face_table([d for d in dirs if d.is_dir()])
    written: dict[str, Path] = {}
    subjects = sorted(df["subject"].astype(str).unique())
    md = [
        "# Sensor removal — evaluation report",
        "",
        f"Subjects ({len(subjects)}): {', '.join(subjects)}. Per-subject means first, then mean ± std over subjects.",
        "",
    ]
    tex = ["% Generated by `python -m evaluation report`; needs \\usepackage{booktabs}.", ""]
    sections = [
        ("## Tables 1–3 in the paper's layout", paper_tables(df)),
        (
            "## Our addition: sessions averaged and the whole video\n\n"
            "Not in the paper: the sessions' rows averaged into N–S and N–C, and a column for the whole video.",
            [*extension_tables(df), groundtruth_table(df), temporal_table(df), *landmark_tables(df)],
        ),
    ]
    appendix = [(f"### Subject {s}", paper_tables(df[df["subject"].astype(str) == s], prefix=f"{s}_")) for s in subjects]
    for heading, tables in sections:
        tables = [t for t in tables if t is not None]
        if not tables:
            continue
        md += [heading, ""]
        for t in tables:
            t.caption = t.caption.replace("sets of N frames", f"sets of {fid_set_size(df)} frames")  # as used
            md.append(_md_table(t))
            tex.append(_tex_table(t))
            written[t.name] = _write_csv(out / f"{t.name}.csv", t.tidy())
    missing = missing_cleaned([d for d in dirs if d.is_dir()])
    if missing:
        md += ["**Missing cleaned recordings** (evaluated with `--allow-missing`; the N–C rows leave them out): "
               + "; ".join(f"{subj}: {', '.join(names)}" for subj, names in missing.items()), ""]
    md += not_shown(df, [d for d in dirs if d.is_dir()])
    if not nan_frames.empty:
        md += ["### Frames without a face (py-feat)", "", nan_frames.to_markdown(index=False) if _has_tabulate() else _plain_md(nan_frames), ""]
        written["no_face_frames"] = _write_csv(out / "no_face_frames.csv", nan_frames)
    plot_dirs = [d for d in dirs if d.is_dir() and (d / SERIES_DIR).is_dir()]
    if plot_subject is not None:
        plot_dirs = [d for d in plot_dirs if _subject_of(d) == plot_subject]
    if plot_dirs:
        d = plot_dirs[0]
        for p in plot_curves(d, out, _subject_of(d) or "subject"):
            written[p.stem] = p
            md += [f"![{p.stem}]({p.name})", ""]
    md += ["## Appendix: per-subject tables", "", "Each subject's own numbers in the paper's layout (sensor videos of a session averaged).", ""]
    for heading, tables in appendix:
        md += [heading, ""]
        for t in tables:
            md.append(_md_table(t))
            tex.append(_tex_table(t))
            written[t.name] = _write_csv(out / "subjects" / f"{t.name}.csv", t.tidy())
    written["report.md"] = _write_text(out / "report.md", "\n".join(md))
    written["tables.tex"] = _write_text(out / "tables.tex", "\n".join(tex))
    return written


def fid_set_size(df: pd.DataFrame) -> str:
    """``N = 128`` from the FID rows' ``n`` (the frames per set actually used; a range
    when short segments used fewer)."""
    n = pd.to_numeric(df.loc[df["metric"] == "fid", "n"], errors="coerce").dropna()
    if n.empty:
        return "N"
    lo, hi = int(n.min()), int(n.max())
    return f"N = {hi}" if lo == hi else f"N = {hi} (down to {lo} in short segments)"


#: The paper's tables, the metrics that fill them and how to get those metrics.
_TABLE_SOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Table 1 (LPIPS, FID)", ("lpips", "fid"), "lpips,fid"),
    ("Tables 2 and 3 (AU and emotion time series)", ("dtw", "mape"), "facial"),
)


def not_shown(df: pd.DataFrame, dirs: Sequence[Path]) -> list[str]:
    """Markdown lines naming each paper table that is missing from the report and why:
    its metrics were not run (and whether their weights are on this machine), or they ran
    but gave no rows (the evaluation's skipped comparisons)."""
    from evaluation.weights import MissingWeightsError, check_weights, fetch_command

    ran: set[str] = set()
    skipped: list[str] = []
    for d in dirs:
        f = d / SUMMARY_JSON
        if f.is_file():
            doc = json.loads(f.read_text())
            ran |= set((doc.get("settings") or {}).get("metrics") or [])
            skipped += list(doc.get("skipped") or [])
    present = set(df["metric"].unique())
    lines = []
    for title, metrics, evaluation_metrics in _TABLE_SOURCES:
        if present & set(metrics):
            continue
        wanted = evaluation_metrics.split(",")
        if ran and not ran & set(wanted):
            why = f"the evaluation ran with metrics {', '.join(sorted(ran))}, without {evaluation_metrics}"
            try:
                check_weights(wanted)
                how = f"run `python -m evaluation run --metrics {evaluation_metrics},...` to add it"
            except MissingWeightsError:
                how = f"their pretrained weights are not on this machine: `{fetch_command(wanted)}` fetches them"
            except Exception:  # noqa: BLE001 - e.g. py-feat not installed: say what is known
                how = f"run the evaluation with --metrics {evaluation_metrics} where it is installed"
            lines.append(f"- {title}: {why}; {how}.")
        else:
            why = "; ".join(skipped) if skipped else "no comparison produced rows"
            lines.append(f"- {title}: no results ({why}).")
    if not lines:
        return []
    return ["### Tables not shown", "", *lines, ""]


def missing_cleaned(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """Subject → sensor recordings its run evaluated without a cleaned version."""
    out: dict[str, list[str]] = {}
    for d in dirs:
        f = d / SUMMARY_JSON
        if f.is_file():
            doc = json.loads(f.read_text())
            if doc.get("missing_cleaned"):
                out[str(doc.get("subject", d.name))] = list(doc["missing_cleaned"])
    return out


def _subject_of(d: Path) -> str | None:
    f = d / SUMMARY_JSON
    if f.is_file():
        return json.loads(f.read_text()).get("subject")
    return None


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _plain_md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if (isinstance(v, float) and math.isnan(v)) else str(v) for v in r) + " |")
    return "\n".join(lines)
