"""``make_report``: the result folders aggregated into ``report.md``, ``tables.tex`` and
one CSV per table, with what is missing and why (the package docstring has the layout).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluation.protocol import SERIES_DIR, SUMMARY_JSON, read_results
from evaluation.report.ours import (
    COMPOSITED_SECTION,
    composited_tables,
    extension_tables,
    groundtruth_table,
    temporal_table,
)
from evaluation.report.output import (
    _has_tabulate,
    _md_table,
    _plain_md,
    _tex_table,
    _write_csv,
    _write_text,
)
from evaluation.report.paper import paper_tables
from evaluation.report.plots import plot_curves
from evaluation.report.published import (
    PAPER_MODEL_LABELS,
    checks_markdown,
    load_published,
    paper_model,
    published_block,
)
from evaluation.report.tables import Table


class ReportError(ValueError):
    """The result folders cannot be reported (missing or empty); message names them."""


#: Written last into a report folder, listing its files: a report is complete only with it.
#: Each file is written whole (temporary name, then rename), but a full disk or a kill
#: between two files would leave, say, ``report.md`` without ``tables.tex``.
REPORT_COMPLETE = ".complete"


def report_is_complete(folder: str | Path) -> bool:
    """Whether :func:`make_report` finished in ``folder`` (its marker is there)."""
    return (Path(folder) / REPORT_COMPLETE).is_file()


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


#: Said once above the paper-layout tables: units, and where the paper's blocks come from.
PAPER_SECTION_NOTE = (
    "Under each of our tables: the paper's published block with the same rows and columns "
    "(from `evaluation/report/data/paper_tables.csv`), then the checks the paper draws — is N–C closer to N–N "
    "than N–S, and the share of the sensor's gap the cleaning closes, (N–S − N–C) / (N–S − N–N). "
    "Units: LPIPS and FID as their libraries give them; DTW in the units of the series (AU intensities, "
    "emotion probabilities); our MAPE is a fraction (×100 for percent) in every table — one unit, so that "
    "Tables 2 and 3 and the landmark table read alike — with the denominator floored at ε = 0.01, one "
    "hundredth of the probability scale. The paper's blocks are printed as published; docs/fidelity.md says "
    "what is known of their MAPE unit."
)


def paper_block_lines(
    t: Table, published: pd.DataFrame, tex: list[str], written: dict[str, Path], out: Path
) -> list[str]:
    """Markdown lines under one of our paper-layout tables: the paper's block (also added
    to ``tex`` and written as ``paper_<name>.csv``) or why it is missing, then the checks."""
    assert t.paper is not None  # called for the tables that have a paper block
    table, model = t.paper
    paper_model_name = paper_model(table, model)
    block = published_block(t, published, table, paper_model_name)
    lines = []
    if block is None:
        what = f"Table {table}" + (
            f" ({PAPER_MODEL_LABELS.get(paper_model_name, paper_model_name)})" if paper_model_name else ""
        )
        lines += [f"*The paper's {what}: not shipped — the data file lists no verified cell for it.*", ""]
    else:
        its = f" (its model: {PAPER_MODEL_LABELS.get(paper_model_name, paper_model_name)})" if paper_model_name else ""
        block.caption = f"The paper's published values for {t.title.split(' — ')[0]}{its}, mean ± std as printed there."
        lines.append(_md_table(block).replace("\n\nSubjects: 0.\n", "\n"))
        tex.append(_tex_table(block))
        written[block.name] = _write_csv(out / f"{block.name}.csv", block.tidy().drop(columns="subjects"))
    lines += [checks_markdown(t, block), ""]
    return lines


def make_report(
    results: Sequence[str | Path],
    out: str | Path,
    plot_subject: str | None = None,
    published_csv: str | Path | None = None,
    composited: Sequence[str | Path] = (),
) -> dict[str, Path]:
    """Aggregate the result folders into ``out`` (module docstring). Returns the written
    files by name. ``published_csv``: the paper's values (default: the shipped file).
    ``composited``: result folders of the same subjects evaluated on our composited
    videos, where ``results`` holds the evaluation of the paper's full repaint; their
    tables follow in a section of their own (:data:`~evaluation.report.ours.COMPOSITED_SECTION`,
    files ``composited_*``)."""
    dirs = [Path(r) for r in results]
    if not dirs:
        raise ReportError("no result folders given")
    ours_dirs = [Path(r) for r in composited]
    for d in [*dirs, *ours_dirs]:
        if not (d / "results.csv").is_file() and not (d.is_file() and d.suffix == ".csv"):
            raise ReportError(f"{d}: no results.csv here (run `python -m evaluation run --out {d}` first)")
    df = read_results(dirs)
    if df.empty:
        raise ReportError(f"{', '.join(map(str, dirs))}: the results are empty")
    df_ours = read_results(ours_dirs) if ours_dirs else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: --out exists and is not a folder; the report goes into a folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_COMPLETE).unlink(missing_ok=True)  # incomplete until this run's last write
    from evaluation.report.landmarks import landmark_tables

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
    published = load_published(published_csv)
    on_repaint = (
        " Computed on the paper's method, the full repaint of every frame; our composited video follows in "
        "its own section."
        if df_ours is not None
        else ""
    )
    sections: list[tuple[str, Sequence[Table | None]]] = [
        ("## Tables 1–3 in the paper's layout\n\n" + PAPER_SECTION_NOTE + on_repaint, paper_tables(df)),
        (
            "## Our addition: sessions averaged and the whole video\n\n"
            "Not in the paper: the sessions' rows averaged into N–S and N–C, and a column for the whole video.",
            [*extension_tables(df), groundtruth_table(df), temporal_table(df), *landmark_tables(df)],
        ),
    ]
    if df_ours is not None and not df_ours.empty:
        sections.append(
            (
                COMPOSITED_SECTION,
                composited_tables(
                    [
                        *paper_tables(df_ours),
                        *extension_tables(df_ours),
                        groundtruth_table(df_ours),
                        temporal_table(df_ours),
                        *landmark_tables(df_ours),
                    ]
                ),
            )
        )
    appendix = [
        (f"### Subject {s}", paper_tables(df[df["subject"].astype(str) == s], prefix=f"{s}_")) for s in subjects
    ]
    for heading, candidates in sections:
        tables = [t for t in candidates if t is not None]
        if not tables:
            continue
        md += [heading, ""]
        for t in tables:
            t.caption = t.caption.replace("sets of N frames", f"sets of {fid_set_size(df)} frames")  # as used
            md.append(_md_table(t))
            tex.append(_tex_table(t))
            written[t.name] = _write_csv(out / f"{t.name}.csv", t.tidy())
            if t.paper is not None:
                md += paper_block_lines(t, published, tex, written, out)
    missing = missing_cleaned([d for d in dirs if d.is_dir()])
    if missing:
        md += [
            "**Missing cleaned recordings** (evaluated with `--allow-missing`; the N–C rows leave them out): "
            + "; ".join(f"{subj}: {', '.join(names)}" for subj, names in missing.items()),
            "",
        ]
    md += not_shown(df, [d for d in dirs if d.is_dir()])
    from evaluation.report.emg import emg_sections  # ours: sEMG mapping, if measured

    emg_md, emg_files = emg_sections([d for d in dirs if d.is_dir()], out)
    md += emg_md
    written.update(emg_files)
    if not nan_frames.empty:
        md += [
            "### Frames without a face (py-feat)",
            "",
            nan_frames.to_markdown(index=False) if _has_tabulate() else _plain_md(nan_frames),
            "",
        ]
        written["no_face_frames"] = _write_csv(out / "no_face_frames.csv", nan_frames)
    plot_dirs = [d for d in dirs if d.is_dir() and (d / SERIES_DIR).is_dir()]
    if plot_subject is not None:
        plot_dirs = [d for d in plot_dirs if _subject_of(d) == plot_subject]
    if plot_dirs:
        d = plot_dirs[0]
        for p in plot_curves(d, out, _subject_of(d) or "subject"):
            written[p.stem] = p
            md += [f"![{p.stem}]({p.name})", ""]
    md += [
        "## Appendix: per-subject tables",
        "",
        "Each subject's own numbers in the paper's layout (sensor videos of a session averaged).",
        "",
    ]
    for heading, tables in appendix:
        md += [heading, ""]
        for t in tables:
            md.append(_md_table(t))
            tex.append(_tex_table(t))
            written[t.name] = _write_csv(out / "subjects" / f"{t.name}.csv", t.tidy())
    written["report.md"] = _write_text(out / "report.md", "\n".join(md))
    written["tables.tex"] = _write_text(out / "tables.tex", "\n".join(tex))
    _write_text(out / REPORT_COMPLETE, json.dumps(sorted(str(p.relative_to(out)) for p in written.values())) + "\n")
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
    from evaluation.weight_files import MissingWeightsError, fetch_command
    from evaluation.weights import check_weights

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
