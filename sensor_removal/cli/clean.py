"""``python -m sensor_removal clean``: the command line of :mod:`sensor_removal.cleaning`.

Kept apart from the pipeline so that ``clean --help`` and argument errors answer without
loading PyTorch; the pipeline is imported once the arguments are known to be good.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensor_removal.core.argtypes import int_at_least, unify_option_names
from sensor_removal.core.video import MAX_CRF

if TYPE_CHECKING:  # the pipeline (and PyTorch) is imported once the arguments are good
    from sensor_removal.cleaning.options import CleanOptions

PROG = "python -m sensor_removal clean"


def _parse_bbox(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--bbox must be X,Y,W,H in integer pixels, got {text!r}")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    """The ``clean`` flags: one ``add_argument`` per flag, hence the length."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Remove the sensors from whole videos with a trained generator G_S→N. Either every "
            "sensor recording of a subject (--manifest, outputs DIR/<name>.mp4 and DIR/manifest.yaml) "
            "or one video (--video with --bbox, output OUT.mp4)."
        ),
    )
    p.add_argument(
        "--ckpt",
        "--ckpt-path",
        dest="ckpt",
        type=Path,
        required=True,
        help="Lightning checkpoint of the subject's CycleGAN (also --ckpt_path, as in fit)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--manifest", type=Path, help="subject manifest (default: the one recorded in the checkpoint)")
    src.add_argument("--video", type=Path, help="one video to clean (needs --bbox)")
    p.add_argument("--out", type=Path, required=True, help="output folder (--manifest) or output .mp4 (--video)")
    p.add_argument("--recordings", nargs="+", metavar="NAME", help="clean only these sensor recordings")
    p.add_argument("--bbox", type=_parse_bbox, help="face box X,Y,W,H of --video, in pixels")
    p.add_argument(
        "--paste-back", action="store_true", help="also write <name>.full.mp4: the full frame with the cleaned crop"
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=None,
        help="frames per generator call (default: 16 on CUDA, 2 on CPU)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 on CUDA, fp32 on CPU"
    )
    p.add_argument("--codec", choices=["h264", "h264-lossless", "mp4v"], default="h264")
    p.add_argument(
        "--crf",
        type=int_at_least(0, MAX_CRF),
        default=12,
        help=f"H.264 quality 0..{MAX_CRF} (lower is better; 12 is near-lossless)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never the inputs)")
    p.add_argument("--feather", type=int_at_least(0), default=None, help="paste-back blend ramp in pixels (default 8)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (default: a bar in a terminal, plain lines every 30 s otherwise)",
    )
    g = p.add_argument_group(
        "compositing (our extension, not the paper's method)",
        "auto: keep every pixel the sensors did not touch: output M*G(S) + (1-M)*S with a sensor "
        "mask M; off: the paper's full repaint G(S). Defaults (auto, mask method reference, steady "
        "0.9) are ours, chosen by measurement; the paper's output is --composite off (steady then 0).",
    )
    g.add_argument("--composite", choices=["auto", "off"], default=None, help="(default: auto)")
    g.add_argument("--mask-video", action="store_true", help="also write <name>.mask.mp4, the compositing mask")
    g.add_argument("--keep-repaint", action="store_true", help="also write <name>.repaint.mp4, the full repaint")
    g.add_argument(
        "--detail-video",
        choices=["on", "off"],
        default="on",
        help="with the sub-pixel composite, also write <name>.detail.mp4: the cleaned face at the mask's "
        "finer size (up to the bbox's resolution), the recording's own pixels away from the sensors; "
        "--paste-back then uses it (default on)",
    )
    g.add_argument(
        "--mask-method",
        choices=["change", "reference"],
        default=None,
        help="change: what the generator changed; reference (default): also colours the normal "
        "domain never shows at that place (from the checkpoint, stored at fit time; for older "
        "checkpoints from the manifest's normal recordings). Not given and no reference to be had: "
        "change, with a note; given: an error",
    )
    g.add_argument(
        "--mask-novelty",
        type=float,
        default=None,
        help="reference: colour distance (8-bit levels), on the finer cut, above which a pixel is sensor (default 12)",
    )
    g.add_argument(
        "--mask-rank",
        type=int,
        default=None,
        help="reference: novelty is the distance to the rank-th closest normal colour (default 1)",
    )
    g.add_argument(
        "--mask-subpixel",
        choices=["on", "off"],
        default=None,
        help="reference: composite at the mask's finer cut, so each crop pixel takes the generator's "
        "colour for just the part a sensor covers (default on); off: blend with the crop-level mask",
    )
    g.add_argument(
        "--mask-threshold",
        type=float,
        default=None,
        help="change in 8-bit levels above which a pixel is sensor (default 40)",
    )
    g.add_argument(
        "--mask-dilate", type=float, default=None, help="mask dilation, fraction of the crop side (default 0.02)"
    )
    g.add_argument(
        "--mask-hysteresis",
        type=float,
        default=None,
        help="keep a pixel that was sensor in the previous frame while its change exceeds this "
        "fraction of the threshold; 1: off (default 0.6)",
    )
    g.add_argument(
        "--steady",
        type=float,
        default=None,
        help="carry the repainted pixels over from frame to frame where the face did not move: "
        "strength in [0, 1), 0 off (the paper's frame-by-frame output; default 0.9, 0 with --composite off)",
    )
    g.add_argument(
        "--steady-motion",
        type=float,
        default=None,
        help="frame-to-frame change (8-bit levels) that counts as motion, not flicker (default 30)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m sensor_removal clean …``. Exit 0: all cleaned; 1: a recording failed;
    2: bad arguments or input (nothing cleaned)."""
    parser = build_parser()
    try:
        args = parser.parse_args(unify_option_names(parser, sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.video is not None and args.bbox is None:
        parser.print_usage(sys.stderr)
        print("error: --video needs --bbox X,Y,W,H", file=sys.stderr)
        return 2
    if args.video is None and (args.bbox is not None):
        print("error: --bbox goes with --video (a manifest has its own bboxes)", file=sys.stderr)
        return 2
    if args.video is not None and args.recordings:
        print("error: --recordings goes with --manifest", file=sys.stderr)
        return 2

    try:
        options = _clean_options(args)
    except _BadOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from sensor_removal.cleaning import CLEAN_MANIFEST

    with _signals_interrupt():
        try:
            return _run(args, options)
        except Interrupted as exc:
            where = "" if args.video is not None else f"; finished recordings are listed in {args.out / CLEAN_MANIFEST}"
            print(f"interrupted by {exc.signal_name}: unfinished outputs removed{where}", file=sys.stderr)
            return 128 + exc.signum


class _BadOption(ValueError):
    """An option value the settings classes refuse (exit 2)."""


def _clean_options(args: argparse.Namespace) -> CleanOptions:
    """The :class:`CleanOptions` of the parsed flags; each settings class checks its own
    fields, and its message is put in the flag's words (:class:`_BadOption`)."""
    from sensor_removal.cleaning import DEFAULT_COMPOSITE, DEFAULT_FEATHER, CleanError, CleanOptions
    from sensor_removal.cleaning.mask import MaskSettings
    from sensor_removal.cleaning.settings import DEFAULT_MASK_METHOD, DEFAULT_STEADY
    from sensor_removal.cleaning.steady import SteadySettings

    given: dict[str, Any] = {
        k: v
        for k, v in (
            ("threshold", args.mask_threshold),
            ("dilate", args.mask_dilate),
            ("hysteresis", args.mask_hysteresis),
            ("method", DEFAULT_MASK_METHOD if args.mask_method is None else args.mask_method),
            ("novelty", args.mask_novelty),
            ("rank", args.mask_rank),
            ("subpixel", None if args.mask_subpixel is None else args.mask_subpixel == "on"),
        )
        if v is not None
    }
    try:
        mask = MaskSettings(**given)
    except ValueError as exc:
        raise _BadOption(str(exc).replace("MaskSettings: ", "--mask-")) from None
    composite = DEFAULT_COMPOSITE if args.composite is None else args.composite
    try:
        steady = SteadySettings(
            strength=(DEFAULT_STEADY if composite == "auto" else 0.0) if args.steady is None else args.steady,
            **{k: v for k, v in (("motion", args.steady_motion),) if v is not None},
        )
    except ValueError as exc:
        words = str(exc).replace("SteadySettings: strength", "--steady")
        raise _BadOption(words.replace("SteadySettings: motion", "--steady-motion")) from None
    try:
        return CleanOptions(
            paste_back=args.paste_back,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            codec=args.codec,
            crf=args.crf,
            feather=DEFAULT_FEATHER if args.feather is None else args.feather,
            progress=not args.no_progress,
            composite=composite,
            mask=mask,
            mask_video=args.mask_video,
            keep_repaint=args.keep_repaint,
            detail_video=args.detail_video == "on",
            overwrite=args.overwrite,
            steady=steady,
            mask_fallback=args.mask_method is None,
        )
    except CleanError as exc:  # argparse has checked every field; kept for callers of main()
        raise _BadOption(str(exc)) from None


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (what SLURM sends before killing a job) arrived. A
    ``KeyboardInterrupt``, so every cleanup path that handles Ctrl-C handles both."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn the first SIGINT / SIGTERM into :class:`Interrupted` in the main thread;
    later ones are ignored so that the cleanup they started can finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run(args: argparse.Namespace, options: CleanOptions) -> int:
    from sensor_removal.cleaning import (
        CleanError,
        check_video_outputs,
        checkpoint_reference,
        clean_subject,
        clean_video,
        full_output_path,
        load_generator,
    )
    from sensor_removal.cleaning.generator import missing_reference_error
    from sensor_removal.core.device import resolve_device
    from sensor_removal.core.errors import UserError
    from sensor_removal.core.manifest import ManifestError
    from sensor_removal.core.video import VideoError, check_bbox, probe

    try:
        if args.video is not None:
            full = full_output_path(args.out) if args.paste_back else None
            check_video_outputs(args.video, args.out, full, overwrite=args.overwrite)
            info = probe(args.video)  # a missing or unreadable input is bad input: exit 2
            why = check_bbox(args.bbox, info.width, info.height)
            if why:
                raise CleanError(f"{args.video}: --bbox: {why}")
            dev = resolve_device(args.device)
            generator, settings = load_generator(args.ckpt, dev)
            reference = None
            if options.compositing and options.mask.method == "reference":
                reference = checkpoint_reference(settings, dev)
                if reference is None and not options.mask_fallback:
                    raise missing_reference_error(settings)
        else:
            report = clean_subject(args.ckpt, args.manifest, args.out, args.recordings, options)
    except (UserError, VideoError, ManifestError, OSError) as exc:  # CleanError, DeviceError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.video is None:
        print(report.summary())
        return 0 if report.ok else 1
    try:
        result = clean_video(
            generator, settings, args.video, args.bbox, args.out, replace(options, device=dev), reference=reference
        )
    except (UserError, VideoError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    extra = f" and {result.full_out}" if result.full_out else ""
    print(f"done: {result.frames} frames -> {result.out}{extra} ({result.frames_per_s:.1f} frames/s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
