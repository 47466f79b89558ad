"""What the post-fit benchmark shows on the W&B run, so runs can be judged and compared
there without opening the run folder:

* headline scalars ``benchmark/<metric>/<comparison>`` (e.g. ``benchmark/lpips/N-C``,
  ``benchmark/lpips/N-S``, ``benchmark/au_dtw/N-C``, ``benchmark/psnr_mask/GT-C``), the
  paper's comparisons (Sec. 4) over the whole video, which W&B's run table can sort by;
* ``results.csv`` as a table (``benchmark/results``) and, with ``summary.json`` and the
  report, as an artifact ``benchmark-<subject>``;
* the report's tables and plots (``benchmark/<table>``);
* a short clip ``benchmark/sample``: a sensor recording's face crop and its cleaned
  version side by side;
* when the hook composited (ours), the second evaluation — on the composited videos, where
  the names above hold the paper's full repaint — under the prefix ``ours/``: scalars
  ``ours/benchmark/<metric>/<comparison>``, ``ours/benchmark/results`` and the report's
  ``composited_*`` tables as ``ours/benchmark/<table>``. The paper's names never change
  meaning with the compositing option.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: Seconds of the side-by-side sample clip.
SAMPLE_SECONDS = 5.0
#: Comparison labels in scalar names (ASCII, W&B sorts and filters them).
COMPARISONS: dict[str, str] = {"baseline": "N1-N2", "sensor": "N-S", "clean": "N-C"}
#: Ground-truth rows compare a video with its sensor-free truth, not with N.
GROUND_TRUTH_COMPARISONS: dict[str, str] = {"sensor": "GT-S", "clean": "GT-C"}
#: Prefix of every key of the evaluation on our composited videos.
OURS_PREFIX = "ours/"


def _key(name: str) -> str:
    """W&B key of a report file: ``benchmark/<name>``; a table on the composited video
    (``composited_<table>``) goes under ``ours/benchmark/<table>``."""
    from evaluation.report.ours import COMPOSITED_PREFIX  # the report's side; imported when logging

    if name.startswith(COMPOSITED_PREFIX):
        return f"{OURS_PREFIX}benchmark/{name.removeprefix(COMPOSITED_PREFIX)}"
    return f"benchmark/{name}"


def _summary(results_dir: Path | None) -> dict:
    if results_dir is not None and (results_dir / "summary.json").is_file():
        return json.loads((results_dir / "summary.json").read_text())
    return {}


def headline_scalars(summary: dict) -> dict[str, float]:
    """``benchmark/<metric>/<comparison>`` from the ``means`` of a ``summary.json``
    (segment ``whole`` where present, else the mean over the task segments)."""
    out: dict[str, float] = {}
    for metric, by_kind in (summary.get("means") or {}).items():
        labels = GROUND_TRUTH_COMPARISONS if metric.startswith(("psnr", "ssim")) else COMPARISONS
        for kind, by_segment in (by_kind or {}).items():
            if kind not in labels or not by_segment:
                continue
            values = [by_segment["whole"]] if by_segment.get("whole") is not None else list(by_segment.values())
            finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            if finite:
                out[f"benchmark/{metric}/{labels[kind]}"] = float(np.mean(finite))
    return out


def write_sample(
    sensor_video: Path, bbox: tuple[int, int, int, int], cleaned_video: Path, out: Path, seconds: float = SAMPLE_SECONDS
) -> Path:
    """The first ``seconds`` of ``sensor_video``'s face crop (cut as the cleaner cuts it)
    and of ``cleaned_video``, side by side, as H.264 that browsers play."""
    from sensor_removal.core.video import crop_resize, iter_frames, probe, write_video

    info = probe(cleaned_video)
    n = max(1, min(info.frame_count, int(round(seconds * info.fps))))
    cleaned = [f for _, f in iter_frames(cleaned_video, range(n))]
    size = cleaned[0].shape[0]
    sensor = [crop_resize(f, bbox, size) for _, f in iter_frames(sensor_video, range(len(cleaned)))]
    return write_video(out, (np.hstack([a, b]) for a, b in zip(sensor, cleaned, strict=True)), info.fps)


def log_benchmark(
    loggers: list, files: dict[str, Path], results_dir: Path | None = None, ours_results_dir: Path | None = None
) -> None:
    """Log the benchmark to every :class:`WandbLogger` in ``loggers`` (others are skipped):
    ``files`` are the report's (CSV tables, PNG plots) and the sample clip (MP4);
    ``results_dir`` holds ``results.csv`` and ``summary.json`` (the paper's method),
    ``ours_results_dir`` those of the composited videos (logged under ``ours/``)."""
    import pandas as pd
    from pytorch_lightning.loggers import WandbLogger

    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    summary, ours = _summary(results_dir), _summary(ours_results_dir)
    for logger in wandb_loggers:
        for name, path in files.items():
            if path.suffix == ".csv":
                logger.log_table(key=_key(name), dataframe=pd.read_csv(path))
            elif path.suffix == ".png":
                logger.log_image(key=_key(name), images=[str(path)])
            elif path.suffix == ".mp4":
                logger.log_video(key=_key(name), videos=[str(path)], caption=["sensor | cleaned"], format=["mp4"])
        for prefix, folder in (("", results_dir), (OURS_PREFIX, ours_results_dir)):
            if folder is not None and (folder / "results.csv").is_file():
                logger.log_table(key=f"{prefix}benchmark/results", dataframe=pd.read_csv(folder / "results.csv"))
        if results_dir is not None and (results_dir / "results.csv").is_file():
            _log_artifact(logger, summary.get("subject") or "subject", results_dir, files, ours_results_dir)
        scalars = headline_scalars(summary)
        scalars.update({f"{OURS_PREFIX}{k}": v for k, v in headline_scalars(ours).items()})
        if scalars:
            logger.log_metrics(scalars)


def _log_artifact(
    logger, subject: str, results_dir: Path, files: dict[str, Path], ours_results_dir: Path | None = None
) -> None:
    import wandb

    artifact = wandb.Artifact(
        f"benchmark-{subject}",
        type="evaluation",
        description="results.csv, summary.json and the report of the post-fit benchmark"
        + ("; evaluation_ours/: the same on the composited videos (ours)" if ours_results_dir else ""),
    )
    for path in [
        results_dir / "results.csv",
        results_dir / "summary.json",
        *(p for p in files.values() if p.suffix != ".mp4"),
    ]:
        if path.is_file():
            artifact.add_file(str(path))
    for name in ("results.csv", "summary.json"):
        if ours_results_dir is not None and (ours_results_dir / name).is_file():
            artifact.add_file(str(ours_results_dir / name), name=f"evaluation_ours/{name}")
    logger.experiment.log_artifact(artifact)
