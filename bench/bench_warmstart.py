"""Population warm start (ours): fine-tuning a population model vs training from scratch.

The labs' cost is the paper's schedule for every subject. Here a population CycleGAN is
trained once on the synthetic subjects of seeds 0-2 (``FramesDataModule`` with a list of
manifests), then each held-out subject (seeds 3 and 4) is trained twice with the same
step budget and lr schedule: from scratch, and from the population model
(``CycleGAN(init_from=...)``). Both are measured at 10, 25, 50 and 100 % of the budget by
PSNR inside the true sensor mask of G_S→N's output against the synthetic ground truth
(:func:`evaluation.metrics.groundtruth.frame_scores`, every frame of the held-out
subject's sensor recordings, the generator's raw output without compositing). The
intermediate points are read off the one run of each kind (not separate short runs with
their own decay), which favours from-scratch at its final point: it alone has finished
its lr decay there.

The issue's goal: the fine-tune reaches from-scratch's final PSNR-in-mask within 25 % of
the steps, and is not worse at equal steps.

    python bench/bench_warmstart.py            # 64 px, ngf/ndf 8 (~10 min on one thread)
    python bench/bench_warmstart.py --quick    # 32 px, few steps: a smoke run (~1 min)

Not part of ``make bench`` (minutes): ``make bench-warmstart``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from common import cpu_line

from evaluation.metrics.groundtruth import crop_mask, frame_scores
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.tensors import to_uint8, to_unit_range
from sensor_removal.core.video import crop_resize, read_frames
from sensor_removal.synthetic import load_mask, make_subject
from sensor_removal.training.data import FramesDataModule
from sensor_removal.training.module import CycleGAN

POPULATION_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (3, 4)
FRACTIONS = (0.1, 0.25, 0.5, 1.0)


class EvalSet:
    """Every frame of a subject's sensor recordings at the generator's crop: the sensor
    crops, their ground truth and the true sensor mask."""

    def __init__(self, manifest: Path, crop: int) -> None:
        sensor, truth, masks = [], [], []
        for rec in load_manifest(manifest).by_condition("sensor"):
            assert rec.ground_truth is not None and rec.mask is not None
            mask = load_mask(rec.mask)
            idx = range(len(mask))
            sensor += [crop_resize(f, rec.bbox, crop) for f in read_frames(rec.path, idx)]
            truth += [crop_resize(f, rec.bbox, crop) for f in read_frames(rec.ground_truth, idx)]
            masks += [crop_mask(m, rec.bbox, crop) for m in mask]
        self.sensor, self.truth, self.mask = np.stack(sensor), np.stack(truth), np.stack(masks)

    def input_psnr(self) -> float:
        """PSNR-in-mask of the uncleaned sensor crops (what cleaning starts from)."""
        return float(np.nanmean(frame_scores(self.truth, self.sensor, self.mask)["psnr_mask"]))

    @torch.no_grad()
    def psnr_mask(self, model: CycleGAN) -> float:
        was = model.training
        model.eval()
        out = []
        for start in range(0, len(self.sensor), 32):
            x = torch.from_numpy(self.sensor[start : start + 32]).permute(0, 3, 1, 2)
            x = to_unit_range(x).contiguous(memory_format=torch.channels_last)
            out.append(to_uint8(model.gen_s2n(x)))
        model.train(was)
        return float(np.nanmean(frame_scores(self.truth, np.concatenate(out), self.mask)["psnr_mask"]))


class Measure(pl.Callback):
    """PSNR-in-mask after the training batches in ``at`` (and before the first)."""

    def __init__(self, evalset: EvalSet, at: list[int]) -> None:
        self.evalset, self.at = evalset, set(at)
        self.scores: dict[int, float] = {}
        self.train_s = 0.0
        self._t = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.scores[0] = self.evalset.psnr_mask(pl_module)  # type: ignore[arg-type]
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: object) -> None:
        batches = trainer.global_step // 2
        if batches in self.at and batches not in self.scores:
            self.train_s += time.perf_counter() - self._t
            self.scores[batches] = self.evalset.psnr_mask(pl_module)  # type: ignore[arg-type]
            self._t = time.perf_counter()


def schedule(steps: int, steps_per_epoch: int) -> tuple[int, int]:
    """The paper's shape (constant, then linear decay, half and half) over ``steps``."""
    epochs = max(1, math.ceil(steps / steps_per_epoch))
    return epochs // 2, epochs - epochs // 2


