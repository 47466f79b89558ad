"""Training fast paths (ours) vs the paper's fp32 eager batch-1 loop, side by side.

Four measurements, all in this one process so that the ratios share the machine's state:

1. **step rate at 256 px** (paper networks): the plain PyTorch loop of
   ``bench_train.plain_loop`` (fp32, eager, batch 1) against ``CycleGAN`` under a Trainer
   in fp32, fp32 + channels_last, bf16-mixed + channels_last, and (``--compile``)
   bf16 + channels_last + ``torch.compile``. Compilation happens in the warm-up steps,
   which are never timed.
2. **loader alone**: the ``FramesDataModule`` train loader over the synthetic subject's
   cached uint8 frames (default workers) against the fastest training step rate.
3. **the real CLI path**: ``python -m sensor_removal fit``'s LightningCLI (conf/default.yaml,
   logger and callbacks off) on the synthetic subject's cached frames, timed to steady
   state (the median over the last half of ``--real-iters`` steps), next to the plain loop on
   the same frames; once with ``torch.set_flush_denormal(True)``.
4. **quality, fp32 vs bf16**: two tiny CycleGANs (ngf 16, 3 blocks, 64 px) trained
   ``--quality-steps`` steps from the same seed in each precision on the synthetic
   subject, then PSNR inside the sensor mask of G_S→N(sensor) against the ground truth.
   A second fp32 seed gives the run-to-run noise. bf16 counts as equal when it is within
   0.5 dB of fp32 (below what the paper's tables resolve), and the comparison only
   decides when the seed-to-seed noise is itself below 0.5 dB — a noisier run cannot tell
   a 0.5 dB loss from chance. bf16 is justified as the default only if it is equal, the
   comparison decides, *and* bf16 is faster; the last row says so.

    python bench/bench_fastpaths.py                 # paper sizes (~6 min on 2 idle cores)
    python bench/bench_fastpaths.py --quick         # tiny nets, seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_train import RandomPairs, plain_loop  # noqa: E402
from common import trainer_for  # noqa: E402

from sensor_removal.training.module import CycleGAN  # noqa: E402


class StepClock(Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def median_rate(ends: list[float], warmup: int, images_per_step: int = 1) -> float:
    gaps = [b - a for a, b in zip(ends[warmup - 1 : -1], ends[warmup:], strict=True)]
    return images_per_step / statistics.median(gaps)


def uint8_pairs(n: int, size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {k: torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for k in ("sensor", "normal")}
        for _ in range(n)
    ]


def module_rate(hp: dict, size: int, warmup: int, iters: int, precision: str, **options) -> float:
    torch.manual_seed(0)
    model = CycleGAN(**hp, **options)
    clock = StepClock()
    loader = DataLoader(uint8_pairs(warmup + iters, size), batch_size=1)
    trainer_for(warmup + iters, precision, clock).fit(model, loader)
    return median_rate(clock.ends, warmup)


def step_rates(hp: dict, size: int, warmup: int, iters: int, compile_: bool) -> dict[str, float]:
    rates = {"plain fp32 eager batch 1": plain_loop(hp, size, warmup, iters, 0).images_per_s}
    variants = {
        "module fp32": ("32-true", {"channels_last": False}),
        "module fp32 channels_last": ("32-true", {"channels_last": True}),
        "module bf16 channels_last": ("bf16-mixed", {"channels_last": True}),
    }
    if compile_:
        variants["module bf16 channels_last compiled"] = ("bf16-mixed", {"channels_last": True, "compile": True})
    for name, (precision, options) in variants.items():
        w = warmup + (2 if options.get("compile") else 0)  # compilation: in the untimed steps
        rates[name] = module_rate(hp, size, w, iters, precision, **options)
        print(f"  {size} px {name}: {rates[name]:.3f} img/s", flush=True)
    return rates


def synthetic_subject(root: Path, seconds: float, size: int) -> Path:
    from sensor_removal.synthetic import make_subject

    return make_subject(root / "subject", seconds=seconds, fps=30.0, size=(size, size), seed=0)


def loader_rate(manifest: Path, load: int, crop: int, batches: int) -> float:
    from sensor_removal.training.data import FramesDataModule

    dm = FramesDataModule(str(manifest), fraction=0.5, load_size=load, crop_size=crop, batch_size=1)
    dm.prepare_data()
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)  # workers started
    t = time.perf_counter()
    n = 0
    while n < batches:
        try:
            next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            continue
        n += 1
    return n / (time.perf_counter() - t)


def cli_rate(manifest: Path, root: Path, hp: dict, load: int, crop: int, steps: int, flush_denormal: bool) -> float:
    """The LightningCLI of ``python -m sensor_removal fit`` (defaults + these overrides),
    trained for ``steps`` steps; images/s over the second half (steady state)."""
    from pytorch_lightning.cli import LightningCLI

    from sensor_removal.training.cli import build_cli

    args = [
        "fit",
        f"--data.manifest={manifest}",
        "--data.fraction=0.5",
        f"--data.load_size={load}",
        f"--data.crop_size={crop}",
        "--trainer.logger=false",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.max_epochs=1000",
        f"--trainer.max_steps={2 * steps}",  # global_step counts G and D steps
        f"--trainer.default_root_dir={root}",
        *[f"--model.{k}={v}" for k, v in hp.items()],
    ]
    real = LightningCLI._run_subcommand
    LightningCLI._run_subcommand = lambda self, name: None
    try:
        cli = build_cli(args)
    finally:
        LightningCLI._run_subcommand = real
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    torch.set_flush_denormal(flush_denormal)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        torch.set_flush_denormal(False)
    return median_rate(clock.ends, max(1, steps // 2))


def plain_on_frames(manifest: Path, hp: dict, load: int, crop: int, steps: int) -> float:
    """bench_train's plain loop fed the same cached frames (converted to float up front)."""
    from sensor_removal.core.tensors import to_tensor
    from sensor_removal.training.data import FramesDataModule

    dm = FramesDataModule(str(manifest), fraction=0.5, load_size=load, crop_size=crop, batch_size=1)
    dm.setup("fit")
    frames = {d: to_tensor(dm.frames(d, "train"))[:, :, :crop, :crop] for d in ("sensor", "normal")}
    pairs = RandomPairs(1, crop)
    n = min(len(frames["sensor"]), len(frames["normal"]))
    pairs.sensor, pairs.normal = frames["sensor"][:n], frames["normal"][:n]
    reps = math.ceil(steps / n)
    pairs.sensor, pairs.normal = pairs.sensor.repeat(reps, 1, 1, 1)[:steps], pairs.normal.repeat(reps, 1, 1, 1)[:steps]
    import bench_train

    original = bench_train.make_loader
    bench_train.make_loader = lambda count, size: DataLoader(pairs, batch_size=1)
    try:
        return plain_loop(hp, crop, max(1, steps // 2), steps - max(1, steps // 2), 0).images_per_s
    finally:
        bench_train.make_loader = original


def psnr_in_mask(manifest: Path, model: CycleGAN, crop: int, load: int, frames: int) -> float:
    """Mean PSNR inside the sensor mask of G_S→N(sensor crop) vs the ground-truth crop."""
    from evaluation.metrics.groundtruth import crop_mask, frame_scores
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.core.tensors import to_tensor, to_uint8
    from sensor_removal.core.video import crop_resize, read_frames
    from sensor_removal.synthetic import load_mask

    subject = load_manifest(manifest)
    rec = next(r for r in subject.recordings if r.condition == "sensor")
    idx = list(np.linspace(0, 29, frames).astype(int))
    masks = load_mask(rec.mask)
    off = (load - crop) // 2
    cut = slice(off, off + crop)
    sensor = np.stack([crop_resize(f, rec.bbox, load)[cut, cut] for f in read_frames(rec.path, idx)])
    truth = np.stack([crop_resize(f, rec.bbox, load)[cut, cut] for f in read_frames(rec.ground_truth, idx)])
    mask = np.stack([crop_mask(masks[i], rec.bbox, load)[cut, cut] for i in idx])
    model.eval()
    with torch.no_grad():
        cleaned = to_uint8(model.gen_s2n(to_tensor(sensor)))
    return float(np.nanmean(frame_scores(truth, cleaned, mask)["psnr_mask"]))


def quality(manifest: Path, steps: int, load: int, crop: int) -> dict[str, float]:
    from sensor_removal.training.data import FramesDataModule

    out = {}
    for name, precision, seed in (("fp32", "32-true", 0), ("bf16", "bf16-mixed", 0), ("fp32 seed 1", "32-true", 1)):
        pl.seed_everything(seed, verbose=False)
        model = CycleGAN(ngf=16, ndf=16, n_blocks=3)
        dm = FramesDataModule(str(manifest), fraction=0.5, load_size=load, crop_size=crop, batch_size=1, num_workers=0)
        trainer_for(steps, precision, Callback()).fit(model, datamodule=dm)
        out[name] = psnr_in_mask(manifest, model, crop, load, 8)
        print(f"  quality {name}: PSNR in mask {out[name]:.2f} dB after {steps} steps", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=256, help="crop size of the step-rate rows")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--real-iters", type=int, default=None, help="CLI-path steps (default 16; 6 with --quick)")
    ap.add_argument("--quality-steps", type=int, default=None, help="default 300 (20 with --quick)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args()
    for pattern in (
        ".*does not have many workers",
        ".*lr schedule has",
        ".*smaller than the logging interval",
        ".*no `val_dataloader`",
        ".*LeafSpec",
        ".*srun",
        ".*args parameter",
        ".*lr_batch_size",
    ):
        warnings.filterwarnings("ignore", pattern)  # fmt: skip
    for name in ("pytorch_lightning", "lightning_fabric", "sensor_removal"):
        logging.getLogger(name).setLevel(logging.ERROR)

    quick = args.quick
    hp = dict(ngf=16, ndf=16, n_blocks=3) if quick else dict(ngf=64, ndf=64, n_blocks=9)
    size = 64 if quick else args.size
    real_iters = args.real_iters or (6 if quick else 16)
    quality_steps = args.quality_steps or (20 if quick else 300)
    load = os.getloadavg()[0]
    from common import cpu_facts, cpu_line

    print(
        f"Training fast paths | {cpu_line()} | {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads | cuda: {torch.cuda.is_available()} | "
        f"load average {load:.1f} at start"
    )
    native = "" if cpu_facts()["bf16_native"] else " (bf16 not native here)"
    result: dict = {"machine": platform.node(), **cpu_facts(), "load_at_start": load,
                    "cuda": torch.cuda.is_available(), "nets": hp, "size": size}  # fmt: skip

    rates = step_rates(hp, size, 1, args.iters, args.compile and not quick)
    result["step_rates"] = rates
    base = rates["plain fp32 eager batch 1"]
    best_name = max((k for k in rates if k.startswith("module")), key=rates.get)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        crop = 64 if quick else 128
        load_px = crop + crop // 8
        manifest = synthetic_subject(tmp_path, 2.0 if quick else 4.0, 96 if quick else 192)
        lr = loader_rate(manifest, load_px, crop, 50 if quick else 200)
        loader_256 = loader_rate(manifest, size + size // 8, size, 50 if quick else 200) if not quick else lr
        result["loader_img_per_s"] = loader_256
        print(f"  loader alone ({size} px crops): {loader_256:.1f} img/s", flush=True)
        real = {
            "plain loop, cached frames": plain_on_frames(manifest, hp, load_px, crop, real_iters),
            "CLI fit (defaults)": cli_rate(manifest, tmp_path / "run", hp, load_px, crop, real_iters, False),
            "CLI fit, flush denormal": cli_rate(manifest, tmp_path / "run2", hp, load_px, crop, real_iters, True),
        }
        result["real_path"] = {"crop": crop, "steps": real_iters, "loader_img_per_s": lr, **real}
        for k, v in real.items():
            print(f"  real path {crop} px, {k}: {v:.3f} img/s", flush=True)
        q = quality(manifest, quality_steps, 72, 64)  # tiny nets at 64 px: quality, not speed
        result["quality"] = {"steps": quality_steps, "crop": 64, **q}

    noise = abs(q["fp32"] - q["fp32 seed 1"])
    tolerance = 0.5
    diff = q["bf16"] - q["fp32"]
    result["quality"].update(
        tolerance_db=tolerance,
        bf16_minus_fp32_db=diff,
        bf16_equal=abs(diff) <= tolerance,
        seed_noise_db=noise,
        decides=noise <= tolerance,
    )
    rows = [
        (
            f"training step {size} px ({'tiny' if quick else 'paper'} nets; {cpu_line()})",
            f"{best_name} {rates[best_name]:.3f} img/s",
            f"plain fp32 eager batch 1 {base:.3f} img/s",
            f"{rates[best_name] / base:.2f}x (goal >= 1.5x)",
        ),
        *[
            (f"  {k}{native if 'bf16' in k else ''}", f"{v:.3f} img/s", f"{base:.3f} img/s", f"{v / base:.2f}x")
            for k, v in rates.items()
            if k != "plain fp32 eager batch 1"
        ],
        (
            "loader alone",
            f"{loader_256:.1f} img/s",
            f"fastest step {rates[best_name]:.3f} img/s",
            f"{loader_256 / rates[best_name]:.0f}x (goal >= 10x)",
        ),
        (
            f"real CLI fit, synthetic subject, {crop} px",
            f"{real['CLI fit (defaults)']:.3f} img/s",
            f"plain loop same frames {real['plain loop, cached frames']:.3f} img/s",
            f"{real['CLI fit (defaults)'] / real['plain loop, cached frames']:.2f}x",
        ),
        (
            "  with torch.set_flush_denormal(True)",
            f"{real['CLI fit, flush denormal']:.3f} img/s",
            f"{real['CLI fit (defaults)']:.3f} img/s",
            f"{real['CLI fit, flush denormal'] / real['CLI fit (defaults)']:.2f}x",
        ),
        (
            f"quality: PSNR in mask, {quality_steps} steps",
            f"bf16 {q['bf16']:.2f} dB",
            f"fp32 {q['fp32']:.2f} dB",
            f"{diff:+.2f} dB (tolerance {tolerance:.2f} dB; fp32 seed-to-seed {noise:.2f} dB)",
        ),
    ]
    faster = rates["module bf16 channels_last"] > rates["module fp32 channels_last"]
    decides = result["quality"]["decides"]
    result["bf16_default_justified"] = bool(faster and decides and result["quality"]["bf16_equal"])
    rows.append(("bf16-mixed as default?",
                 "equal quality: " + ("yes" if result["quality"]["bf16_equal"] else "no")
                 + ("" if decides else f" (undecided: seed noise {noise:.2f} dB > {tolerance} dB)"),
                 "faster than fp32: " + ("yes" if faster else "no"),
                 "justified" if result["bf16_default_justified"] else "not justified: fp32 (paper) stays"))  # fmt: skip
    result["rows"] = rows
    print()
    print("| what | ours | baseline | ratio |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
