"""AU and emotion curves of N, S and C of one subject and session (like the paper's
Fig. 6 and 7), from a result folder's ``series/``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from evaluation.metrics.timeseries import EXCLUDED_AUS, is_au
from evaluation.protocol import SERIES_DIR, SUMMARY_JSON
from sensor_removal.core.video import atomic_output


def _plot_videos(d: Path, session: int = 1) -> dict[str, str] | None:
    """Names of N, S, C of ``session`` in result folder ``d`` (from summary.json)."""
    f = d / SUMMARY_JSON
    if not f.is_file():
        return None
    videos = json.loads(f.read_text()).get("videos") or {}
    in_session = {
        n: v for n, v in videos.items() if v.get("session") == session and (d / SERIES_DIR / f"{n}.csv").is_file()
    }
    normal = next((n for n, v in sorted(in_session.items()) if v["condition"] == "normal"), None)
    sensor = next((n for n, v in sorted(in_session.items()) if v["condition"] == "sensor"), None)
    clean = next(
        (n for n, v in sorted(in_session.items()) if v["condition"] == "clean" and v.get("source") == sensor), None
    )
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
        for ax in axes.ravel()[len(feats) :]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel("time (s)", fontsize=8)
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        top = 1.0 - 0.75 / height  # room for title and legend, in figure fraction
        fig.legend(
            handles, labels, loc="lower center", bbox_to_anchor=(0.5, top), ncol=len(series), fontsize=8, frameon=False
        )
        what = "Action Units (AU43 excluded)" if group == "au" else "emotions"
        fig.suptitle(f"{subject}, session {session}: {what}", fontsize=10, y=0.99)
        fig.tight_layout(rect=(0, 0, 1, top))
        path = out / f"fig_{group}_{subject}.png"
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(path)
    return paths
