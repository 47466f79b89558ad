"""A :class:`Table` as Markdown and as LaTeX (booktabs), and the atomic writes of the
report's files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.report.tables import METRIC_LABELS, SEGMENT_LABELS, Table
from sensor_removal.core.video import atomic_output


def _md_table(t: Table) -> str:
    head = (
        "| |"
        + "|".join(
            f" {SEGMENT_LABELS.get(g, METRIC_LABELS.get(g, g))} {METRIC_LABELS.get(m, m)} " for g, m in t.mean.columns
        )
        + "|"
    )
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
    top = (
        " & "
        + " & ".join(
            f"\\multicolumn{{{len(per[g])}}}{{c}}{{{SEGMENT_LABELS.get(g, METRIC_LABELS.get(g, g))}}}" for g in groups
        )
        + " \\\\"
    )
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
