"""Training throughput: the CycleGAN LightningModule vs a plain PyTorch loop (CPU, fp32).

Both sides train the same four networks (same init), with the same losses, image pools,
optimizers and batch size 1 (the paper's and the reference's setting), fed by the same
DataLoader of random 3xHxW pairs. The plain side is the reference-style eager loop —
freeze D, generator step, unfreeze D, discriminator step — written straight in PyTorch;
the module side is ``CycleGAN`` under a ``pytorch_lightning.Trainer``. Images/s count
training pairs (one sensor + one normal image) per second, measured over ``--iters``
iterations after ``--warmup`` ones: 1 / the median time between the ends of consecutive
batches (so data loading and Lightning's per-batch bookkeeping are included). Each size runs
``--repeat`` rounds (default 2), alternating which side goes first, and keeps each side's
best round — the machine's other load only ever makes a side slower.

    python bench/bench_train.py            # ngf 64, 9 blocks, 128 and 256 px (~2-3 min on 2 idle cores)
    python bench/bench_train.py --quick    # ngf 16, 3 blocks, 128 and 256 px, seconds
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import time
import warnings
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from common import trainer_for
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from sensor_removal.models.losses import cycle_loss, gan_loss, identity_loss
from sensor_removal.models.networks import ImagePool
from sensor_removal.training.module import CycleGAN


class RandomPairs(Dataset):
    """``n`` unpaired random sensor/normal images in [-1, 1] (content does not matter)."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.sensor = torch.rand(n, 3, size, size, generator=g) * 2 - 1
        self.normal = torch.rand(n, 3, size, size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.sensor)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"sensor": self.sensor[i], "normal": self.normal[i]}


def make_loader(n: int, size: int) -> DataLoader:
    return DataLoader(RandomPairs(n, size), batch_size=1, shuffle=False, num_workers=0)


