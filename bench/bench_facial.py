"""Facial analysis throughput (py-feat v1 with stand-in weights of the real architectures).

Side by side in one run, on one face video:

* per frame: ``FacialAnalyzer(batch_size=1, channels_last=False)`` — one frame per forward;
* today's path: ``batch_size=16`` through py-feat's tensor path, default memory layout;
* ours: the same batches with py-feat's networks in channels_last (the default now);
* ours, opt in: plus bf16 autocast per network (values move slightly; not the default).

Then ``evaluation run``'s work (``run_protocol`` with lpips, fid, facial on the synthetic
subject, stand-in weights) with today's analyzer vs ours, wall time. The stand-in weights
(random, right shapes; tests/feat_standins.py, tests/conftest.py) are written once into
``bench/.cache/`` (git-ignored; ResMaskNet alone is ~290 MB). The numbers they give are
meaningless; only the time is measured. Frames/s count analysed frames.

    python bench/bench_facial.py            # 24 frames (~3 min on 2 idle cores)
    python bench/bench_facial.py --quick    # 8 frames
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from evaluation.facial import FacialAnalyzer  # noqa: E402

CACHE = HERE / ".cache"


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
    if not (hub / ".complete").is_file():
        write_standin_feat_weights(hub, "v1")
        (hub / ".complete").write_text("v1\n")
    checkpoints = torch_home / "hub" / "checkpoints"
    if not (checkpoints / ALEXNET_FILE).is_file():
        write_fake_alexnet(checkpoints / ALEXNET_FILE)
    if not (checkpoints / INCEPTION_FILE).is_file():
        write_fake_inception(checkpoints / INCEPTION_FILE)
    return hub, torch_home


def face_video(path: Path, frames: int, size: int) -> Path:
    from sensor_removal.video import VideoWriter
    from tests.feat_standins import face_frame

    with VideoWriter(path, 30.0, size, size, codec="h264-lossless") as writer:
        for i in range(frames):
            writer.write(face_frame(size, size, faces=((size // 2, size // 2, 220),), seed=i))
    return path


def analyzers(hub: Path) -> dict[str, FacialAnalyzer]:
    return {
        "per frame": FacialAnalyzer(weights_dir=hub, device="cpu", batch_size=1, channels_last=False),
        "today (batch 16)": FacialAnalyzer(weights_dir=hub, device="cpu", batch_size=16, channels_last=False),
        "ours (batch 16, channels_last)": FacialAnalyzer(weights_dir=hub, device="cpu", batch_size=16),
        "ours + bf16 (opt in)": FacialAnalyzer(weights_dir=hub, device="cpu", batch_size=16, precision="bf16"),
    }


def frames_per_s(analyzer: FacialAnalyzer, video: Path) -> tuple[float, np.ndarray]:
    analyzer._get_detector()  # built before the clock starts (same for every row)
    t = time.perf_counter()
    series = analyzer.analyze_video(video)
    return series.frames / (time.perf_counter() - t), series.values.to_numpy()


def evaluation_run(hub: Path, analyzer: FacialAnalyzer, manifest: Path, cleaned: Path, out: Path) -> float:
    from evaluation.protocol import ProtocolSettings, run_protocol

    # Small LPIPS/FID draws: the subject's videos are short, and the facial pass is what differs.
    # One AU model (py-feat v1's xgb, whose stand-ins this bench lays out) on both sides.
    settings = ProtocolSettings(metrics=("lpips", "fid", "facial"), au_models=("xgb",), device="cpu",
                                lpips_pairs=20, fid_sets=2, fid_set_size=8)
    t = time.perf_counter()
    run_protocol(manifest, cleaned, out, settings, facial_analyzer=lambda model: analyzer, log=lambda msg: None)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None, help="default 24 (8 with --quick)")
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels (the face crop)")
    ap.add_argument("--skip-eval", action="store_true", help="only the frames/s rows")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    frames = args.frames or (8 if args.quick else 24)
    hub, torch_home = standin_weights()
    os.environ["TORCH_HOME"] = str(torch_home)
    os.environ["SENSOR_REMOVAL_FEAT_CACHE"] = str(hub)
    load = os.getloadavg()[0]
    print(f"Facial analysis (py-feat v1, stand-in weights) | {os.cpu_count()} CPUs, {torch.get_num_threads()} threads | "
          f"{frames} frames of {args.size}x{args.size} | load average {load:.1f} at start")  # fmt: skip
    result: dict = {"machine": platform.node(), "load_at_start": load, "frames": frames, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = face_video(tmp_path / "face.mp4", frames, args.size)
        rates, values = {}, {}
        for name, analyzer in analyzers(hub).items():
            rates[name], values[name] = frames_per_s(analyzer, video)
            diff = float(np.nanmax(np.abs(values[name] - values["per frame"])))
            print(f"  {name}: {rates[name]:.2f} frames/s (max |value - per frame| {diff:.2g})", flush=True)
        result["frames_per_s"] = rates
        result["max_abs_diff_vs_per_frame"] = {k: float(np.nanmax(np.abs(v - values["per frame"]))) for k, v in values.items()}
        walls = {}
        if not args.skip_eval:
            from sensor_removal.synthetic import make_subject
            from tests.conftest import write_cleaned_recordings

            seconds, fps = (1.5, 8.0) if args.quick else (1.0, 10.0)
            manifest = make_subject(tmp_path / "synth", seconds=seconds, fps=fps, size=(128, 128), seed=0)
            cleaned = write_cleaned_recordings(manifest, tmp_path / "cleaned", size=64)
            for name in ("today (batch 16)", "ours (batch 16, channels_last)"):
                analyzer = analyzers(hub)[name]
                walls[name] = evaluation_run(hub, analyzer, manifest, cleaned, tmp_path / name.split()[0])
                print(f"  evaluation run ({name}): {walls[name]:.1f} s", flush=True)
            result["evaluation_run_s"] = walls
    today, ours = rates["today (batch 16)"], rates["ours (batch 16, channels_last)"]
    rows = [
        ("facial analysis frames/s", f"{ours:.2f}", f"today's batch-16 path {today:.2f}", f"{ours / today:.2f}x (goal >= 3x)"),
        ("  vs per frame (batch 1)", f"{ours:.2f}", f"{rates['per frame']:.2f}", f"{ours / rates['per frame']:.2f}x"),
        ("  ours + bf16 (opt in)", f"{rates['ours + bf16 (opt in)']:.2f}", f"{today:.2f}", f"{rates['ours + bf16 (opt in)'] / today:.2f}x"),
    ]  # fmt: skip
    if walls:
        a, b = walls["today (batch 16)"], walls["ours (batch 16, channels_last)"]
        rows.append(("`evaluation run` wall time, synthetic subject (lpips, fid, facial)", f"{b:.1f} s", f"today's {a:.1f} s", f"{a / b:.2f}x (goal >= 2x)"))
    result["rows"] = rows
    print("\n| what | ours | baseline | ratio |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
