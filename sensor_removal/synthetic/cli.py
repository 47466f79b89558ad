"""``python -m sensor_removal synth``: the synthetic subject from the command line."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sensor_removal.core.argtypes import int_at_least
from sensor_removal.synthetic.arguments import (
    DEFAULT_FPS,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    SynthError,
)
from sensor_removal.synthetic.files import make_subject


def _size_arg(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WxH in pixels, e.g. 256x256; got {text!r}")
    return int(parts[0]), int(parts[1])


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    parse.__name__ = kind.__name__
    return parse


_nonneg_int = int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sensor_removal synth",
        description=(
            "Render the built-in synthetic subject: 2 sessions x (1 normal + 2 sensor) face "
            "videos, sensor-free ground truth, sensor masks, expression signals and a manifest."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument(
        "--seconds",
        type=_positive(float),
        default=DEFAULT_SECONDS,
        help=f"length of each video (default {DEFAULT_SECONDS:g})",
    )
    p.add_argument(
        "--fps",
        type=_positive(float),
        default=DEFAULT_FPS,
        help=f"frame rate (default {DEFAULT_FPS:g})",
    )
    p.add_argument(
        "--size",
        type=_size_arg,
        default=DEFAULT_SIZE,
        metavar="WxH",
        help=f"frame size, even, >= 64 (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--subject", default="synth01", help="subject name in the manifest (default synth01)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m sensor_removal synth``: returns 0 on success, 2 on bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed usage and the reason
        return 0 if exc.code in (0, None) else 2
    t0 = time.perf_counter()
    try:
        manifest = make_subject(
            args.out,
            seconds=args.seconds,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            subject=args.subject,
        )
    except SynthError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    from sensor_removal.core.manifest import load_manifest

    subj = load_manifest(manifest, check_videos=False)
    base = manifest.parent
    n = int(round(args.seconds * args.fps))
    print(
        f"synthetic subject {subj.subject!r}: {len(subj.recordings)} recordings, {n} frames each "
        f"({n / args.fps:g} s at {args.fps:g} fps, {args.size[0]}x{args.size[1]}), "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    for r in subj.recordings:
        extra = "".join(f"  {p.relative_to(base)}" for p in (r.ground_truth, r.mask) if p is not None)
        print(
            f"  session {r.session} {r.condition:6s} {r.path.relative_to(base)}{extra}  "
            f"{r.name}.expr.csv  bbox {list(r.bbox)}"
        )
    print(f"manifest: {manifest}")
    return 0
