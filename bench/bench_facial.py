"""Facial analysis throughput (py-feat, both default AU models, stand-in weights of the real architectures).

Side by side in one run, on one face video, each row running the evaluation's default
AU models over the same frames — py-feat v1 ``xgb`` (RetinaFace, MobileFaceNet landmarks,
HOG + xgboost AUs, ResMaskNet emotions) and v2 (RetinaFace + the multitask network):

* per frame: ``batch_size=1`` and none of the fast paths — one frame per forward;
* today: the path as of issue 15 (commit fc8c36f): ``batch_size=16`` through py-feat's
  tensor path, decode once, per-video cache — ``channels_last=False,
  fold_batchnorm=False, face_detectors=None`` reproduce it;
* ours, torch (issue 21's default, ``backend="torch"``): the same batches, plus
  RetinaFace shared by the two AU models (the second one's face detection answered from
  memory, bit-identical), channels_last weights and BatchNorm folded into the
  convolutions (float rounding only);
* ours + onnxruntime: plus py-feat's networks as ONNX graphs in ONNX Runtime, fp32
  (checked against torch within 1e-4 on the first batch);
* ours (default, OpenVINO): the same graphs in OpenVINO's CPU plugin, fp32;
* ours + bf16 (opt in): torch with bf16 autocast per network (values move; not the
  default; emulated, so slow, on CPUs without native bf16).

Every analyzer is built and run once on other frames before the clock starts (oneDNN
sets up its kernels per input shape on the first call; BatchNorm is folded then).
Rows are measured in interleaved rounds and the fastest round counts (the machine is
shared). Frames/s count frames analysed by *both* models; per-model seconds are shown.

Then ``evaluation run``'s work (``run_protocol`` with lpips, fid, facial — both AU
models — on the synthetic subject, stand-in weights) with today's analyzers vs ours,
wall time; and, as a separate row, a second run into a new results folder with a new
cleaned set and a shared ``--facial-cache`` (only the cleaned videos are analysed again).
The stand-in weights (random or hand-set, right shapes; tests/feat_standins.py — v2's
multitask network is a small stand-in of its architecture family) are written once into
``bench/.cache/`` (git-ignored). Their numbers are meaningless; only time is measured.

    python bench/bench_facial.py            # 32 frames, 3 rounds
    python bench/bench_facial.py --quick    # 16 frames, 2 rounds
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from evaluation.metrics.facial import FaceDetectorPool, FacialAnalyzer, SharedFaceDetector  # noqa: E402

CACHE = HERE / ".cache"
MODELS = ("xgb", "v2")
TODAY = {"channels_last": False, "fold_batchnorm": False, "face_detectors": None, "backend": "torch"}
CONFIGS = {
    "per frame (batch 1)": {"batch_size": 1, **TODAY},
    "today (batch 16, issue-time path)": {"batch_size": 16, **TODAY},
    "ours, torch (channels_last + folded BN)": {"batch_size": 16, "backend": "torch"},
    "ours + onnxruntime": {"batch_size": 16, "backend": "onnxruntime"},
    "ours (default)": {"batch_size": 16},
    "ours + bf16 (opt in)": {"batch_size": 16, "precision": "bf16", "backend": "torch"},
}


def standin_weights() -> tuple[Path, Path]:
    """(py-feat hub folder, TORCH_HOME) with stand-in weights, written once."""
    from tests.conftest import (
        ALEXNET_FILE,
        INCEPTION_FILE,
        write_fake_alexnet,
        write_fake_inception,
    )
    from tests.feat_standins import write_standin_feat_weights

    hub, torch_home = CACHE / "feat_hub", CACHE / "torch_home"
    marker = hub / ".complete"
    if not marker.is_file() or "v2" not in marker.read_text():
        write_standin_feat_weights(hub, "v1")
        write_standin_feat_weights(hub, "v2")
        marker.write_text("v1 v2\n")
    checkpoints = torch_home / "hub" / "checkpoints"
    if not (checkpoints / ALEXNET_FILE).is_file():
        write_fake_alexnet(checkpoints / ALEXNET_FILE)
    if not (checkpoints / INCEPTION_FILE).is_file():
        write_fake_inception(checkpoints / INCEPTION_FILE)
    return hub, torch_home


def face_video(path: Path, frames: int, size: int, seed: int = 0) -> Path:
    from sensor_removal.core.video import VideoWriter
    from tests.feat_standins import face_frame

    with VideoWriter(path, 30.0, size, size, codec="h264-lossless") as writer:
        for i in range(frames):
            writer.write(face_frame(size, size, faces=((size // 2, size // 2, 220),), seed=seed + i))
    return path


def analyzers(hub: Path, options: dict) -> dict[str, FacialAnalyzer]:
    options = {"face_detectors": FaceDetectorPool(), **options}  # as the evaluation: one pool for its AU models
    return {m: FacialAnalyzer(model_set=m, weights_dir=hub, device="cpu", **options) for m in MODELS}


def timed_pass(pair: dict[str, FacialAnalyzer], video: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Seconds per model (xgb first, as the evaluation feeds them) and the series values."""
    for a in pair.values():
        face = getattr(a._get_detector(), "facepose_detector", None) or getattr(
            a._get_detector(), "face_detector", None
        )
        if isinstance(face, SharedFaceDetector):
            face.clear()  # the frames of the last round must not be answered from memory
    seconds, values = {}, {}
    for model, a in pair.items():
        t = time.perf_counter()
        values[model] = a.analyze_video(video).values.to_numpy()
        seconds[model] = time.perf_counter() - t
    return seconds, values


