"""``python -m sensor_removal emg fit|predict|report``: the expression <-> muscle mapping
from the command line (docs/emg.md).

* ``fit``: fit one mapping on all sensor takes of a subject (features from the chosen
  video source), score it on held-out takes, save it (``mapping.pt``) and its scores;
* ``predict``: a saved mapping on one recording -> CSV of predicted envelopes (Exp2EMG)
  or geometry series (EMG2Exp);
* ``report``: the headline measurement (ours): ground-truth vs sensor vs cleaned video,
  both directions, with the chain's truth check on the synthetic subject; writes
  ``emg_scores.csv``, ``emg_summary.csv``, ``emg.md`` and plots, prints one line.

Exit codes: 0 done, 2 bad input (manifest, sEMG file, arguments).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

PROG = "python -m sensor_removal emg"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest", type=Path, required=True, help="the subject's manifest (sensor recordings with emg: entries)"
    )
    p.add_argument(
        "--cleaned",
        type=Path,
        default=None,
        help="the cleaned-recordings manifest written by `clean` (for --source cleaned)",
    )
    p.add_argument(
        "--model", choices=("ridge", "mlp"), default="ridge", help="lagged ridge (default) or the small Lightning MLP"
    )
    p.add_argument("--cache", type=Path, default=None, help="landmark cache folder (default: OUT/landmarks)")
    p.add_argument(
        "--aus",
        action="store_true",
        help="add py-feat's AU series to the landmark features (needs its weights: python -m evaluation fetch-weights)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Expression <-> muscle mapping from synchronised sEMG (ours, after EIFER)."
    )
    sub = ap.add_subparsers(dest="action", required=True)
    fit = sub.add_parser("fit", help="fit and score one mapping, save it")
    _common(fit)
    fit.add_argument(
        "--source",
        choices=("cleaned", "sensor", "ground_truth"),
        default="cleaned",
        help="which video the features come from",
    )
    fit.add_argument("--direction", choices=("exp2emg", "emg2exp"), default="exp2emg")
    fit.add_argument("--out", type=Path, required=True, help="output folder")
    fit.add_argument(
        "--wandb",
        action="store_true",
        help="log settings, held-out scores and the MLP's training curve to W&B (offline; `wandb sync` uploads)",
    )
    pred = sub.add_parser("predict", help="run a saved mapping on one recording")
    _common(pred)
    pred.add_argument("--mapping", type=Path, required=True, help="mapping.pt written by `emg fit`")
    pred.add_argument("--recording", required=True, help="name of a sensor recording in the manifest")
    pred.add_argument("--out", type=Path, required=True, help="CSV to write")
    rep = sub.add_parser("report", help="the headline measurement: ground truth vs sensor vs cleaned")
    _common(rep)
    rep.add_argument("--out", type=Path, required=True, help="output folder")
    return ap


def _load(args: argparse.Namespace, out: Path) -> tuple[list, Path]:
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.emg.headline import subject_takes

    subject = load_manifest(args.manifest, check_videos=False)
    cleaned = load_manifest(args.cleaned, check_videos=False, require_domains=("clean",)) if args.cleaned else None
    cache = args.cache or out / "landmarks"
    analyzer = None
    if args.aus:
        from evaluation.metrics.facial import FacialAnalyzer

        analyzer = FacialAnalyzer(device="cpu")
    return subject_takes(subject, cleaned, cache, au_analyzer=analyzer), cache


def _fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from sensor_removal.core.video import atomic_output
    from sensor_removal.emg.headline import score
    from sensor_removal.emg.mapping import DEFAULT_MAPPING
    from sensor_removal.emg.persist import save_mapping
    from sensor_removal.emg.report import fit_all

    if args.source == "cleaned" and args.cleaned is None:
        print(
            f"{PROG} fit: error: --source cleaned needs the cleaned-recordings manifest"
            " (--cleaned, written by `clean`)",
            file=sys.stderr,
        )
        return 2
    takes, _ = _load(args, args.out)
    if not all(args.source in t.features for t in takes):
        print(
            f"{PROG} fit: error: source {args.source!r} is not available for every take (give --cleaned for cleaned)",
            file=sys.stderr,
        )
        return 2
    settings = replace(DEFAULT_MAPPING, model=args.model)
    rows = pd.DataFrame(score(takes, args.source, args.direction, settings))
    logger = None
    if args.wandb:
        from pytorch_lightning.loggers import WandbLogger

        logger = WandbLogger(
            project="sensor-removal-emg",
            save_dir=str(args.out),
            offline=True,
            tags=["emg", args.direction, args.source],
        )
        logger.log_hyperparams({**asdict(settings), "direction": args.direction, "source": args.source})
        # the held-out scores, per channel and averaged, like fit's validation metrics
        logger.log_metrics(
            {
                "emg/heldout_r2": float(rows["r2"].mean()),
                "emg/heldout_r": float(rows["r"].mean()),
                **{f"emg/r2/{c}": float(v) for c, v in zip(rows["channel"], rows["r2"], strict=True)},
            }
        )
    mapping = fit_all(takes, args.source, args.direction, settings, logger)
    if logger is not None:
        logger.experiment.finish()
    args.out.mkdir(parents=True, exist_ok=True)
    save_mapping(mapping, args.out / "mapping.pt", direction=args.direction, source=args.source)
    with atomic_output(args.out / "scores.csv") as tmp:
        rows.to_csv(tmp, index=False)
    print(
        f"{args.direction} from {args.source} video, {args.model}: "
        f"mean held-out R² {rows['r2'].mean():.3f}, r {rows['r'].mean():.3f} "
        f"({len(takes)} takes); mapping {args.out / 'mapping.pt'}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from sensor_removal.core.video import atomic_output
    from sensor_removal.emg.mapping import predict
    from sensor_removal.emg.persist import load_mapping
    from sensor_removal.emg.report import inputs_of

    mapping, meta = load_mapping(args.mapping)
    takes, _ = _load(args, args.out.parent)
    take = next((t for t in takes if t.name == args.recording), None)
    if take is None:
        print(
            f"{PROG} predict: error: no sensor recording {args.recording!r} with an emg: entry in {args.manifest}",
            file=sys.stderr,
        )
        return 2
    y = predict(mapping, inputs_of(take, meta["source"], meta["direction"]))
    table = pd.DataFrame(y, columns=list(mapping.output_names))
    table.insert(0, "time_s", table.index / take.fps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        table.to_csv(tmp, index_label="frame")
    print(f"{meta['direction']} of {args.recording}: {len(table)} frames -> {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sensor_removal.emg.mapping import DEFAULT_MAPPING
    from sensor_removal.emg.report import write_report

    takes, _ = _load(args, args.out)
    line = write_report(takes, args.out, replace(DEFAULT_MAPPING, model=args.model))
    print(line)
    print(f"report: {args.out / 'emg.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 2
    from evaluation.weight_files import WeightsError
    from sensor_removal.core.manifest import ManifestError
    from sensor_removal.core.video import VideoError
    from sensor_removal.emg.readers import EmgFileError

    try:
        return {"fit": _fit, "predict": _predict, "report": _report}[args.action](args)
    except (ManifestError, EmgFileError, VideoError, ValueError, WeightsError) as exc:
        print(f"{PROG} {args.action}: error: {exc}", file=sys.stderr)
        return 2
