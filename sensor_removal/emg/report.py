"""The headline measurement on disk: scores, summary, a Markdown table labelled as our
extension, plots, and the one-line summary the demo prints.

Files in ``out``: ``emg_scores.csv`` (one row per source, direction, channel),
``emg_summary.csv`` (means per source and direction), ``emg_chain.csv`` (synthetic
only: envelope vs true drive, sync errors), ``emg.md``, ``fig_emg_envelopes.png``
(measured vs predicted envelopes of the main muscles, first held-out take) and
``fig_emg_r_per_muscle.png`` (r per muscle, sensor vs cleaned or ground truth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensor_removal.core.video import atomic_output
from sensor_removal.emg.headline import SOURCES, Take, _pairs, chain_rows, headline
from sensor_removal.emg.mapping import (
    DEFAULT_MAPPING,
    Mapping,
    MappingSettings,
    cross_validate,
    fit_mapping,
)

#: The muscles plotted over time (the most-studied facial sEMG sites).
MAIN_MUSCLES: tuple[str, ...] = (
    "zygomaticus/left",
    "corrugator/left",
    "orbicularis_oculi/left",
    "frontalis_medial/left",
)
LABEL = "Expression <-> muscle mapping (ours, after EIFER)"


def inputs_of(take: Take, source: str, direction: str) -> np.ndarray:
    """The mapping's input for one take: features of ``source`` (Exp2EMG) or envelopes."""
    return take.features[source].values if direction == "exp2emg" else take.envelopes.values


def fit_all(
    takes: list[Take], source: str, direction: str, settings: MappingSettings = DEFAULT_MAPPING, logger: Any = None
) -> Mapping:
    """One mapping fitted on every take (what ``emg fit`` saves)."""
    xs, ys, names = _pairs(takes, source, direction)
    in_names = takes[0].features[source].names if direction == "exp2emg" else takes[0].envelopes.channels
    return fit_mapping(xs, ys, settings, in_names, names, logger)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean r, R², |lag| and DTW per source and direction."""
    g = rows.assign(abs_lag_s=rows["lag_s"].abs()).groupby(["direction", "source"], sort=False)
    return g[["r", "r2", "abs_lag_s", "dtw", "face_found"]].mean().reset_index()


def summary_line(summary: pd.DataFrame) -> str:
    """One line: mean held-out R² of Exp2EMG / EMG2Exp per source."""
    parts = []
    for direction, label in (("exp2emg", "Exp2EMG"), ("emg2exp", "EMG2Exp")):
        d = summary[summary["direction"] == direction].set_index("source")
        vals = [
            f"{s[0].upper() if s != 'ground_truth' else 'GT'} {d.loc[s, 'r2']:.2f}" for s in SOURCES if s in d.index
        ]
        parts.append(f"{label} R² " + ", ".join(vals))
    return "sEMG mapping (ours): " + "; ".join(parts) + " (held-out takes)"


def _markdown(summary: pd.DataFrame, chain: pd.DataFrame | None) -> str:
    lines = [
        f"## {LABEL}",
        "",
        "Held-out takes (leave one recording out); mean over channels.",
        "",
        "| direction | video | r | R² | abs lag (s) | DTW | frames with landmarks |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in summary.iterrows():
        lines.append(
            f"| {row['direction']} | {row['source']} | {row['r']:.3f} | {row['r2']:.3f} | {row['abs_lag_s']:.3f}"
            f" | {row['dtw']:.2f} | {row['face_found']:.2f} |"
        )
    if chain is not None and not chain.empty:
        per = chain[chain["channel"] != "(sync)"]
        sync = chain[chain["channel"] == "(sync)"]
        lines += [
            "",
            f"Chain (synthetic truth): envelope vs drive r min {per['r_drive'].min():.3f},"
            f" mean {per['r_drive'].mean():.3f}; "
            f"offset error max {sync['offset_error_s'].abs().max() * 1000:.1f} ms,"
            f" lag error max {sync['lag_error_s'].abs().max() * 1000:.1f} ms.",
        ]
    return "\n".join(lines) + "\n"


def _plots(takes: list[Take], rows: pd.DataFrame, out: Path, settings: MappingSettings) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    source = (
        "cleaned"
        if all("cleaned" in t.features for t in takes)
        else SOURCES[0]
        if all(SOURCES[0] in t.features for t in takes)
        else "sensor"
    )
    xs, ys, names = _pairs(takes, source, "exp2emg")
    pred = cross_validate(xs, ys, settings)[0]
    t = np.arange(len(ys[0])) / takes[0].fps
    fig, axes = plt.subplots(len(MAIN_MUSCLES), 1, figsize=(8, 1.8 * len(MAIN_MUSCLES)), sharex=True)
    for ax, m in zip(axes, MAIN_MUSCLES, strict=True):
        c = names.index(m)
        ax.plot(t, ys[0][:, c], color="black", lw=0.9, label="measured envelope")
        ax.plot(t, pred[:, c], color="tab:blue", lw=0.9, label=f"Exp2EMG from {source} video")
        ax.set_title(m, fontsize=9)
        ax.set_ylabel("µV", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel(f"time (s), held-out take {takes[0].name}", fontsize=8)
    fig.tight_layout()
    path = out / "fig_emg_envelopes.png"
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    paths.append(path)
    e2 = rows[(rows["direction"] == "exp2emg") & rows["source"].isin(SOURCES)]
    table = e2.pivot_table(index="channel", columns="source", values="r", sort=False)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / max(1, table.shape[1])
    colors = {"ground_truth": "black", "sensor": "tab:red", "cleaned": "tab:blue"}
    for k, src in enumerate(c for c in SOURCES if c in table.columns):
        ax.bar(np.arange(len(table)) + k * width, table[src], width, label=src, color=colors[src])
    ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2, table.index, rotation=70, ha="right", fontsize=6)
    ax.set_ylabel("held-out r (Exp2EMG)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fig_emg_r_per_muscle.png"
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return [*paths, path]


def _csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False)


def write_report(takes: list[Take], out: Path, settings: MappingSettings = DEFAULT_MAPPING, plots: bool = True) -> str:
    """Run the headline measurement, write every file, return the summary line."""
    out.mkdir(parents=True, exist_ok=True)
    rows = pd.DataFrame(headline(takes, settings))
    summary = summarise(rows)
    chain = pd.DataFrame(chain_rows(takes))
    _csv(rows, out / "emg_scores.csv")
    _csv(summary, out / "emg_summary.csv")
    if not chain.empty:
        _csv(chain, out / "emg_chain.csv")
    with atomic_output(out / "emg.md") as tmp:
        tmp.write_text(_markdown(summary, chain if not chain.empty else None))
    if plots:
        _plots(takes, rows, out, settings)
    return summary_line(summary)
