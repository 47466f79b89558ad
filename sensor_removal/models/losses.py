"""The three CycleGAN losses the paper trains with (Büchner et al., VISAPP 2023, Sec. 3).

* adversarial: least-squares GAN (Mao et al. 2017) — the discriminator's patch scores are
  regressed to 1 for real and 0 for fake, which gives steadier gradients than the
  log-loss and is the CycleGAN default;
* cycle consistency: L1 between an image and its round trip S→N→S (or N→S→N), weighted
  by λ = 10 — it keeps the face (identity, expression, Action Units) while the sensors go;
* (our extension, attention generator only) mask regularisation: the mean of the soft
  mask A (sparsity: repaint as little as possible) plus its total variation (smoothness:
  one coherent region per sensor, not speckle);
* identity: L1 between an image and the output of the generator *into its own domain*
  (e.g. ``G_S→N(normal)`` vs ``normal``), weighted by 0.5·λ — it stops the generators from
  changing colour and skin tone when there is nothing to remove.

All three are computed in float32 whatever the networks ran in (bf16 autocast, ours): a
mean over 256x256 pixels, or over 30x30 patch scores, summed in bf16 would lose the small
differences the generators learn from.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["cycle_loss", "gan_loss", "identity_loss", "mask_smoothness", "mask_sparsity"]


def gan_loss(pred: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss: mean squared distance of the patch scores ``pred`` to 1 or 0."""
    pred = pred.float()
    target = pred.new_ones(()) if target_is_real else pred.new_zeros(())
    return F.mse_loss(pred, target.expand_as(pred))


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Cycle-consistency loss: mean absolute error of a round trip to ``original``."""
    return F.l1_loss(reconstructed.float(), original.float())


def identity_loss(mapped: Tensor, original: Tensor) -> Tensor:
    """Identity loss: mean absolute error of a generator applied to its own target domain."""
    return F.l1_loss(mapped.float(), original.float())


def mask_sparsity(mask: Tensor) -> Tensor:
    """Mean of a soft mask ``(B, 1, H, W)`` in [0, 1]: the fraction of the image repainted."""
    return mask.float().mean()


def mask_smoothness(mask: Tensor) -> Tensor:
    """Anisotropic total variation of a soft mask: mean absolute difference between
    vertically and between horizontally neighbouring pixels."""
    mask = mask.float()
    return (mask[..., 1:, :] - mask[..., :-1, :]).abs().mean() + (mask[..., :, 1:] - mask[..., :, :-1]).abs().mean()
