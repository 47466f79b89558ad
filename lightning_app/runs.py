"""What the run folders under ``--runs`` hold, read from the files a fit writes.

A run folder is what ``python -m sensor_removal fit`` writes under
``--trainer.default_root_dir``: ``config.yaml`` (the resolved config), ``checkpoints/``,
``grids/epoch_XXX.png``, the CSV logs ``csv/version_N/metrics.csv`` (one version per
start of the fit, so a resumed run adds a version instead of overwriting the history;
any ``<name>/version_N/metrics.csv`` of a CSVLogger is read),
and after the post-fit hook ``clean/``, ``evaluation/`` and ``report/``. The app only
reads these files, so runs started in a shell and runs started from the app look the
same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

#: Checkpoint written when a fit is interrupted (SIGTERM from the app's Stop, Ctrl-C):
#: :class:`sensor_removal.training.callbacks.InterruptCheckpoint` in the configs.
INTERRUPTED_CKPT = "interrupted.ckpt"
#: Losses shown in the table and the curves (logged by :class:`sensor_removal.training.module.CycleGAN`).
LOSS_COLUMNS = ("train/loss_g_step", "train/loss_d_step")
#: A run whose files changed this recently counts as active when no app process owns it.
ACTIVE_S = 120.0


def is_run(folder: Path) -> bool:
    """A fit has written here (config, checkpoints or CSV logs)."""
    return (folder / "config.yaml").is_file() or (folder / "checkpoints").is_dir() or (folder / "csv").is_dir()


def find_runs(root: Path) -> list[Path]:
    """Run folders directly under ``root`` (or one level deeper: ``runs/<group>/<run>``)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_run(child):
            found.append(child)
        else:
            found.extend(sorted(g for g in child.iterdir() if g.is_dir() and is_run(g)))
    return found


def run_config(run: Path) -> dict:
    """The run's resolved ``config.yaml`` (empty when absent or unreadable). LightningCLI
    writes it into the first logger's folder: ``csv/version_N`` (the newest start) with
    the project's configs, the run folder when W&B is the only logger."""
    found = [
        run / "config.yaml",
        *sorted(run.glob("*/version_*/config.yaml"), key=lambda p: p.stat().st_mtime, reverse=True),
    ]
    path = next((p for p in found if p.is_file()), None)
    if path is None:
        return {}
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def read_metrics(run: Path) -> pd.DataFrame:
    """All CSV-logged metrics of the run, versions concatenated in order."""
    frames = []
    logs = [f for f in run.glob("*/version_*/metrics.csv") if f.parent.name.removeprefix("version_").isdigit()]
    for f in sorted(logs, key=lambda f: (f.parent.parent.name != "csv", int(f.parent.name.removeprefix("version_")))):
        try:
            frames.append(pd.read_csv(f))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue  # being written right now: the next refresh reads it
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def checkpoints(run: Path) -> list[Path]:
    """The run's checkpoints, newest first."""
    files = list((run / "checkpoints").glob("*.ckpt"))
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def resume_checkpoint(run: Path) -> Path | None:
    """The checkpoint a resume starts from: the one ``fit --ckpt_path last`` takes, the
    run's checkpoint with the most training (``global_step``) that loads."""
    from sensor_removal.core.checkpoint import resume_candidate, run_checkpoints

    return resume_candidate(run_checkpoints(run))


def latest_grid(run: Path) -> Path | None:
    grids = sorted((run / "grids").glob("epoch_*.png"))
    return grids[-1] if grids else None


def _last(df: pd.DataFrame, column: str) -> float | None:
    if column not in df:
        return None
    values = df[column].dropna()
    return float(values.iloc[-1]) if len(values) else None


@dataclass
class RunSummary:
    """One row of the Runs table."""

    path: Path
    subject: str
    epochs_done: int
    epochs_planned: int | None
    state: str
    last_losses: dict[str, float]
    val_metrics: dict[str, float]
    report: bool

    def row(self, root: Path) -> list:
        losses = ", ".join(f"{k.split('/')[-1].removesuffix('_step')} {v:.3f}" for k, v in self.last_losses.items())
        vals = ", ".join(f"{k.removeprefix('val/')} {v:.3f}" for k, v in self.val_metrics.items())
        planned = "?" if self.epochs_planned is None else str(self.epochs_planned)
        return [
            self.path.relative_to(root).as_posix(),
            self.subject,
            f"{self.epochs_done}/{planned}",
            self.state,
            losses,
            vals,
            "yes" if self.report else "no",
        ]


TABLE_HEADERS = ["run", "subject", "epochs", "state", "last losses", "val metrics", "report"]


def summarize_run(run: Path, running: bool = False, now: float | None = None) -> RunSummary:
    """Read the run's state from its files. ``running``: an app-started fit owns it."""
    cfg = run_config(run)
    df = read_metrics(run)
    epochs_done = 0
    if "epoch" in df and "train/loss_g" in df:  # epoch-level rows exist once an epoch ends
        done = df.dropna(subset=["train/loss_g"])["epoch"]
        epochs_done = int(done.max()) + 1 if len(done) else 0
    planned = (cfg.get("trainer") or {}).get("max_epochs")
    losses = {c: v for c in LOSS_COLUMNS if (v := _last(df, c)) is not None}
    vals = {c: v for c in df.columns if c.startswith("val/") and (v := _last(df, c)) is not None}
    report = (run / "report" / "report.md").is_file()
    if running:
        state = "running"
    elif (run / "benchmark_error.txt").is_file():
        state = "benchmark failed"
    elif report or (planned is not None and epochs_done >= int(planned)):
        state = "finished"
    elif (run / "checkpoints" / INTERRUPTED_CKPT).is_file() and resume_checkpoint(
        run
    ) == run / "checkpoints" / INTERRUPTED_CKPT:
        state = "stopped (resumable)"
    else:
        # What a training fit touches often: its CSV logs, checkpoints and grids (not a
        # walk over every file, which W&B folders make slow with many runs).
        touched = [*run.glob("*/version_*/metrics.csv"), *run.glob("checkpoints/*.ckpt"), *run.glob("grids/*.png")]
        newest = max((p.stat().st_mtime for p in touched), default=0.0)
        state = "active" if (time.time() if now is None else now) - newest < ACTIVE_S else "incomplete"
    return RunSummary(
        run,
        str(cfg.get("subject") or run.name),
        epochs_done,
        None if planned is None else int(planned),
        state,
        losses,
        vals,
        report,
    )


def loss_figure(df: pd.DataFrame, title: str):
    """Matplotlib figure: step losses of G and D (left), validation metrics per epoch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = [c for c in df.columns if c.startswith("val/")]
    fig, axes = plt.subplots(1, 2 if vals else 1, figsize=(9 if vals else 6, 3.2), squeeze=False)
    ax = axes[0, 0]
    for c in LOSS_COLUMNS:
        if c in df:
            d = df.dropna(subset=[c])
            ax.plot(d["step"], d[c], lw=1, label=c.split("/")[-1].removesuffix("_step"))
    ax.set_xlabel("step")
    ax.set_title(f"{title}: training losses", fontsize=10)
    if ax.lines:
        ax.legend(fontsize=8)
    if vals:
        ax = axes[0, 1]
        for c in vals:
            d = df.dropna(subset=[c])
            ax.plot(d["epoch"] + 1, d[c], marker="o", lw=1, label=c.removeprefix("val/"))
        ax.set_xlabel("epoch")
        ax.set_title("validation", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
