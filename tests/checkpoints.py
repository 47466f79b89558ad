"""Checkpoints for tests, laid out as training writes them (tiny CycleGAN, real
hyper-parameters), without training."""

from __future__ import annotations

from pathlib import Path

import torch

#: The data options the test checkpoints record (36 px cache, 32 px crops).
TINY_DATA = {
    "fraction": 0.5,
    "seed": 0,
    "load_size": 36,
    "crop_size": 32,
    "val_fraction": 0.1,
    "batch_size": 1,
    "num_workers": 0,
    "cache_dir": None,
    "decode_workers": 2,
}


def write_checkpoint(path: Path, manifest: Path, **model: object) -> Path:
    """A tiny CycleGAN's checkpoint at ``path`` (``model`` overrides its options)."""
    from sensor_removal.training.module import CycleGAN

    net = CycleGAN(**{"ngf": 4, "ndf": 4, "n_blocks": 1, **model})
    torch.save(
        {
            "state_dict": net.state_dict(),
            "hyper_parameters": dict(net.hparams),
            "datamodule_hyper_parameters": {"manifest": str(manifest), **TINY_DATA},
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return path
