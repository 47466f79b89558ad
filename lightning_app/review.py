"""The Review tab's content: normal | sensor | cleaned videos of one session side by
side, played in sync, and the AU / emotion series of N, S and C with a cursor at the
current frame (the paper's Fig. 6 and 7 for one feature), plus the run's report.

Everything comes from the run folder: ``clean/manifest.yaml`` names each cleaned video's
``source`` sensor recording and session, ``config.yaml`` the training manifest (the
normal and sensor videos), ``evaluation/series/<recording>.csv`` the per-frame series
the evaluation wrote, ``report/report.md`` the paper tables. Videos are linked through
the app's file route, so only files under ``--runs``/``--data`` can be shown.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evaluation.metrics.timeseries import is_au
from lightning_app.paths import ServedRoots
from lightning_app.runs import run_config
from sensor_removal.core.manifest import ManifestError, Recording, load_manifest

#: Line colours of N, S, C (as in the report's curve plots).
COLORS = {"N": "black", "S": "tab:red", "C": "tab:blue"}
#: The cursor's element id in the SVG plot (moved by the page script).
CURSOR_ID = "review-cursor"


class ReviewError(ValueError):
    """The run has nothing to review yet (the message says what is missing)."""


@dataclass(frozen=True)
class Triplet:
    """N, S and C of one session: the cleaned video ``clean`` came from ``sensor``."""

    session: int
    normal: Recording
    sensor: Recording
    clean: Recording

    def videos(self) -> dict[str, Recording]:
        return {"N": self.normal, "S": self.sensor, "C": self.clean}


def _manifest_path(run: Path) -> Path:
    manifest = (run_config(run).get("data") or {}).get("manifest")
    if not manifest:
        raise ReviewError(f"{run / 'config.yaml'}: no data.manifest recorded")
    if isinstance(manifest, list):
        raise ReviewError(f"{run / 'config.yaml'}: a population fit (data.manifest is a list) has no one subject")
    path = Path(manifest)
    return path if path.is_absolute() else (run.parent / path)


def triplets(run: Path) -> list[Triplet]:
    """Every (N, S, C) the run's cleaning produced, by session then sensor recording."""
    cleaned_manifest = run / "clean" / "manifest.yaml"
    if not cleaned_manifest.is_file():
        raise ReviewError(f"{run.name}: no cleaned videos yet ({cleaned_manifest} is written when the fit ends)")
    try:
        cleaned = load_manifest(cleaned_manifest, check_videos=False, require_domains=("clean",))
        subject = load_manifest(_manifest_path(run), check_videos=False)
    except ManifestError as exc:
        raise ReviewError(str(exc)) from None
    by_name = {r.name: r for r in subject.recordings}
    out = []
    for c in sorted(cleaned.recordings, key=lambda r: (r.session, r.name)):
        sensor = by_name.get(c.source or "")
        normal = next((r for r in subject.by_condition("normal") if r.session == c.session), None)
        if sensor is not None and normal is not None:
            out.append(Triplet(c.session, normal, sensor, c))
    if not out:
        raise ReviewError(f"{run.name}: no cleaned video has a normal video of the same session")
    return out


def read_series(run: Path, triplet: Triplet) -> dict[str, pd.DataFrame]:
    """The per-frame series of N, S, C written by the evaluation (those present): of the
    composited videos' evaluation where the hook composited (the C shown here is the
    composited video; N and S are the same in both evaluations), else of the only one."""
    from sensor_removal.workflows.postfit import OURS_RESULTS

    folder = run / OURS_RESULTS if (run / OURS_RESULTS / "series").is_dir() else run / "evaluation"
    out = {}
    for key, rec in triplet.videos().items():
        f = folder / "series" / f"{rec.name}.csv"
        if f.is_file():
            out[key] = pd.read_csv(f, index_col="frame")
    return out


def series_features(series: dict[str, pd.DataFrame]) -> list[str]:
    """AUs first (AU43, blink, is excluded as in the paper), then emotions."""
    if not series:
        return []
    cols = [c for c in next(iter(series.values())).columns if c != "time_s"]
    aus = [c for c in cols if is_au(c) and c != "AU43"]
    return aus + [c for c in cols if not is_au(c)]


