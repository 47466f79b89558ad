"""Tables 1–3 in the paper's layout (the report's default view): five rows N1–N2, Nk–Sk,
Nk–Ck, the task columns in the paper's order Schaede | Emotion | Sentence, the paper's
precision; one Table 2 and 3 block per AU model, its caption naming the paper model it
stands for. Each caption says what the mean ± std is over.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from evaluation.metrics.timeseries import EXCLUDED_AUS, is_au
from evaluation.pairs import KIND_LABELS
from evaluation.report.tables import Table, build_table

#: The paper's task columns, in its order (Tables 1–3: Schaede | Emotion | Sentence).
PAPER_SEGMENTS: tuple[str, ...] = ("schaede", "emotion", "sentence")
#: The paper's precision: LPIPS 2 decimals, FID 1, DTW 1, MAPE 2 (Table 2) …
PAPER_FORMATS: dict[str, str] = {"lpips": "{:.2f}", "fid": "{:.1f}", "dtw": "{:.1f}", "mape": "{:.2f}"}
#: … and MAPE with 1 decimal in Table 3.
PAPER_TABLE3_FORMATS: dict[str, str] = {**PAPER_FORMATS, "mape": "{:.1f}"}
#: What the mean ± std of the paper-layout tables is over (our reading of the paper's
#: "we average the results of test subjects and AUs": features first, std over subjects).
OVER_SUBJECTS = (
    "Mean ± std over subjects (sample std); within a subject first the mean over the comparisons of the row "
    "(the sensor videos of the session)"
)
#: The unit of our MAPE, said in every caption that shows it.
MAPE_UNIT = "MAPE as a fraction (×100 for percent)"


def paper_row(kind: str, session: str) -> str:
    """The paper's row label: ``N1–N2`` for the baseline, ``Nk–Sk`` / ``Nk–Ck`` per session."""
    if kind == "baseline":
        return KIND_LABELS["baseline"]
    letter = {"sensor": "S", "clean": "C"}[kind]
    return f"N{session}–{letter}{session}"


def _paper_rows(d: pd.DataFrame) -> list[str]:
    """N1–N2, then per session k: Nk–Sk, Nk–Ck (paper Tables 1–3: five rows for two sessions)."""
    sessions = sorted({str(s) for s in d.loc[d["kind"] != "baseline", "session"]}, key=lambda s: (len(s), s)) or [
        "1",
        "2",
    ]
    return [KIND_LABELS["baseline"]] + [paper_row(k, s) for s in sessions for k in ("sensor", "clean")]


def _paper_table(
    d: pd.DataFrame,
    metrics: Sequence[str],
    name: str,
    title: str,
    caption: str,
    paper: tuple[int, str],
) -> Table:
    """Rows :func:`paper_row`, columns Schaede | Emotion | Sentence × ``metrics``. Within a
    subject the comparisons of one row (e.g. two sensor videos of a session) are
    averaged; then mean ± std over subjects."""
    d = d.assign(row=[paper_row(k, s) for k, s in zip(d["kind"], d["session"], strict=True)])
    cols = [(s, m) for s in PAPER_SEGMENTS for m in metrics]
    rows = {r: r for r in _paper_rows(d)}
    formats = PAPER_TABLE3_FORMATS if paper[0] == 3 else PAPER_FORMATS
    t = build_table(d, rows, "row", cols, ("segment", "metric"), name, title, caption, formats)
    t.paper = paper
    return t


def paper_perceptual_table(df: pd.DataFrame, name: str = "table1_perceptual") -> Table | None:
    """Table 1 in the paper's layout: LPIPS and FID, five rows, the three tasks."""
    d = df[df["metric"].isin(["lpips", "fid"]) & df["segment"].isin(PAPER_SEGMENTS)]
    if d.empty:
        return None
    return _paper_table(
        d,
        ("lpips", "fid"),
        name,
        "Table 1 — perceptual distance to the normal video",
        "LPIPS (AlexNet) and FID (Inception-v3, sets of N frames) of the second session's normal video (N1–N2), "
        "the sensor videos (Nk–Sk) and the cleaned videos (Nk–Ck) against the normal video of the session; lower "
        "is closer. Per comparison LPIPS is the mean over its frame pairs (a seeded sample, or all pairs with "
        "--lpips-all-pairs) and FID the mean over its draws. "
        f"{OVER_SUBJECTS}.",
        (1, ""),
    )


def au_model_note(d: pd.DataFrame, model: str) -> str:
    """Caption text for one AU model: which paper model it stands for, its AUs (AU43
    excluded) with their count, and the paper model's AUs it lacks."""
    from evaluation.metrics.facial import PAPER_AU_LIST, PAPER_AUS, PAPER_COUNTERPART

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
    per_pair = (
        d.groupby(["subject", "session", "kind", "segment", "reference", "other", "metric"])["value"]
        .mean()
        .reset_index()
    )
    suffix = f"_{model}" if model else ""
    label = f" — {model}" if model else ""
    if group == "au":
        name = name or f"table2_au{suffix}"
        title, what = f"Table 2 — Action Unit time series{label}", f"AU intensities ({au_model_note(d, model)})"
    else:
        name = name or f"table3_emotion{suffix}"
        title, what = (
            f"Table 3 — emotion time series{label}",
            f"emotion probabilities (py-feat, run with AU model `{model or 'py-feat'}`)",
        )
    averaged = "the AUs listed (AU43 excluded)" if group == "au" else "the 7 emotions"
    return _paper_table(
        per_pair,
        ("dtw", "mape"),
        name,
        title,
        f"DTW distance and MAPE of {what} against the normal video. {MAPE_UNIT}, over the full segment at the "
        f"pair's one shift within ±20 s, chosen from exactly the series this table averages; denominator floored "
        f"at ε = 0.01 (docs/fidelity.md). {OVER_SUBJECTS}, and before that the mean over {averaged} of each "
        'comparison — our reading of the paper\'s "we average the results of test subjects and AUs".',
        (2 if group == "au" else 3, model),
    )


def paper_tables(df: pd.DataFrame, prefix: str = "") -> list[Table]:
    """Tables 1–3 in the paper's layout (one Table 2 and 3 block per AU model)."""
    tables = [paper_perceptual_table(df, f"{prefix}table1_perceptual")]
    for group in ("au", "emotion"):
        for model in models_of(df):
            base = ("table2_au" if group == "au" else "table3_emotion") + (f"_{model}" if model else "")
            tables.append(paper_facial_table(df, group, model, f"{prefix}{base}"))
    return [t for t in tables if t is not None]
