"""The per-subject CycleGAN as one LightningModule (Büchner et al., VISAPP 2023, Sec. 3).

Two unpaired image domains of one subject: S, face crops *with* sEMG electrodes, and N,
face crops of the same face *without* them. Two generators translate between them
(``gen_s2n`` = G_S→N, the one that removes sensors and is used by the cleaner;
``gen_n2s`` = G_N→S), two PatchGAN discriminators judge each domain (``disc_s`` judges
sensor images, ``disc_n`` normal ones). Every training batch does, in this order:

1. **generator step** (discriminators frozen): LSGAN loss of both translations against
   "real", plus λ·(cycle S→N→S + cycle N→S→N), plus λ·λ_id·(identity terms);
2. **discriminator step** (generators frozen, fakes detached): each discriminator is
   trained on real images against fakes drawn from its image pool (history of 50), its
   loss halved, ``0.5·(LSGAN(D(real), 1) + LSGAN(D(fake), 0))`` — D learns at half the
   rate of G, as in the CycleGAN paper.

One Adam optimises both generators, one both discriminators (lr 3e-4, β = (0.5, 0.999)).
The learning rate is constant for ``epochs_constant`` epochs and then decays linearly by
the CycleGAN reference's rule over ``epochs_decay`` epochs: the line would reach zero one
epoch after the run, so the last epoch still trains at lr/(epochs_decay + 1) — lr/16
with the paper's 15 + 15 (see ``lr_factor``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import AttributeDict
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR

from sensor_removal.core.argtypes import (
    HalfOpenShare,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from sensor_removal.core.tensors import to_unit_range
from sensor_removal.models.losses import (
    cycle_loss,
    gan_loss,
    identity_loss,
    mask_smoothness,
    mask_sparsity,
)
from sensor_removal.models.networks import (
    AttentionGenerator,
    ImagePool,
    PatchDiscriminator,
    build_generator,
    init_weights,
)

__all__ = [
    "CycleGAN",
    "DiscriminatorOutput",
    "GeneratorOutput",
    "LrScaling",
    "lr_factor",
    "scaled_lr",
]

LrScaling = Literal["sqrt", "linear", "none"]


def scaled_lr(lr: float, batch_size: int, rule: LrScaling) -> float:
    """Learning rate for ``batch_size`` images per step, given ``lr`` tuned at batch 1.

    The paper trains at batch 1 (lr 3e-4). Larger batches take ``1 / batch_size`` as many
    steps per epoch (an epoch is still every training frame once), each with a less noisy
    gradient. Rules (ours): ``"sqrt"`` (default) multiplies lr by ``sqrt(batch_size)``,
    the square-root scaling rule for Adam-type optimisers (Malladi et al., "On the SDEs
    and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022), which keeps the
    optimiser's noise level per epoch; ``"linear"`` multiplies by ``batch_size`` (Goyal et
    al. 2017, derived for SGD; with Adam it overshoots quickly); ``"none"`` keeps ``lr``.
    At batch 1 every rule gives ``lr``, so the paper's setting is unchanged.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rule == "sqrt":
        return lr * math.sqrt(batch_size)
    if rule == "linear":
        return lr * batch_size
    if rule == "none":
        return lr
    raise ValueError(f"lr_scaling must be one of 'sqrt', 'linear', 'none'; got {rule!r}")


def lr_factor(epoch: int, epochs_constant: int, epochs_decay: int) -> float:
    """Multiplier of the base learning rate during 0-based ``epoch``.

    ``factor(e) = max(0, 1 - max(0, e + 1 - epochs_constant) / (epochs_decay + 1))``

    This is the CycleGAN reference's linear rule (with its default ``epoch_count=1``): 1 for
    epochs ``[0, epochs_constant)``, then a straight line that would reach 0 at epoch
    ``epochs_constant + epochs_decay`` — the first epoch *after* the run, so the last
    trained epoch still learns a little. Paper values (15 + 15, base 3e-4): epochs 0–14 →
    1, epoch 15 → 15/16, epoch 22 → 8/16, epoch 29 → 1/16. Epochs beyond the schedule get 0.
    """
    return max(0.0, 1.0 - max(0, epoch + 1 - epochs_constant) / float(epochs_decay + 1))