def series_svg(
    series: dict[str, pd.DataFrame], feature: str, names: dict[str, str]
) -> tuple[str, float, float, float, float]:
    """SVG of ``feature`` over time for N, S, C, with a vertical cursor drawn at the
    first time point. Returns the SVG and the mapping ``(t0, t1, x0, x1)`` from seconds
    to SVG x coordinates that the page script uses to move the cursor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.4), dpi=72)
    t_min, t_max = float("inf"), float("-inf")
    for key, df in series.items():
        if feature not in df:
            continue
        ax.plot(df["time_s"], df[feature], lw=1.0, color=COLORS[key], label=f"{key}: {names[key]}")
        t_min, t_max = min(t_min, float(df["time_s"].min())), max(t_max, float(df["time_s"].max()))
    if t_min >= t_max:
        t_min, t_max = 0.0, 1.0
    ax.set_xlim(t_min, t_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_title(feature, fontsize=10)
    ax.legend(fontsize=8, loc="upper right", ncol=3)
    cursor = ax.axvline(t_min, color="tab:green", lw=1.5)
    cursor.set_gid(CURSOR_ID)
    fig.tight_layout()
    fig.canvas.draw()
    x0 = float(ax.transData.transform((t_min, 0))[0])
    x1 = float(ax.transData.transform((t_max, 0))[0])
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prologue: the SVG goes inline into HTML
    return svg, t_min, t_max, x0, x1


def review_html(run: Path, triplet: Triplet, feature: str | None, roots: ServedRoots) -> str:
    """The videos, the frame slider and the series plot as one HTML block (the page
    script in :mod:`lightning_app.ui` keeps them in sync)."""
    urls, missing = {}, []
    for key, rec in triplet.videos().items():
        path = rec.path if rec.path.is_absolute() else (run / "clean" / rec.path)
        url = roots.url(path)
        if url is None or not path.is_file():
            missing.append(f"{rec.name} ({path})")
        urls[key] = url
    if missing:
        return (
            "<p class='review-missing'>Cannot show "
            + html.escape(", ".join(missing))
            + ": the app serves files only from under --runs and --data; "
            "start it with --data pointing at the recordings.</p>"
        )
    from sensor_removal.core.video import probe

    info = probe(triplet.sensor.path)
    names = {k: r.name for k, r in triplet.videos().items()}
    series = read_series(run, triplet)
    if series and feature:
        svg, t0, t1, x0, x1 = series_svg(series, feature, names)
        plot = f"<div class='review-plot' data-t0='{t0}' data-t1='{t1}' data-x0='{x0}' data-x1='{x1}'>{svg}</div>"
    else:
        plot = (
            "<p class='review-noseries'>No AU / emotion series: "
            "this run was evaluated without the <code>facial</code> metric.</p>"
        )
    labels = {"N": "normal", "S": "sensor", "C": "cleaned"}
    videos = "".join(
        f"<figure><video data-key='{k}' src='{html.escape(urls[k])}' preload='auto' muted playsinline></video>"
        f"<figcaption>{labels[k]}: {html.escape(names[k])}</figcaption></figure>"
        for k in ("N", "S", "C")
    )
    return (
        f"<div class='review-box' data-fps='{info.fps}'>"
        f"<div class='review-videos'>{videos}</div>"
        "<div class='review-controls'><button class='review-play' type='button'>play / pause</button>"
        f"<input class='review-slider' type='range' min='0' max='{info.frame_count - 1}' "
        "value='0' step='1' aria-label='frame'>"
        "<span class='review-frame'>frame 0 · 0.00 s</span></div>"
        f"{plot}</div>"
    )


def report_markdown(run: Path, roots: ServedRoots) -> str:
    """The run's ``report/report.md`` (paper tables), images linked through the file route."""
    report = run / "report" / "report.md"
    if not report.is_file():
        return f"No report yet: `{run.name}/report/report.md` is written by the post-fit benchmark."

    def link(m: re.Match) -> str:
        url = roots.url(report.parent / m.group(2))
        return f"![{m.group(1)}]({url})" if url else ""

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", link, report.read_text())