def fit(
    manifest: str | list[str],
    steps: int,
    args: argparse.Namespace,
    cache: Path,
    init_from: str | None = None,
    measure: Measure | None = None,
    save: Path | None = None,
) -> tuple[CycleGAN, float]:
    """Train ``steps`` batches; the model and the seconds it took (measuring excluded)."""
    pl.seed_everything(0, verbose=False)
    dm = FramesDataModule(
        manifest,
        fraction=args.fraction,
        load_size=args.crop + args.crop // 8,
        crop_size=args.crop,
        batch_size=1,
        num_workers=0,
        cache_dir=str(cache),
    )
    dm.setup()
    constant, decay = schedule(steps, len(dm.train_dataloader().dataset))
    model = CycleGAN(
        ngf=args.ngf,
        ndf=args.ngf,
        n_blocks=args.n_blocks,
        epochs_constant=constant,
        epochs_decay=decay,
        init_from=init_from,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=constant + decay,
        max_steps=2 * steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[measure] if measure is not None else [],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    took = time.perf_counter() - start
    if save is not None:
        trainer.save_checkpoint(save)
    return model, (measure.train_s if measure is not None else took)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crop", type=int, default=64, help="generator crop (px); the cache is 1/8 larger")
    ap.add_argument("--ngf", type=int, default=8, help="filters of G and D (ngf = ndf)")
    ap.add_argument("--n-blocks", type=int, default=3, help="residual blocks (paper: 9; fewer for time)")
    ap.add_argument("--steps", type=int, default=600, help="from-scratch budget per subject (batches of 1)")
    ap.add_argument("--population-steps", type=int, default=1500)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each synthetic video")
    ap.add_argument("--fraction", type=float, default=0.5, help="share of the frames sampled for training")
    ap.add_argument("--quick", action="store_true", help="32 px, 40 + 80 steps: a smoke run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.crop, args.steps, args.population_steps, args.seconds = 32, 40, 80, 2.0
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(cpu_line())
    print(
        f"crop {args.crop} px, ngf=ndf {args.ngf}, {args.n_blocks} blocks, budget {args.steps} steps per subject, "
        f"population {args.population_steps} steps on seeds {list(POPULATION_SEEDS)}, held out {list(HELD_OUT_SEEDS)}"
    )
    at = sorted({max(1, round(f * args.steps)) for f in FRACTIONS})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifests = {
            s: make_subject(root / f"s{s}", seconds=args.seconds, fps=10.0, size=(128, 128), seed=s, subject=f"s{s}")
            for s in (*POPULATION_SEEDS, *HELD_OUT_SEEDS)
        }
        pop = root / "population.ckpt"
        _, pop_s = fit([str(manifests[s]) for s in POPULATION_SEEDS], args.population_steps, args, root / "c", save=pop)
        print(f"population model: {args.population_steps} steps in {pop_s:.0f} s")
        results: dict[str, dict] = {}
        for s in HELD_OUT_SEEDS:
            evalset = EvalSet(manifests[s], args.crop)
            row: dict = {"input": evalset.input_psnr()}
            for kind, init in (("scratch", None), ("finetune", str(pop))):
                m = Measure(evalset, at)
                fit(str(manifests[s]), args.steps, args, root / "c", init_from=init, measure=m)
                row[kind] = {str(k): v for k, v in sorted(m.scores.items())}
                row[f"{kind}_train_s"] = m.train_s
            results[f"seed{s}"] = row
            print(f"seed {s}: input {row['input']:.2f} dB, scratch {row['scratch']}, finetune {row['finetune']}")
    mean = {
        kind: {k: float(np.mean([r[kind][k] for r in results.values()])) for k in ["0", *map(str, at)]}
        for kind in ("scratch", "finetune")
    }
    inp = float(np.mean([r["input"] for r in results.values()]))
    print(f"\nPSNR inside the true sensor mask (dB), mean of seeds {list(HELD_OUT_SEEDS)}; uncleaned input {inp:.2f}")
    print(f"{'steps':>8} {'share':>6} {'scratch':>8} {'fine-tune':>9} {'diff':>6}")
    for k in ["0", *map(str, at)]:
        a, b = mean["scratch"][k], mean["finetune"][k]
        print(f"{k:>8} {int(k) / args.steps:>6.0%} {a:>8.2f} {b:>9.2f} {b - a:>+6.2f}")
    final = mean["scratch"][str(at[-1])]
    reached = [k for k in at if mean["finetune"][str(k)] >= final]
    first = reached[0] if reached else None
    not_worse = all(mean["finetune"][str(k)] >= mean["scratch"][str(k)] for k in at)
    share = "never" if first is None else f"{first} steps ({first / args.steps:.0%})"
    print(f"fine-tune reaches from-scratch's final {final:.2f} dB at: {share}; not worse at every point: {not_worse}")
    goal = first is not None and first <= 0.25 * args.steps and not_worse
    print(f"goal (<= 25 % of the steps, not worse at equal steps): {'met' if goal else 'NOT met'}")
    if args.json:
        doc = {
            "cpu": cpu_line(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "population_s": pop_s,
            "per_subject": results,
            "mean": mean,
            "input_psnr_mask": inp,
            "goal_met": goal,
        }
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