@dataclass
class GeneratorOutput:
    """Losses of one generator step (unweighted parts) and the fakes the D step needs."""

    loss: Tensor  # the weighted total that was back-propagated
    gan_s2n: Tensor  # LSGAN(D_N(G_S→N(s)), real)
    gan_n2s: Tensor  # LSGAN(D_S(G_N→S(n)), real)
    cycle: Tensor  # |G_N→S(G_S→N(s)) - s| + |G_S→N(G_N→S(n)) - n|
    identity: Tensor  # |G_S→N(n) - n| + |G_N→S(s) - s| (0 when λ_id = 0)
    fake_normal: Tensor  # G_S→N(s), the cleaned sensor images
    fake_sensor: Tensor  # G_N→S(n)
    mask_sparsity: Tensor | None = None  # attention generator: mean A of both translations
    mask_smoothness: Tensor | None = None  # attention generator: total variation of both A


@dataclass
class DiscriminatorOutput:
    """Losses of one discriminator step; each is 0.5·(real term + fake term)."""

    loss: Tensor  # loss_s + loss_n, the back-propagated total
    loss_s: Tensor  # D_S: sensor images real vs pooled G_N→S fakes
    loss_n: Tensor  # D_N: normal images real vs pooled G_S→N fakes


class CycleGAN(pl.LightningModule):
    """Per-subject CycleGAN that learns to remove sEMG electrodes (G_S→N) from face crops.

    Batches, for training and validation, are dicts ``{"sensor": (B, 3, H, W), "normal":
    (B, 3, H, W)}`` of unpaired images in [-1, 1]. ``predict_step`` returns
    ``G_S→N(batch["sensor"])`` (or of the tensor itself if the batch is a tensor).

    Manual optimization: a generator step then a discriminator step per batch, so
    ``trainer.global_step`` grows by 2 per batch (mind this with ``max_steps``). The two
    ``LambdaLR`` schedulers are stepped by hand once per epoch in ``on_train_epoch_end``;
    they and both Adam states live in the checkpoint, so ``fit(ckpt_path=...)`` resumes the
    same learning-rate curve. ``trainer.max_epochs`` should be
    ``epochs_constant + epochs_decay`` (a warning says so otherwise).

    Distributed training: use ``strategy="ddp_find_unused_parameters_true"`` (or
    ``DDPStrategy(find_unused_parameters=True)``). Each step back-propagates through only
    half of the networks (the D step never reaches the generators), which plain ``ddp``
    rejects. Image pools are per process and not synchronised; the epoch-level losses are
    averaged over ranks (``sync_dist=True``) once per epoch, the per-step values
    (``train/*_step``) are those of the local rank and cost no communication. The module
    writes no files itself.

    Logged: ``train/loss_g``, ``train/loss_d``, ``train/gan_s2n``, ``train/gan_n2s``,
    ``train/cycle``, ``train/identity`` (unweighted sums of both directions),
    ``train/lr`` — epoch means (attention generator: also ``train/mask_sparsity`` and
    ``train/mask_smoothness``); the losses also per step as ``train/<name>_step``;
    ``val/cycle`` and ``val/identity`` (same definitions, on validation pairs).

    Args:
        ngf: filters of the generators' first layer (paper: 64).
        ndf: filters of the discriminators' first layer (paper: 64).
        n_blocks: residual blocks per generator (paper: 9).
        n_layers_d: stride-2 layers of the PatchGAN discriminators (paper: 3, 70x70 patches).
        lr: initial Adam learning rate of generators and discriminators (paper: 3e-4).
        beta1: Adam β1 (paper: 0.5).
        beta2: Adam β2 (paper: 0.999).
        lambda_cycle: weight λ of the cycle-consistency L1 losses (paper: 10).
        lambda_identity: weight of the identity L1 losses relative to λ (paper: 0.5, i.e.
            5 in absolute terms); 0 disables them and saves two generator passes.
        pool_size: generated images kept per image pool for the discriminators (paper: 50;
            0 disables the pool).
        epochs_constant: epochs at the initial learning rate (paper: 15).
        epochs_decay: epochs of linear decay to zero after those (paper: 15).
        lr_batch_size: image pairs per training step that the learning rate is scaled
            for (``lr_scaling``); the CLI links it to ``data.batch_size``. Code that builds
            the module itself passes its loader's batch size (a warning says when the
            first batch differs).
        lr_scaling: how ``lr`` (tuned for batch 1) grows with ``lr_batch_size``: ``"sqrt"``,
            ``"linear"`` or ``"none"`` (see :func:`scaled_lr`; ours, the paper uses batch 1).
        channels_last: keep the four networks' weights and the batches in NHWC memory
            layout (ours), which oneDNN on CPU and cuDNN's tensor-core kernels run
            faster; the values are the same up to float summation order.
        compile: ``torch.compile`` the four networks (ours, opt in): the first step
            compiles (tens of seconds to minutes on few cores; a progress line says so),
            later ones run fused kernels. Compiled kernels are cached on disk
            (``$TORCHINDUCTOR_CACHE_DIR``, default ``~/.cache/sensor-removal/inductor``;
            :mod:`sensor_removal.training.compile_warmup`), so a later fit on the same machine
            loads them. The parameter names in checkpoints do not change.
        generator: ``resnet`` (the paper's) or ``attention`` (our extension:
            :class:`~sensor_removal.models.networks.AttentionGenerator`, ``A·T(x) + (1 − A)·x``,
            which leaves the input untouched where its mask A is 0).
        lambda_mask_sparsity: attention only — weight of the mean of A (repaint little).
        lambda_mask_smooth: attention only — weight of the total variation of A.
        init_from: a checkpoint whose four networks this fit starts from (ours: a
            population warm start — fit a population model on a list of manifests once,
            then fine-tune it per subject on a short schedule). Loaded in
            ``setup("fit")`` with ``weights_only=True``; the architecture (``ngf``,
            ``ndf``, ``n_blocks``, ``n_layers_d``, ``generator``, the data's
            ``crop_size``) must be this fit's. Only the weights are taken: optimiser
            states, the lr schedule and the epoch start afresh. A resume
            (``fit --ckpt_path``) wins: the CLI then sets :attr:`resuming` and
            ``init_from`` is not read (the file may be gone); code that calls
            ``Trainer.fit(ckpt_path=...)`` itself gets the resumed weights over it.

    Precision is the Trainer's (``trainer.precision``): ``32-true`` (the paper) or
    ``bf16-mixed`` (ours; CPU with AVX-512 BF16/AMX, or CUDA; on a CPU without native bf16
    it is emulated, slower than fp32, and the fit warns once). Under bf16 autocast the
    convolutions run in bf16, while instance norm (:class:`InstanceNorm2dFP32`) and the
    losses stay float32 and the weights and Adam states stay float32 throughout.
    """

    def __init__(
        self,
        ngf: PositiveInt = 64,
        ndf: PositiveInt = 64,
        n_blocks: PositiveInt = 9,
        n_layers_d: PositiveInt = 3,
        lr: PositiveFloat = 3e-4,
        beta1: HalfOpenShare = 0.5,
        beta2: HalfOpenShare = 0.999,
        lambda_cycle: NonNegativeFloat = 10.0,
        lambda_identity: NonNegativeFloat = 0.5,
        pool_size: NonNegativeInt = 50,
        epochs_constant: NonNegativeInt = 15,
        epochs_decay: NonNegativeInt = 15,
        lr_batch_size: PositiveInt = 1,
        lr_scaling: LrScaling = "sqrt",
        channels_last: bool = True,
        compile: bool = False,
        generator: Literal["resnet", "attention"] = "resnet",
        lambda_mask_sparsity: float = 0.1,
        lambda_mask_smooth: float = 0.1,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        # Plain numbers in the checkpoint's hyper-parameters (the CLI passes the range types).
        ngf, ndf, n_blocks, n_layers_d = int(ngf), int(ndf), int(n_blocks), int(n_layers_d)
        lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
        lambda_cycle, lambda_identity = float(lambda_cycle), float(lambda_identity)
        pool_size, epochs_constant, epochs_decay = int(pool_size), int(epochs_constant), int(epochs_decay)
        if lr <= 0 or lambda_cycle < 0 or lambda_identity < 0:
            raise ValueError(
                f"CycleGAN: need lr > 0, lambda_cycle >= 0, lambda_identity >= 0; got "
                f"lr={lr}, lambda_cycle={lambda_cycle}, lambda_identity={lambda_identity}"
            )
        if epochs_constant < 0 or epochs_decay < 0:
            raise ValueError(
                f"CycleGAN: need epochs_constant >= 0 and epochs_decay >= 0; got "
                f"epochs_constant={epochs_constant}, epochs_decay={epochs_decay}"
            )
        scaled_lr(lr, lr_batch_size, lr_scaling)  # validates the batch size and the rule
        self.save_hyperparameters(logger=False)  # the CLI logs the full config (cli.RunConfig)
        self.automatic_optimization = False

        if lambda_mask_sparsity < 0 or lambda_mask_smooth < 0:
            raise ValueError(
                f"CycleGAN: need lambda_mask_sparsity >= 0 and lambda_mask_smooth >= 0; got "
                f"{lambda_mask_sparsity}, {lambda_mask_smooth}"
            )
        self.gen_s2n = init_weights(build_generator(generator, ngf=ngf, n_blocks=n_blocks))
        self.gen_n2s = init_weights(build_generator(generator, ngf=ngf, n_blocks=n_blocks))
        self.disc_s = init_weights(PatchDiscriminator(ndf=ndf, n_layers=n_layers_d))
        self.disc_n = init_weights(PatchDiscriminator(ndf=ndf, n_layers=n_layers_d))
        # pool_s holds fakes of the sensor domain (G_N→S outputs) for disc_s; pool_n for disc_n.
        self.pool_s = ImagePool(pool_size)
        self.pool_n = ImagePool(pool_size)
        if channels_last:
            for net in self.networks():
                net.to(memory_format=torch.channels_last)
        self._compiled = False
        #: Set (by the CLI) when this fit resumes from ``--ckpt_path``: ``init_from`` is
        #: then not loaded, since the resumed checkpoint's weights replace it anyway.
        self.resuming = False

    @property
    def _hp(self) -> AttributeDict:
        """``hparams`` as ``save_hyperparameters`` stores them (Lightning types it more widely)."""
        hp = self.hparams
        assert isinstance(hp, AttributeDict)
        return hp

    def _two_optimizers(self) -> list[LightningOptimizer]:
        """``optimizers()``: the generators' and the discriminators' (a list, as there are two)."""
        opts = self.optimizers()
        assert isinstance(opts, list)
        return opts

    def setup(self, stage: str) -> None:
        if stage == "fit" and self._hp.get("init_from") and not self.resuming:
            self.load_init_weights(str(self._hp.init_from))

    def load_init_weights(self, path: str) -> None:
        """Copy the four networks' weights of the checkpoint at ``path`` into this module
        (:func:`~sensor_removal.training.warmstart.init_state`: the file and the mismatching
        field named on any error). Lightning calls ``setup`` before a resume restores its
        checkpoint, so a resume's weights replace these."""
        from sensor_removal.core.checkpoint import CheckpointError
        from sensor_removal.training.warmstart import init_state

        crop = None
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is not None:
            crop = datamodule.hparams.get("crop_size")
        for name, state in init_state(path, dict(self.hparams), crop).items():
            try:
                getattr(self, name).load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise CheckpointError(f"{path}: --model.init_from: {name} weights do not fit ({first})") from None

    def networks(self) -> tuple[torch.nn.Module, ...]:
        """The four networks: G_S→N, G_N→S, D_S, D_N."""
        return (self.gen_s2n, self.gen_n2s, self.disc_s, self.disc_n)

    def configure_model(self) -> None:
        # Compile in place (nn.Module.compile): parameter names, and so checkpoints,
        # stay those of the eager networks.
        if self._hp.compile and not self._compiled:
            from sensor_removal.training.compile_warmup import CompileProgress, compile_networks

            self._compile_cache = compile_networks(self.networks())
            self._compile_progress: CompileProgress | None = CompileProgress()
            self._compiled = True

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The first compiled step compiles (minutes on 2 CPU cores): say so while it runs.
        progress = getattr(self, "_compile_progress", None)
        if progress is not None and not progress.started and self.trainer.is_global_zero:
            progress.start(self._compile_cache)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        progress = getattr(self, "_compile_progress", None)
        if progress is not None and progress.started:
            self.compile_warmup_s = progress.done()
            self._compile_progress = None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 image batches (the DataModule's) → [-1, 1] float32, on the device, in
        the networks' memory layout. Float tensors pass through unchanged in value."""
        if isinstance(batch, Mapping):
            return {k: self._prepare(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._prepare(v) for v in batch)
        return self._prepare(batch)

    def _prepare(self, x: Any) -> Any:
        if not isinstance(x, Tensor) or x.ndim != 4:
            return x
        if x.dtype == torch.uint8:
            x = to_unit_range(x)
        if self._hp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------ inference
    def forward(self, sensor: Tensor) -> Tensor:
        """Remove the sensors: G_S→N(sensor)."""
        return self.gen_s2n(sensor)

    # ------------------------------------------------------------------ the method
    def generator_losses(self, sensor: Tensor, normal: Tensor) -> GeneratorOutput:
        """CycleGAN generator objective on one batch (no optimizer involved)."""
        hp = self._hp
        attention = hp.get("generator", "resnet") == "attention"
        if attention:
            s2n, n2s = self.gen_s2n, self.gen_n2s
            assert isinstance(s2n, AttentionGenerator) and isinstance(n2s, AttentionGenerator)  # generator="attention"
            fake_normal, mask_n = s2n.forward_with_mask(sensor)
            fake_sensor, mask_s = n2s.forward_with_mask(normal)
        else:
            fake_normal = self.gen_s2n(sensor)
            fake_sensor = self.gen_n2s(normal)
        gan_s2n = gan_loss(self.disc_n(fake_normal), target_is_real=True)
        gan_n2s = gan_loss(self.disc_s(fake_sensor), target_is_real=True)
        cycle = cycle_loss(self.gen_n2s(fake_normal), sensor) + cycle_loss(self.gen_s2n(fake_sensor), normal)
        if hp.lambda_identity > 0:
            identity = identity_loss(self.gen_s2n(normal), normal) + identity_loss(self.gen_n2s(sensor), sensor)
        else:
            identity = cycle.new_zeros(())
        loss = gan_s2n + gan_n2s + hp.lambda_cycle * cycle + hp.lambda_cycle * hp.lambda_identity * identity
        sparsity = smoothness = None
        if attention:
            sparsity = mask_sparsity(mask_n) + mask_sparsity(mask_s)
            smoothness = mask_smoothness(mask_n) + mask_smoothness(mask_s)
            loss = loss + hp.lambda_mask_sparsity * sparsity + hp.lambda_mask_smooth * smoothness
        return GeneratorOutput(
            loss=loss,
            gan_s2n=gan_s2n,
            gan_n2s=gan_n2s,
            cycle=cycle,
            identity=identity,
            fake_normal=fake_normal,
            fake_sensor=fake_sensor,
            mask_sparsity=sparsity,
            mask_smoothness=smoothness,
        )

    def discriminator_losses(
        self, sensor: Tensor, normal: Tensor, fake_sensor: Tensor, fake_normal: Tensor
    ) -> DiscriminatorOutput:
        """Discriminator objective: real vs (already pooled, detached) fakes, halved."""
        loss_s = 0.5 * (
            gan_loss(self.disc_s(sensor), target_is_real=True)
            + gan_loss(self.disc_s(fake_sensor), target_is_real=False)
        )
        loss_n = 0.5 * (
            gan_loss(self.disc_n(normal), target_is_real=True)
            + gan_loss(self.disc_n(fake_normal), target_is_real=False)
        )
        return DiscriminatorOutput(loss=loss_s + loss_n, loss_s=loss_s, loss_n=loss_n)

    def generator_step(self, sensor: Tensor, normal: Tensor) -> GeneratorOutput:
        """Update both generators; the discriminators are frozen (no gradients, no step)."""
        opt_g = self._two_optimizers()[0]
        with self.toggled_optimizer(opt_g):
            out = self.generator_losses(sensor, normal)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(out.loss)
            opt_g.step()
        return out

    def discriminator_step(
        self, sensor: Tensor, normal: Tensor, fake_sensor: Tensor, fake_normal: Tensor
    ) -> DiscriminatorOutput:
        """Update both discriminators on real images and pooled, detached fakes."""
        opt_d = self._two_optimizers()[1]
        fake_sensor = self.pool_s.query(fake_sensor.detach())
        fake_normal = self.pool_n.query(fake_normal.detach())
        with self.toggled_optimizer(opt_d):
            out = self.discriminator_losses(sensor, normal, fake_sensor, fake_normal)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(out.loss)
            opt_d.step()
        return out

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        sensor, normal = batch["sensor"], batch["normal"]
        if batch_idx == 0 and self.current_epoch == 0:
            self._check_lr_batch_size(sensor.shape[0])
        g = self.generator_step(sensor, normal)
        d = self.discriminator_step(sensor, normal, g.fake_sensor, g.fake_normal)
        batch_size = sensor.shape[0]
        losses = {
            "loss_g": g.loss,
            "loss_d": d.loss,
            "gan_s2n": g.gan_s2n,
            "gan_n2s": g.gan_n2s,
            "cycle": g.cycle,
            "identity": g.identity,
        }
        if g.mask_sparsity is not None and g.mask_smoothness is not None:  # both or neither (attention)
            losses["mask_sparsity"] = g.mask_sparsity
            losses["mask_smoothness"] = g.mask_smoothness
        for name, value in losses.items():
            value = value.detach()
            # Per step: local rank only, no collective per step.
            self.log(
                f"train/{name}_step",
                value,
                on_step=True,
                on_epoch=False,
                sync_dist=False,
                prog_bar=name in ("loss_g", "loss_d"),
                batch_size=batch_size,
            )
            # Per epoch: accumulated locally, reduced over ranks once at epoch end.
            self.log(
                f"train/{name}",
                value,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=batch_size,
            )
        self.log(
            "train/lr",
            float(self._two_optimizers()[0].param_groups[0]["lr"]),
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=batch_size,
        )

    def _check_lr_batch_size(self, batch_size: int) -> None:
        expected = self._hp.get("lr_batch_size", 1)
        if batch_size != expected:
            rank_zero_warn(
                f"CycleGAN: batches hold {batch_size} image pairs but the learning rate is scaled "
                f"for lr_batch_size={expected}; pass lr_batch_size={batch_size} (the CLI links "
                "it to data.batch_size)."
            )

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        sensor, normal = batch["sensor"], batch["normal"]
        fake_normal = self.gen_s2n(sensor)
        fake_sensor = self.gen_n2s(normal)
        cycle = cycle_loss(self.gen_n2s(fake_normal), sensor) + cycle_loss(self.gen_s2n(fake_sensor), normal)
        identity = identity_loss(self.gen_s2n(normal), normal) + identity_loss(self.gen_n2s(sensor), sensor)
        batch_size = sensor.shape[0]
        self.log("val/cycle", cycle, sync_dist=True, prog_bar=True, batch_size=batch_size)
        self.log("val/identity", identity, sync_dist=True, batch_size=batch_size)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        if isinstance(batch, Mapping):
            images = batch["sensor"]
        elif isinstance(batch, (list, tuple)):
            images = batch[0]
        else:
            images = batch
        return self.gen_s2n(images)

    def configure_optimizers(self) -> tuple[list[Adam], list[LambdaLR]]:
        hp = self._hp
        betas = (hp.beta1, hp.beta2)
        lr = scaled_lr(hp.lr, hp.get("lr_batch_size", 1), hp.get("lr_scaling", "none"))
        opt_g = Adam(
            itertools.chain(self.gen_s2n.parameters(), self.gen_n2s.parameters()),
            lr=lr,
            betas=betas,
        )
        opt_d = Adam(
            itertools.chain(self.disc_s.parameters(), self.disc_n.parameters()),
            lr=lr,
            betas=betas,
        )
        constant, decay = hp.epochs_constant, hp.epochs_decay

        def factor(epoch: int) -> float:
            return lr_factor(epoch, constant, decay)

        # A plain function: LambdaLR then keeps it out of the checkpoint, which stores only
        # last_epoch and base_lrs — the curve itself always comes from the hparams.
        return [opt_g, opt_d], [LambdaLR(opt_g, factor), LambdaLR(opt_d, factor)]

    def on_fit_start(self) -> None:
        from sensor_removal.core.cpu import warn_if_bf16_emulated

        if self.trainer.is_global_zero:  # one warning per fit, with the capability found
            warn_if_bf16_emulated(str(self.trainer.precision), self.device.type)
        total = self._hp.epochs_constant + self._hp.epochs_decay
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs != -1 and max_epochs != total:
            rank_zero_warn(
                f"CycleGAN: trainer.max_epochs={max_epochs} but the lr schedule has "
                f"epochs_constant + epochs_decay = {total} epochs; the lr reaches 0 only "
                f"after epoch {total - 1}."
            )

    def on_train_epoch_end(self) -> None:
        # Manual optimization: Lightning does not step schedulers; once per epoch here.
        # An epoch-end checkpoint (ModelCheckpoint, trainer.save_checkpoint after fit) is
        # written after this hook and resumes at the next epoch. One written before it
        # (mid-epoch, or at validation end with save_on_train_epoch_end=False) holds the
        # unstepped schedulers, and Lightning finishes that epoch on resume, calling this
        # hook then — the curve is the same either way (tests/test_module.py checks both).
        schedulers = self.lr_schedulers()
        assert isinstance(schedulers, list)  # two: the generators' and the discriminators'
        for scheduler in schedulers:
            assert isinstance(scheduler, LambdaLR)  # configure_optimizers'
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the normal domain's colour reference next to the weights
        (:data:`~sensor_removal.core.checkpoint.NORMAL_REFERENCE_KEY`), when the fit has
        a datamodule that provides one (:meth:`FramesDataModule.normal_reference`): the
        cleaner's ``reference`` mask then works from the checkpoint alone, on a lone
        video, on any machine. Plain uint8 tensors, so ``weights_only=True`` loads them.
        A population fit (a list of manifests) stores none."""
        from sensor_removal.core.checkpoint import NORMAL_REFERENCE_KEY

        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        make = getattr(datamodule, "normal_reference", None)
        reference = make() if callable(make) else None
        if reference is not None:  # None: a population fit, whose reference is no subject's
            checkpoint[NORMAL_REFERENCE_KEY] = dict(reference)
