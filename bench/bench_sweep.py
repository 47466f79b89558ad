"""Sweep overhead: a 4-task sweep (2 subjects × 2 grid points of tiny fits) through a
real one-node SLURM vs the same four fits started by hand one after another.

Both sides run the same `fit` (+ post-fit benchmark) on the same subjects, one task at a
time (``array_parallelism: 1``: two trainings side by side on a small machine only fight
over the cores). The ratio is the price of the sweep machinery: sbatch + scheduling,
submitit's pickling and polling, resolving each task's config, the W&B id and state
files. Also prints how long the test cluster (``tests/slurm/start_slurm.sh``) takes to
start. Needs root (the script installs and starts SLURM); says why and exits 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
START = ROOT / "tests" / "slurm" / "start_slurm.sh"
FIT = """
trainer:
  max_epochs: {epochs}
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.WandbLogger
    init_args:
      project: bench
      save_dir: ${{...default_root_dir}}
      offline: true
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true}}
    - class_path: sensor_removal.workflows.postfit.PostFitBenchmark
      init_args: {{metrics: [groundtruth], device: cpu, batch_size: 8}}
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1, epochs_decay: {decay}}}
data: {{fraction: 0.5, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 epoch, 1 subject (2 tasks)")
    args = ap.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    from sensor_removal.synthetic import make_subject

    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        d = Path(tmp)
        t0 = time.monotonic()
        start = subprocess.run(["bash", str(START), str(d / "slurm")], capture_output=True, text=True)
        started = time.monotonic() - t0
        if start.returncode != 0:
            why = start.stderr.strip().splitlines()[-1] if start.stderr.strip() else "SLURM did not start"
            print(f"sweep overhead ratio: skipped ({why})")
            return 0
        env["SLURM_CONF"] = str(d / "slurm" / "slurm.conf")
        try:
            manifests = [
                make_subject(d / f"s{i}", seconds=1.5, fps=8.0, size=(64, 64), seed=i, subject=f"synth0{i}")
                for i in ((1,) if args.quick else (1, 2))
            ]
            (d / "fit.yaml").write_text(FIT.format(epochs=epochs, decay=max(0, epochs - 1)))
            lrs = [0.0003, 0.0001]
            sweep = {
                "subjects": [str(m) for m in manifests],
                "configs": [str(d / "fit.yaml")],
                "grid": {"model.lr": lrs},
                "root": str(d / "sweep"),
                "slurm": {"gpus_per_node": 0, "cpus_per_task": 1, "time_min": 60, "array_parallelism": 1},
            }
            (d / "sweep.yaml").write_text(yaml.safe_dump(sweep))
            # Warm the frame caches and the OS file cache for both sides alike.
            for m in manifests:
                _fit(env, d, m, 0.0003, d / "warm", epochs=1)
            t = time.monotonic()
            by_hand = [_fit(env, d, m, lr, d / "hand" / f"{m.parent.name}-{lr}") for m in manifests for lr in lrs]
            hand_s = time.monotonic() - t
            t = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "sensor_removal", "sweep", "--config", str(d / "sweep.yaml"), "--wait"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            sweep_s = time.monotonic() - t
            if proc.returncode != 0 or not all(by_hand):
                print(proc.stdout[-2000:], proc.stderr[-3000:])
                return 1
        finally:
            subprocess.run(["bash", str(START), str(d / "slurm"), "stop"], capture_output=True)
    print(f"SLURM test cluster start: {started:.1f} s")
    n = len(by_hand)
    print(f"{n} fits by hand, one after another: {hand_s:.1f} s")
    print(f"{n}-task SLURM sweep (array_parallelism 1): {sweep_s:.1f} s")
    print(f"sweep overhead ratio: {sweep_s / hand_s:.2f} (1.00 = free)")
    return 0


def _fit(env: dict[str, str], d: Path, manifest: Path, lr: float, run: Path, epochs: int | None = None) -> bool:
    cmd = [
        sys.executable,
        "-m",
        "sensor_removal",
        "fit",
        "--config",
        str(d / "fit.yaml"),
        "--subject",
        manifest.parent.name,
        "--data.manifest",
        str(manifest),
        "--trainer.default_root_dir",
        str(run),
        f"--model.lr={lr}",
    ]
    if epochs is not None:
        cmd.append(f"--trainer.max_epochs={epochs}")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True).returncode == 0


if __name__ == "__main__":
    raise SystemExit(main())