def evaluation_run(
    options: dict, manifest: Path, cleaned: Path, out: Path, hub: Path, facial_cache: Path | None = None
) -> float:
    from evaluation.protocol import run_protocol
    from evaluation.settings import ProtocolSettings

    # Small LPIPS/FID draws: the subject's videos are short, and the facial pass is what differs.
    settings = ProtocolSettings(metrics=("lpips", "fid", "facial"), au_models=MODELS, device="cpu",
                                lpips_pairs=20, fid_sets=2, fid_set_size=8, facial_cache=facial_cache)  # fmt: skip
    made = []
    options = {"face_detectors": FaceDetectorPool(), **options}

    def make(model: str) -> FacialAnalyzer:
        made.append(FacialAnalyzer(model_set=model, weights_dir=hub, device="cpu", **options))
        return made[-1]

    gc.collect()
    t = time.perf_counter()
    run_protocol(manifest, cleaned, out, settings, facial_analyzer=make, log=lambda msg: None)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None, help="default 32 (16 with --quick)")
    ap.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds, fastest counts (default 3, 2 with --quick)"
    )
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels (the face crop)")
    ap.add_argument("--skip-eval", action="store_true", help="only the frames/s rows")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    frames = args.frames or (16 if args.quick else 32)
    rounds = args.rounds or (2 if args.quick else 3)
    hub, torch_home = standin_weights()
    os.environ["TORCH_HOME"] = str(torch_home)
    os.environ["SENSOR_REMOVAL_FEAT_CACHE"] = str(hub)
    from evaluation.metrics.facial.runtime import runtime_version
    from sensor_removal.core.cpu import cpu_facts, cpu_line

    load = os.getloadavg()[0]
    runtimes = ", ".join(f"{b} {runtime_version(b) or 'missing'}" for b in ("openvino", "onnxruntime"))
    print(
        f"Facial analysis (py-feat {' + '.join(MODELS)}, stand-in weights) | {cpu_line()} | {runtimes} | "
        f"{frames} frames of {args.size}x{args.size}, {rounds} rounds | load average {load:.1f} at start"
    )
    result: dict = {
        "machine": platform.node(),
        **cpu_facts(),
        "runtimes": runtimes,
        "load_at_start": load,
        "frames": frames,
        "size": args.size,
        "rounds": rounds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = face_video(tmp_path / "face.mp4", frames, args.size)
        warm = face_video(tmp_path / "warm.mp4", min(frames, 16), args.size, seed=1000)
        pairs = {name: analyzers(hub, options) for name, options in CONFIGS.items()}
        for pair in pairs.values():  # built and warmed before any clock starts
            for a in pair.values():
                a.analyze_video(warm)
        best: dict[str, dict[str, float]] = {}
        values: dict[str, dict[str, np.ndarray]] = {}
        for r in range(rounds):
            for name, pair in pairs.items():
                seconds, values[name] = timed_pass(pair, video)
                if name not in best or sum(seconds.values()) < sum(best[name].values()):
                    best[name] = seconds
            print(
                f"  round {r + 1}: " + ", ".join(f"{n.split(' (')[0]} {sum(best[n].values()):.1f} s" for n in pairs),
                flush=True,
            )
        rates = {name: frames / sum(s.values()) for name, s in best.items()}
        ref = values["today (batch 16, issue-time path)"]
        diffs = {name: max(float(np.nanmax(np.abs(v[m] - ref[m]))) for m in MODELS) for name, v in values.items()}
        for name in pairs:
            per_model = ", ".join(f"{m} {best[name][m]:.2f} s" for m in MODELS)
            print(
                f"  {name}: {rates[name]:.2f} frames/s ({per_model}; max |value - today| {diffs[name]:.2g})", flush=True
            )
        result["frames_per_s"] = rates
        result["seconds_per_model"] = best
        result["max_abs_diff_vs_today"] = diffs
        del pairs
        walls = {}
        if not args.skip_eval:
            from sensor_removal.synthetic import make_subject
            from tests.conftest import write_cleaned_recordings

            seconds, fps = (1.5, 8.0) if args.quick else (2.0, 10.0)
            manifest = make_subject(tmp_path / "synth", seconds=seconds, fps=fps, size=(128, 128), seed=0)
            cleaned = write_cleaned_recordings(manifest, tmp_path / "cleaned", size=64)
            for name in ("today (batch 16, issue-time path)", "ours (default)"):
                walls[name] = evaluation_run(CONFIGS[name], manifest, cleaned, tmp_path / name.split()[0], hub)
                print(f"  evaluation run ({name}): {walls[name]:.1f} s", flush=True)
            shared = tmp_path / "shared_facial_cache"
            evaluation_run(CONFIGS["ours (default)"], manifest, cleaned, tmp_path / "first", hub, facial_cache=shared)
            other = write_cleaned_recordings(manifest, tmp_path / "cleaned2", size=64, source="sensor")
            walls["ours, second run (new cleaned set, shared --facial-cache)"] = evaluation_run(
                CONFIGS["ours (default)"], manifest, other, tmp_path / "second", hub, facial_cache=shared)  # fmt: skip
            print(
                "  evaluation run, second (new cleaned set, shared facial cache): "
                f"{walls['ours, second run (new cleaned set, shared --facial-cache)']:.1f} s",
                flush=True,
            )
            result["evaluation_run_s"] = walls
    today, ours = rates["today (batch 16, issue-time path)"], rates["ours (default)"]
    bf16, ours_torch = rates["ours + bf16 (opt in)"], rates["ours, torch (channels_last + folded BN)"]
    ort = rates["ours + onnxruntime"]
    native = "" if cpu_facts()["bf16_native"] else "; not native here"
    t_today, t_ours = best["today (batch 16, issue-time path)"], best["ours (default)"]
    rows = [
        (
            f"facial analysis frames/s (xgb + v2 on each frame; {cpu_line()})",
            f"{ours:.2f}",
            f"today's batch-16 path {today:.2f}",
            f"{ours / today:.2f}x (goal >= 3x)",
        ),
        *[
            (
                f"  {m} alone, s per {frames} frames",
                f"{t_ours[m]:.2f} s",
                f"{t_today[m]:.2f} s",
                f"{t_today[m] / t_ours[m]:.2f}x",
            )
            for m in MODELS
        ],
        (
            "  vs per frame (batch 1)",
            f"{ours:.2f}",
            f"{rates['per frame (batch 1)']:.2f}",
            f"{ours / rates['per frame (batch 1)']:.2f}x",
        ),
        (
            "  ours, torch (facial_backend torch: channels_last + folded BN)",
            f"{ours_torch:.2f}",
            f"{today:.2f}",
            f"{ours_torch / today:.2f}x",
        ),
        ("  ours + onnxruntime (facial_backend onnxruntime)", f"{ort:.2f}", f"{today:.2f}", f"{ort / today:.2f}x"),
        (f"  ours + bf16 (opt in; values move{native})", f"{bf16:.2f}", f"{today:.2f}", f"{bf16 / today:.2f}x"),
    ]
    if walls:
        a, b = walls["today (batch 16, issue-time path)"], walls["ours (default)"]
        c = walls["ours, second run (new cleaned set, shared --facial-cache)"]
        rows.append(
            (
                f"`evaluation run` wall time ({cpu_line()}), synthetic subject (lpips, fid, facial xgb + v2)",
                f"{b:.1f} s",
                f"today's {a:.1f} s",
                f"{a / b:.2f}x (goal >= 2x)",
            )
        )
        rows.append(
            (
                "  second run, new cleaned set, shared --facial-cache (N, S cached)",
                f"{c:.1f} s",
                f"today's {a:.1f} s",
                f"{a / c:.2f}x",
            )
        )
    result["rows"] = rows
    result["load_at_end"] = os.getloadavg()[0]
    print(
        f"\n(load average {result['load_at_end']:.1f} at end)\n"
        "| what | ours | baseline | ratio |\n| --- | --- | --- | --- |"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
