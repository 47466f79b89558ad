"""Benchmark of the cleaning pipeline (sensor_removal.cleaning), one table per run.

Question it answers: does the streamed, batched pipeline keep the generator busy?

* ``generator only``: frames/s of the generator on tensors already in memory (same
  batch size, device and precision as the pipeline, the same :class:`GeneratorRunner`).
* ``clean (end to end)``: :func:`clean_video` on a generated video: decode, crop,
  inference, encode (H.264), threads and bounded queues.
* ``naive loop``: decode one frame, run it, write it; no threads, batch 1.

Ratios: pipeline efficiency = end to end / generator only (target >= 0.9 on CPU) and
speed-up over the naive loop. The measurements are interleaved in rounds; the table shows
the best of each and, for ratios, the median of the per-round ratios (both sides of a
ratio saw the same machine state). On CUDA also: generator fp32 (NCHW) vs bf16 +
channels_last at 256 px, and end to end on a 1280x720 input.

    python bench/bench_clean.py --quick        # ~40 s on 2 CPUs: 256 px, ngf 32, 4 blocks
    python bench/bench_clean.py                # ~2 min on 2 CPUs: the paper's generator
    python bench/bench_clean.py --quick --width 320 --height 240 --size 128 --ngf 16 --n-blocks 3
                                               # IO-bound case: a tiny generator

Run it on an otherwise idle machine: with 2 cores, any other process descheduling one of
torch's OpenMP threads slows the generator several-fold (the best-of-rounds helps, and
the load average is printed so that a spoiled run shows itself).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensor_removal.cleaning import CleanOptions, CleanSettings, GeneratorRunner, clean_video, default_batch_size
from sensor_removal.core.device import resolve_device  # noqa: E402
from sensor_removal.core.tensors import to_tensor, to_uint8  # noqa: E402
from sensor_removal.core.video import (  # noqa: E402
    VideoWriter,
    crop_resize,
    iter_frames,
    probe,
    read_frames,
    write_video,
)
from sensor_removal.models.networks import ResnetGenerator  # noqa: E402


@dataclass
class Config:
    width: int
    height: int
    frames: int
    gen_frames: int  # frames per generator-only measurement
    size: int
    ngf: int
    n_blocks: int
    batch_size: int | None  # None: the pipeline's default for the device


#: Same video and crop as the full run (so the same IO), a 4x smaller generator.
QUICK = Config(width=640, height=480, frames=32, gen_frames=16, size=256, ngf=32, n_blocks=4, batch_size=None)
FULL = Config(width=640, height=480, frames=32, gen_frames=16, size=256, ngf=64, n_blocks=9, batch_size=None)


class Identity(torch.nn.Module):
    """Stand-in generator: the pipeline's own cost (decode, crop, convert, encode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_video(path: Path, width: int, height: int, frames: int) -> Path:
    """A moving face-sized pattern with noise: compresses and decodes like real video."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def frame(t: int) -> np.ndarray:
        cx, cy = width / 2 + 20 * np.sin(t / 9), height / 2 + 10 * np.cos(t / 7)
        blob = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (height / 5) ** 2))
        img = np.stack([blob, (xx * 0.3 + t) % 256, (yy * 0.4 + 2 * t) % 256], axis=-1)
        return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)

    return write_video(path, (frame(t) for t in range(frames)), 30.0, codec="h264")


def center_bbox(width: int, height: int) -> tuple[int, int, int, int]:
    side = int(min(width, height) * 0.8)
    return ((width - side) // 2, (height - side) // 2, side, side)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generator_fps(runner: GeneratorRunner, crops: np.ndarray, batch_size: int) -> float:
    """Frames/s of the generator alone on batches already on the device (float, [-1, 1])."""
    with torch.inference_mode():
        xs = [runner.to_input(torch.from_numpy(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)]
        runner.forward(xs[0])  # warm-up (kernel selection, allocator)
        sync(runner.device)
        t0 = time.perf_counter()
        for x in xs:
            runner.forward(x)
        sync(runner.device)
        return len(crops) / (time.perf_counter() - t0)


def end_to_end_fps(gen, settings, src, bbox, out, batch_size, device, precision="auto") -> float:
    res = clean_video(
        gen,
        settings,
        src,
        bbox,
        out,
        CleanOptions(
            batch_size=batch_size, device=device, precision=precision, codec="h264", progress=False, overwrite=True
        ),
    )
    assert res.frames == probe(src).frame_count
    return res.frames_per_s


def naive_fps(gen: torch.nn.Module, size: int, src: Path, bbox, out: Path, device: torch.device) -> float:
    """The straightforward loop: decode a frame, run it alone, write it. No overlap."""
    info = probe(src)
    t0 = time.perf_counter()
    with torch.inference_mode(), VideoWriter(out, info.fps, size, size, codec="h264") as writer:
        for _, frame in iter_frames(src):
            x = to_tensor(crop_resize(frame, bbox, size)).to(device)
            writer.write(to_uint8(gen(x))[0])
    return info.frame_count / (time.perf_counter() - t0)


def row(name: str, fps: float, note: str = "") -> str:
    return f"| {name:<44} | {fps:>9.2f} | {note:<36} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4x smaller generator, fewer frames (~40 s on 2 CPUs)")
    p.add_argument("--frames", type=int, help="frames of the test video")
    p.add_argument("--size", type=int, help="crop size the generator runs at")
    p.add_argument("--ngf", type=int)
    p.add_argument("--n-blocks", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--rounds", type=int, help="interleaved measurement rounds (default 3)")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    for key in ("frames", "size", "ngf", "n_blocks", "batch_size", "width", "height"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.gen_frames = min(cfg.gen_frames, cfg.frames)
    if args.rounds is None:
        args.rounds = 3
    device = resolve_device(args.device)
    if cfg.batch_size is None:
        cfg.batch_size = default_batch_size(device)
    torch.manual_seed(0)
    gen = ResnetGenerator(ngf=cfg.ngf, n_blocks=cfg.n_blocks).eval()
    settings = CleanSettings(crop_size=cfg.size, ngf=cfg.ngf, n_blocks=cfg.n_blocks)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory(prefix="bench_clean_") as tmp:
        tmp_path = Path(tmp)
        src = make_video(tmp_path / "in.mp4", cfg.width, cfg.height, cfg.frames)
        bbox = center_bbox(cfg.width, cfg.height)
        crops = np.stack([crop_resize(f, bbox, cfg.size) for f in read_frames(src, range(cfg.gen_frames))])
        runner = GeneratorRunner(gen, device)
        print(
            f"device {device} ({threads} torch threads), precision {runner.precision}, "
            f"channels_last {runner.channels_last}; video {cfg.width}x{cfg.height}x{cfg.frames} h264, "
            f"bbox {bbox}; generator ngf={cfg.ngf} n_blocks={cfg.n_blocks} at {cfg.size} px, "
            f"batch {cfg.batch_size}; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        gs, es, ns, ios = [], [], [], []
        for i in range(args.rounds):  # interleaved rounds; best of each cancels load spikes
            gs.append(generator_fps(runner, crops, cfg.batch_size))
            es.append(end_to_end_fps(gen, settings, src, bbox, tmp_path / "clean.mp4", cfg.batch_size, device))
            ios.append(end_to_end_fps(Identity(), settings, src, bbox, tmp_path / "io.mp4", cfg.batch_size, device))
            if not args.skip_naive:
                ns.append(naive_fps(gen, cfg.size, src, bbox, tmp_path / "naive.mp4", device))
            print(
                f"round {i + 1}: generator {gs[-1]:.2f}, clean {es[-1]:.2f}, io only {ios[-1]:.2f}"
                + (f", naive {ns[-1]:.2f}" if ns else "")
                + " frames/s",
                flush=True,
            )
        g, e2e = max(gs), max(es)

        def paired(num: list[float], den: list[float]) -> float:
            """Ratio within each round (same machine state), median over rounds."""
            return float(np.median([a / b for a, b in zip(num, den, strict=True)]))

        def spread(xs: list[float]) -> str:
            return f"best of {len(xs)}, all: " + " ".join(f"{x:.1f}" for x in xs)

        lines = [
            "| measurement                                  | frames/s  | note                                 |",
            "|----------------------------------------------|-----------|--------------------------------------|",
            row(f"generator only (batch {cfg.batch_size}, in memory)", g, spread(gs)),
            row(f"clean end to end (batch {cfg.batch_size})", e2e, spread(es)),
            row(
                "  pipeline efficiency (clean / generator)", paired(es, gs), "median of per-round ratios; target >= 0.9"
            ),
            row("IO only (identity generator, same pipeline)", max(ios), spread(ios)),
            row("  serial estimate (no overlap)", 1 / (1 / g + 1 / max(ios)), "1 / (1/generator + 1/IO only)"),
        ]
        if ns:
            naive = max(ns)
            lines.append(row("naive loop (batch 1, no threads)", naive, spread(ns)))
            lines.append(row("  speed-up (clean / naive)", paired(es, ns), "median of per-round ratios"))
        if device.type == "cuda":
            torch.manual_seed(0)
            big = ResnetGenerator().eval()  # the paper's generator
            crops256 = np.stack([crop_resize(f, bbox, 256) for f in read_frames(src, range(cfg.gen_frames))])
            bs = max(cfg.batch_size, 16)
            fp32 = generator_fps(GeneratorRunner(big, device, "fp32", channels_last=False), crops256, bs)
            bf16 = generator_fps(GeneratorRunner(big, device, "bf16", channels_last=True), crops256, bs)
            lines.append(row(f"256 px ngf 64, fp32 NCHW (batch {bs})", fp32, "generator only"))
            lines.append(row(f"256 px ngf 64, bf16 channels_last (batch {bs})", bf16, f"{bf16 / fp32:.2f}x fp32"))
            hd = make_video(tmp_path / "hd.mp4", 1280, 720, max(cfg.frames, 150))
            hd_bbox = center_bbox(1280, 720)
            s256 = CleanSettings(crop_size=256, ngf=64, n_blocks=9)
            e2e_hd = end_to_end_fps(big, s256, hd, hd_bbox, tmp_path / "hd_clean.mp4", bs, device)
            lines.append(row(f"clean 1280x720 -> 256 px, bf16 (batch {bs})", e2e_hd, f"efficiency {e2e_hd / bf16:.3f}"))
        print("\n".join(lines))
        print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
