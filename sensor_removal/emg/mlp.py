"""The small MLP of the mapping (EIFER's Exp2EMG / EMG2Exp are small MLPs), trained with
Lightning so that a W&B logger records its curve like ``fit``'s.

One hidden layer (``hidden`` units, GELU) over the windowed, PCA-reduced design matrix
of :mod:`sensor_removal.emg.mapping`; mean squared error on standardised outputs; Adam.
A few thousand frames per subject: batches of 1,024 on the CPU (Lightning's per-step
overhead dominates smaller batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from sensor_removal.emg.mapping import MappingSettings


class WindowMLP(pl.LightningModule):
    """``n_in`` -> ``hidden`` (GELU) -> ``n_out``."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("emg/train_mse", loss, on_step=False, on_epoch=True, prog_bar=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])


def train_mlp(design: np.ndarray, target: np.ndarray, settings: MappingSettings, logger: Any = None) -> dict[str, Any]:
    """Train on ``design`` ``(N, D)`` -> ``target`` ``(N, C)``; returns the state dict and
    the layer sizes."""
    pl.seed_everything(settings.seed, workers=False, verbose=False)
    model = WindowMLP(design.shape[1], target.shape[1], settings.hidden, settings.lr, settings.weight_decay)
    data = torch.utils.data.TensorDataset(
        torch.as_tensor(design, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=1024, shuffle=True, generator=torch.Generator().manual_seed(settings.seed)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=settings.epochs,
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, loader)
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "n_in": design.shape[1],
        "n_out": target.shape[1],
    }


def run_mlp(weights: dict[str, Any], design: np.ndarray, settings: MappingSettings) -> np.ndarray:
    """The trained MLP on ``design`` ``(N, D)`` -> ``(N, C)`` (standardised units)."""
    model = WindowMLP(weights["n_in"], weights["n_out"], settings.hidden)
    model.load_state_dict(weights["state"])
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(design, dtype=torch.float32)).double().numpy()
