"""``python -m evaluation``: run the protocol, report over subjects, fetch weights.

Subcommands::

    python -m evaluation run --manifest M [--cleaned C] --out RESULTS
        [--metrics lpips,fid,facial,groundtruth] [--seed N] [--lpips-pairs N] [--lpips-all-pairs]
        [--fid-sets K] [--fid-set-size N] [--crop-size S] [--device cpu|cuda|auto]
        [--au-models xgb,v2] [--shift joint|per_series] ...
    python -m evaluation report RESULTS [RESULTS ...] --out REPORT [--plot-subject S]
    python -m evaluation fetch-weights [--metrics lpips,fid,facial] [--au-models xgb,v2]
    python -m evaluation weights [--metrics ...]      # which weights are present

Errors a user can cause (missing weights, invalid manifests, unreadable videos, missing
result folders) print their message and exit with status 2, without a traceback; the
weights of the chosen metrics are checked before any work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from evaluation.weight_files import METRICS, WEIGHTED_METRICS, MissingWeightsError, WeightsError
from sensor_removal.core.argtypes import int_at_least

PROG = "python -m evaluation"


def _names(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """``a,b`` or the config-file spelling ``[a, b]``: names out of ``allowed`` (argparse type)."""
    items = tuple(dict.fromkeys(m.strip().lower() for m in text.strip().strip("[]").split(",") if m.strip()))
    bad = [m for m in items if m not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what}(s) {bad or text!r}; choose from {','.join(allowed)}")
    return items


def _metrics(text: str) -> tuple[str, ...]:
    return _names(text, METRICS, "metric")


_positive_int = int_at_least(1)


def _au_models(text: str) -> tuple[str, ...]:
    from evaluation.metrics.facial import AU_MODELS

    return _names(text, tuple(AU_MODELS), "AU model")


_AU_HELP = (
    "py-feat AU models, comma-separated (default xgb,v2: py-feat v1's classical xgb classifier on HOG + "
    "landmarks for the paper's random forest, the v2 multitask network for its JAA-Net)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate sensor removal: LPIPS, FID, facial time series, ground truth "
        "(Büchner et al., VISAPP 2023).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate one subject: results.csv, summary.json, series/")
    r.add_argument("--manifest", type=Path, required=True, help="the subject's manifest (normal and sensor recordings)")
    r.add_argument(
        "--cleaned",
        type=Path,
        default=None,
        help="manifest of the cleaned recordings (condition clean, source: sensor name)",
    )
    r.add_argument("--out", type=Path, required=True, help="results folder (created)")
    r.add_argument(
        "--metrics",
        type=_metrics,
        default=METRICS,
        help=f"comma-separated subset of {','.join(METRICS)} (default: all)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the frame draws (default 0)")
    r.add_argument(
        "--lpips-pairs", type=_positive_int, default=100, help="LPIPS frame pairs per comparison (default 100)"
    )
    r.add_argument(
        "--lpips-all-pairs",
        action="store_true",
        help="LPIPS over all frame pairs of the two segments (the paper's rule; one AlexNet pass per frame) "
        "instead of --lpips-pairs seeded pairs",
    )
    r.add_argument(
        "--fid-sets", type=_positive_int, default=5, help="FID draws per comparison, reported as mean (default 5)"
    )
    r.add_argument("--fid-set-size", type=_positive_int, default=128, help="frames per FID set (paper: 128)")
    r.add_argument(
        "--crop-size",
        type=_positive_int,
        default=None,
        help="face-crop side in px (default: the cleaned videos' size, else 256)",
    )
    r.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 (default auto)")
    r.add_argument("--batch-size", type=_positive_int, default=16, help="frames per network batch (default 16)")
    r.add_argument("--segments", default=None, help="comma-separated tasks (default: schaede,sentence,emotion,whole)")
    r.add_argument("--au-models", type=_au_models, default=("xgb", "v2"), help=_AU_HELP)
    r.add_argument(
        "--facial-stride", type=_positive_int, default=1, help="analyse every n-th frame with py-feat (default 1)"
    )
    r.add_argument(
        "--facial-cache", type=Path, default=None, help="py-feat series cache (default RESULTS/facial_cache)"
    )
    r.add_argument(
        "--facial-backend",
        choices=("openvino", "onnxruntime", "torch"),
        default="openvino",
        help="ours: run py-feat's networks as ONNX graphs in this runtime, fp32, checked against torch "
        "on the first batch (default openvino; torch opts out)",
    )
    r.add_argument("--max-shift-s", type=float, default=20.0, help="MAPE shift range in seconds (paper: 20)")
    r.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate although some sensor recordings have no cleaned version (listed in summary.json and the report)",
    )
    r.add_argument(
        "--dtw-window-s", type=float, default=None, help="DTW Sakoe-Chiba band in seconds (default: none, plain DTW)"
    )
    r.add_argument(
        "--shift",
        choices=("joint", "per_series"),
        default="joint",
        help="MAPE shift: one per recording pair, chosen over all series (default), or one per series",
    )

    rep = sub.add_parser("report", help="aggregate result folders into paper-style tables and plots")
    rep.add_argument(
        "results",
        type=Path,
        nargs="+",
        help="result folders of `run` (one per subject), or sweep run folders ROOT/*/<point>; "
        "several grid points are also compared",
    )
    rep.add_argument("--out", type=Path, required=True, help="report folder (created)")
    rep.add_argument(
        "--plot-subject", default=None, help="subject whose AU/emotion curves are plotted (default: the first)"
    )

    f = sub.add_parser("fetch-weights", help="download and verify pretrained weights (needs network)")
    f.add_argument("--metrics", type=_metrics, default=WEIGHTED_METRICS, help=f"default: {','.join(WEIGHTED_METRICS)}")
    f.add_argument("--au-models", type=_au_models, default=("xgb", "v2"), help=_AU_HELP)

    w = sub.add_parser("weights", help="list the weight files and whether they are present (no network)")
    w.add_argument("--metrics", type=_metrics, default=WEIGHTED_METRICS)
    w.add_argument("--au-models", type=_au_models, default=("xgb", "v2"), help=_AU_HELP)
    return p


def _run(args: argparse.Namespace) -> int:
    from evaluation.pairs import SEGMENTS
    from evaluation.protocol import run_protocol
    from evaluation.settings import ProtocolSettings

    segments = SEGMENTS if args.segments is None else tuple(s.strip() for s in args.segments.split(",") if s.strip())
    bad = [s for s in segments if s not in SEGMENTS]
    if bad:
        print(f"{PROG} run: error: unknown segment(s) {bad}; choose from {','.join(SEGMENTS)}", file=sys.stderr)
        return 2
    try:
        settings = _settings(args, segments, ProtocolSettings)
    except ValueError as exc:
        print(f"{PROG} run: error: {exc}", file=sys.stderr)
        return 2
    from filelock import FileLock, Timeout

    # One writer per --out: two runs into one folder would mix their results and series.
    out = Path(args.out)
    lock_path = out.parent / f".{out.name}.evaluation.lock"
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        print(
            f"{PROG} run: error: {out}: another `evaluation run` is writing there (lock {lock_path}); "
            "wait for it to finish or choose another --out",
            file=sys.stderr,
        )
        return 2
    try:
        path = run_protocol(args.manifest, args.cleaned, out, settings)
    finally:
        lock.release()
        lock_path.unlink(missing_ok=True)
    print(path)
    return 0


def _settings(args: argparse.Namespace, segments: tuple[str, ...], cls: type):
    return cls(
        metrics=tuple(args.metrics),
        segments=segments,
        seed=args.seed,
        lpips_pairs=args.lpips_pairs,
        lpips_all_pairs=args.lpips_all_pairs,
        fid_sets=args.fid_sets,
        fid_set_size=args.fid_set_size,
        crop_size=args.crop_size,
        device=args.device,
        batch_size=args.batch_size,
        au_models=tuple(args.au_models),
        facial_stride=args.facial_stride,
        facial_cache=args.facial_cache,
        facial_backend=args.facial_backend,
        max_shift_s=args.max_shift_s,
        dtw_window_s=args.dtw_window_s,
        shift=args.shift,
        allow_missing=args.allow_missing,
    )


def _report(args: argparse.Namespace) -> int:
    from evaluation.report import missing_cleaned
    from evaluation.report.grid import make_grid_report

    # Sweep run folders (<root>/<subject>/<point>) are grouped by grid point.
    written = make_grid_report(args.results, args.out, plot_subject=args.plot_subject)
    for name, path in written.items():
        print(f"{name}: {path}")
    for subject, names in missing_cleaned([r for r in args.results if r.is_dir()]).items():
        print(f"note: {subject}: evaluated without cleaned versions of {', '.join(names)} (--allow-missing)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from evaluation.weights import fetch_weights

    metrics = [m for m in args.metrics if m in WEIGHTED_METRICS]
    fetch_weights([m for m in metrics if m != "facial"])
    if "facial" in metrics:
        for model in args.au_models:
            fetch_weights(["facial"], feat_model_set=model)
    return 0


def _weights(args: argparse.Namespace) -> int:
    from evaluation.weights import available_metrics, required_weights

    metrics = [m for m in args.metrics if m in WEIGHTED_METRICS]
    files = required_weights([m for m in metrics if m != "facial"])
    if "facial" in metrics:
        files += [w for model in args.au_models for w in required_weights(["facial"], feat_model_set=model)]
    for w in {w.path: w for w in files}.values():  # the face model is shared
        print(f"{'present' if w.present else 'MISSING'}  {w.metric:7s} {w.path}")
    print(f"available metrics: {','.join(available_metrics() + ['groundtruth'])}")
    print(f"torch hub folder (LPIPS, FID): {_hub_dir()}  (TORCH_HOME moves it)")
    if "facial" in args.metrics:
        from evaluation.metrics.facial import CACHE_ENV, feat_cache_dir

        print(
            f"py-feat folder (facial): {feat_cache_dir()}  (default ~/.cache/sensor-removal/feat; {CACHE_ENV} moves it)"
        )
    return 0


def _hub_dir() -> str:
    import torch.hub

    return f"{torch.hub.get_dir()}/checkpoints"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is for the user (no traceback)."""
    from evaluation.metrics.groundtruth import GroundTruthError
    from evaluation.pairs import PairingError
    from evaluation.report import ReportError
    from sensor_removal.core.errors import UserError
    from sensor_removal.core.manifest import ManifestError
    from sensor_removal.core.video import VideoError

    errors: list[type[BaseException]] = [
        WeightsError,
        ManifestError,
        PairingError,
        GroundTruthError,
        ReportError,
        VideoError,
        FileNotFoundError,
        FileExistsError,  # --out names a file
        UserError,  # e.g. DeviceError: --device cuda without CUDA
    ]
    try:
        from evaluation.metrics.facial import FacialError, FacialWeightsMissing

        errors += [FacialWeightsMissing, FacialError]
    except ImportError:  # pragma: no cover - facial module absent
        pass
    try:
        from sensor_removal.synthetic import SynthError

        errors.append(SynthError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse printed usage and the reason
        return 0 if exc.code in (0, None) else 2
    handlers = {"run": _run, "report": _report, "fetch-weights": _fetch, "weights": _weights}
    try:
        return handlers[args.command](args)
    except MissingWeightsError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except _user_errors() as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from sensor_removal.core.diskfull import disk_full, disk_full_message

        full = disk_full(exc)
        if full is None:
            raise
        what = "the results" if args.command == "run" else "the report (it stays marked incomplete)"
        print(f"{PROG} {args.command}: error: {disk_full_message(full, what)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