@dataclass
class Rate:
    """Throughput of one run: wall-clock images/s and CPU seconds (all threads) per image."""

    images_per_s: float
    cpu_s_per_image: float


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def rate(ends: list[tuple[float, float]], warmup: int) -> Rate:
    """Batches of one pair, from (wall, cpu) clock readings at the end of every batch.

    Wall: 1 / the median interval between consecutive timed batch ends (the median, since
    other load on a shared machine shows up as single slow iterations). CPU: the median
    process CPU time per interval, which other processes barely change — a steadier
    measure of the work each loop does per image.
    """
    timed = ends[warmup - 1 :]
    wall = [b[0] - a[0] for a, b in zip(timed[:-1], timed[1:], strict=True)]
    cpu = [b[1] - a[1] for a, b in zip(timed[:-1], timed[1:], strict=True)]
    return Rate(images_per_s=1.0 / _median(wall), cpu_s_per_image=_median(cpu))


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def set_requires_grad(nets: list[torch.nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def plain_loop(hp: dict, size: int, warmup: int, iters: int, seed: int) -> Rate:
    """Reference-style eager training loop; returns images/s after warm-up."""
    torch.manual_seed(seed)
    nets = CycleGAN(**hp)  # only as a container: the same networks, initialised the same way
    g_s2n, g_n2s, d_s, d_n = nets.gen_s2n, nets.gen_n2s, nets.disc_s, nets.disc_n
    for net in (g_s2n, g_n2s, d_s, d_n):
        net.train()
    betas = (nets.hparams.beta1, nets.hparams.beta2)
    opt_g = torch.optim.Adam(itertools.chain(g_s2n.parameters(), g_n2s.parameters()), lr=nets.hparams.lr, betas=betas)
    opt_d = torch.optim.Adam(itertools.chain(d_s.parameters(), d_n.parameters()), lr=nets.hparams.lr, betas=betas)
    pool_s, pool_n = ImagePool(nets.hparams.pool_size), ImagePool(nets.hparams.pool_size)
    lam, lam_id = nets.hparams.lambda_cycle, nets.hparams.lambda_identity

    ends: list[tuple[float, float]] = []
    for batch in make_loader(warmup + iters, size):
        s, n = batch["sensor"], batch["normal"]
        # generator step, discriminators frozen
        set_requires_grad([d_s, d_n], False)
        opt_g.zero_grad(set_to_none=True)
        fake_n, fake_s = g_s2n(s), g_n2s(n)
        loss_g = (
            gan_loss(d_n(fake_n), True)
            + gan_loss(d_s(fake_s), True)
            + lam * (cycle_loss(g_n2s(fake_n), s) + cycle_loss(g_s2n(fake_s), n))
            + lam * lam_id * (identity_loss(g_s2n(n), n) + identity_loss(g_n2s(s), s))
        )
        loss_g.backward()
        opt_g.step()
        # discriminator step on pooled, detached fakes
        set_requires_grad([d_s, d_n], True)
        opt_d.zero_grad(set_to_none=True)
        pooled_s, pooled_n = pool_s.query(fake_s.detach()), pool_n.query(fake_n.detach())
        loss_d = 0.5 * (gan_loss(d_s(s), True) + gan_loss(d_s(pooled_s), False)) + 0.5 * (
            gan_loss(d_n(n), True) + gan_loss(d_n(pooled_n), False)
        )
        loss_d.backward()
        opt_d.step()
        ends.append(clock())
    return rate(ends, warmup)


class BatchClock(Callback):
    def __init__(self) -> None:
        self.ends: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(clock())


def module_loop(hp: dict, size: int, warmup: int, iters: int, seed: int) -> Rate:
    """The LightningModule under a Trainer (CPU, fp32); returns images/s after warm-up."""
    torch.manual_seed(seed)
    model = CycleGAN(**hp)
    batch_clock = BatchClock()
    trainer = trainer_for(warmup + iters, "32-true", batch_clock, accelerator="cpu")
    trainer.fit(model, make_loader(warmup + iters, size))
    assert len(batch_clock.ends) == warmup + iters
    return rate(batch_clock.ends, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ngf 16, 3 blocks, 2+3 iterations")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--ngf", type=int, default=None, help="default 64 (16 with --quick)")
    parser.add_argument("--ndf", type=int, default=None, help="default 64 (16 with --quick)")
    parser.add_argument("--n-blocks", type=int, default=None, help="default 9 (3 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="default 1 (2 with --quick)")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations, default 3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per size, alternating order; best kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    quick = args.quick
    ngf = args.ngf or (16 if quick else 64)
    ndf = args.ndf or (16 if quick else 64)
    n_blocks = args.n_blocks if args.n_blocks is not None else (3 if quick else 9)
    warmup = args.warmup if args.warmup is not None else (2 if quick else 1)
    iters = args.iters or 3
    if warmup < 1 or iters < 1 or args.repeat < 1:
        parser.error("--warmup, --iters and --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*lr schedule has.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)

    hp = dict(ngf=ngf, ndf=ndf, n_blocks=n_blocks)
    print(
        f"CycleGAN training throughput, CPU fp32, batch 1 | torch {torch.__version__}, "
        f"pytorch-lightning {pl.__version__} | {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads | ngf={ngf} ndf={ndf} "
        f"n_blocks={n_blocks} | warm-up {warmup}, timed {iters} iterations"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        print(
            f"note: load average {load:.1f} before starting — other processes share the CPUs; "
            "with several torch threads, waiting threads then swamp the timings (seen here: "
            "15x between rounds); --threads 1 gives steadier numbers"
        )
    rows = []
    for size in args.sizes:
        best: dict[str, Rate] = {}
        for round_ in range(args.repeat):
            order = ("plain", "module") if round_ % 2 == 0 else ("module", "plain")
            for side in order:
                run = plain_loop if side == "plain" else module_loop
                r = run(hp, size, warmup, iters, args.seed)
                if side not in best or r.images_per_s > best[side].images_per_s:
                    best[side] = r
                print(
                    f"  {size} px, round {round_ + 1}: {side:6} {r.images_per_s:.3f} img/s, "
                    f"{r.cpu_s_per_image:.3f} CPU-s/img",
                    flush=True,
                )
        rows.append((size, best["plain"], best["module"]))

    print()
    header = (
        f"{'size':>6} | {'plain img/s':>11} | {'module img/s':>12} | {'ratio module/plain':>18} |"
        f" {'CPU-s/img plain':>15} | {'CPU-s/img module':>16} | {'CPU ratio plain/module':>22}"
    )
    print(header)
    print("-" * len(header))
    for size, plain, module in rows:
        print(
            f"{size:>4}px | {plain.images_per_s:>11.3f} | {module.images_per_s:>12.3f} | "
            f"{module.images_per_s / plain.images_per_s:>18.3f} | {plain.cpu_s_per_image:>15.3f} | "
            f"{module.cpu_s_per_image:>16.3f} | "
            f"{plain.cpu_s_per_image / module.cpu_s_per_image:>22.3f}"
        )
    print("(ratios > 1: the module is faster; the CPU ratio is the steadier one on a busy machine)")
    for size, plain, module in rows:
        print(
            f"ratio module/plain @ {size}px: {module.images_per_s / plain.images_per_s:.3f}"
            f" (CPU time: {plain.cpu_s_per_image / module.cpu_s_per_image:.3f})"
        )


if __name__ == "__main__":
    main()
