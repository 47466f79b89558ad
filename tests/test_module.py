"""Tests of sensor_removal.training.module.CycleGAN: steps, losses, lr schedule, resume, DDP (slow)."""

from __future__ import annotations

import inspect
import math
import typing
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from sensor_removal.cleaning import load_generator
from sensor_removal.models.losses import cycle_loss, gan_loss, identity_loss
from sensor_removal.training.module import CycleGAN, lr_factor

NETS = ("gen_s2n", "gen_n2s", "disc_s", "disc_n")


class PairDataset(Dataset):
    """Unpaired random 'sensor' and 'normal' crops in [-1, 1], as the DataModule yields them."""

    def __init__(self, n: int = 4, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.sensor = torch.rand(n, 3, size, size, generator=g) * 2 - 1
        self.normal = torch.rand(n, 3, size, size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.sensor)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"sensor": self.sensor[i], "normal": self.normal[i]}


def loader(n: int = 4, batch_size: int = 2) -> DataLoader:
    return DataLoader(PairDataset(n), batch_size=batch_size)


def tiny(**kwargs) -> CycleGAN:
    return CycleGAN(**{"ngf": 4, "ndf": 4, "n_blocks": 1, **kwargs})


def trainer(root: Path, max_epochs: int = 1, callbacks=(), **kwargs) -> pl.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=list(callbacks),
        **kwargs,
    )


def snapshot(module: CycleGAN) -> dict[str, list[torch.Tensor]]:
    return {n: [p.detach().clone() for p in getattr(module, n).parameters()] for n in NETS}


def changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


class LrRecorder(Callback):
    """Learning rate of both optimizers at the start of every epoch, by epoch."""

    def __init__(self) -> None:
        self.lr: dict[int, tuple[float, float]] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        g, d = trainer.optimizers
        self.lr[trainer.current_epoch] = (g.param_groups[0]["lr"], d.param_groups[0]["lr"])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The nets are tiny: threads only add synchronisation, and on a shared 2-core machine
    # oversubscribed OpenMP threads slow these tests down by an order of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Lightning's advice for real runs, not findings about the module under test.
pytestmark = [
    pytest.mark.filterwarnings(f"ignore:{pattern}")
    for pattern in (
        ".*does not have many workers",
        ".*lr schedule has",
        ".*dataloader is not resumable",
        ".*smaller than the logging interval",
        ".*no `val_dataloader`",
        ".*LeafSpec",
        ".*callbacks used to create the checkpoint",
        ".*args parameter is intended",
    )
]


# --------------------------------------------------------------------------- contract
def test_signature_defaults_are_the_papers() -> None:
    params = inspect.signature(CycleGAN.__init__).parameters
    expected = dict(
        ngf=64, ndf=64, n_blocks=9, n_layers_d=3, lr=3e-4, beta1=0.5, beta2=0.999,
        lambda_cycle=10.0, lambda_identity=0.5, pool_size=50, epochs_constant=15, epochs_decay=15,
    )  # fmt: skip
    assert {k: params[k].default for k in expected} == expected
    # Typed, with the range checked by the CLI: int/float or a range-restricted subclass.
    hints = typing.get_type_hints(CycleGAN.__init__)
    assert all(issubclass(hints[k], type(v)) for k, v in expected.items())
    with pytest.raises(ValueError):
        hints["lr"](-1.0)  # e.g. --model.lr -1 is refused while parsing
    doc = inspect.getdoc(CycleGAN)
    assert all(f"{k}:" in doc for k in expected)  # every argument documented


def test_hparams_and_attribute_names_are_the_contract() -> None:
    model = tiny(n_blocks=2)
    assert model.hparams.ngf == 4 and model.hparams.n_blocks == 2
    keys = model.state_dict().keys()
    for name in NETS:
        assert any(k.startswith(f"{name}.") for k in keys)
    assert not model.automatic_optimization


# --------------------------------------------------------------------------- steps
def test_one_training_step_updates_all_four_networks(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny()
    before = snapshot(model)
    t = trainer(tmp_path, limit_train_batches=1)
    t.fit(model, loader())
    for name in NETS:
        assert changed(before[name], getattr(model, name)), f"{name} was not updated"
    assert t.global_step == 2  # one generator step + one discriminator step
    names = ("loss_g", "loss_d", "gan_s2n", "gan_n2s", "cycle", "identity")
    for name in names:
        for key in (f"train/{name}", f"train/{name}_step"):
            value = t.callback_metrics[key]
            assert torch.isfinite(value), key
    assert t.callback_metrics["train/cycle"] > 0
    assert t.callback_metrics["train/lr"] == pytest.approx(3e-4)
    # toggling restored requires_grad everywhere
    assert all(p.requires_grad for p in model.parameters())
    assert len(model.pool_s) == 2 and len(model.pool_n) == 2


class StepSpy(CycleGAN):
    """Records which networks each of the two steps changed (within a real Trainer run)."""

    def setup(self, stage: str) -> None:
        self.report: list[tuple[str, dict[str, bool]]] = []

    def generator_step(self, sensor, normal):
        before = snapshot(self)
        discs = [p for n in ("disc_s", "disc_n") for p in getattr(self, n).parameters()]
        grads = [None if p.grad is None else p.grad.clone() for p in discs]
        out = super().generator_step(sensor, normal)
        self.report.append(("G", {n: changed(before[n], getattr(self, n)) for n in NETS}))
        # frozen discriminators: no gradient reached them (left as the D step left them)
        for p, g in zip(discs, grads, strict=True):
            assert (p.grad is None and g is None) or torch.equal(p.grad, g)
        return out

    def discriminator_step(self, sensor, normal, fake_sensor, fake_normal):
        before = snapshot(self)
        out = super().discriminator_step(sensor, normal, fake_sensor, fake_normal)
        self.report.append(("D", {n: changed(before[n], getattr(self, n)) for n in NETS}))
        return out


def test_each_step_changes_only_its_networks(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = StepSpy(ngf=4, ndf=4, n_blocks=1)
    trainer(tmp_path, limit_train_batches=2).fit(model, loader())
    assert [step for step, _ in model.report] == ["G", "D", "G", "D"]
    for step, changes in model.report:
        gens = changes["gen_s2n"] and changes["gen_n2s"]
        discs = changes["disc_s"] or changes["disc_n"]
        if step == "G":
            assert gens and not discs, changes
        else:
            assert changes["disc_s"] and changes["disc_n"], changes
            assert not (changes["gen_s2n"] or changes["gen_n2s"]), changes


def test_generator_objective_is_the_papers_sum() -> None:
    torch.manual_seed(0)
    batch = next(iter(loader(2)))
    s, n = batch["sensor"], batch["normal"]
    for lambda_identity in (0.5, 0.0):
        model = tiny(lambda_cycle=7.0, lambda_identity=lambda_identity)
        out = model.generator_losses(s, n)
        with torch.no_grad():
            gan = gan_loss(model.disc_n(model.gen_s2n(s)), True) + gan_loss(model.disc_s(model.gen_n2s(n)), True)
            cyc = cycle_loss(model.gen_n2s(model.gen_s2n(s)), s) + cycle_loss(model.gen_s2n(model.gen_n2s(n)), n)
            idt = identity_loss(model.gen_s2n(n), n) + identity_loss(model.gen_n2s(s), s)
        expected_identity = idt if lambda_identity > 0 else torch.tensor(0.0)
        assert out.cycle.item() == pytest.approx(cyc.item(), rel=1e-5)
        assert out.identity.item() == pytest.approx(expected_identity.item(), rel=1e-5, abs=1e-7)
        assert out.loss.item() == pytest.approx((gan + 7.0 * cyc + 7.0 * lambda_identity * idt).item(), rel=1e-5)
        d = model.discriminator_losses(s, n, out.fake_sensor.detach(), out.fake_normal.detach())
        with torch.no_grad():
            d_n = 0.5 * (((model.disc_n(n) - 1) ** 2).mean() + (model.disc_n(out.fake_normal) ** 2).mean())
        assert d.loss_n.item() == pytest.approx(d_n.item(), rel=1e-5)
        assert d.loss.item() == pytest.approx((d.loss_s + d.loss_n).item(), rel=1e-6)


def test_gan_loss_is_least_squares() -> None:
    pred = torch.tensor([[0.0, 2.0]])
    assert gan_loss(pred, True).item() == pytest.approx((1 + 1) / 2)
    assert gan_loss(pred, False).item() == pytest.approx((0 + 4) / 2)


def test_validation_and_predict(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny()
    t = trainer(tmp_path)
    (metrics,) = t.validate(model, loader(), verbose=False)
    batch = next(iter(loader(4, batch_size=4)))
    s, n = batch["sensor"], batch["normal"]
    with torch.no_grad():
        cyc = cycle_loss(model.gen_n2s(model.gen_s2n(s)), s) + cycle_loss(model.gen_s2n(model.gen_n2s(n)), n)
    # two equal batches of 2: the epoch mean equals the full-batch value
    assert metrics["val/cycle"] == pytest.approx(cyc.item(), rel=1e-4)
    assert math.isfinite(metrics["val/identity"]) and metrics["val/identity"] > 0

    predictions = t.predict(model, loader())
    with torch.no_grad():
        expected = model.gen_s2n(s)
    assert torch.allclose(torch.cat(predictions), expected, atol=1e-6)


# --------------------------------------------------------------------------- lr schedule
def test_lr_factor_formula() -> None:
    f = [lr_factor(e, 15, 15) for e in range(32)]
    assert f[:15] == [1.0] * 15
    assert f[15] == pytest.approx(15 / 16)
    assert f[22] == pytest.approx(8 / 16)
    assert f[29] == pytest.approx(1 / 16)
    assert f[30] == 0.0 and f[31] == 0.0
    steps = [a - b for a, b in zip(f[14:30], f[15:31], strict=True)]
    assert all(s == pytest.approx(1 / 16) for s in steps)  # linear


def test_lr_schedule_through_the_trainer(tmp_path: Path) -> None:
    """30 real epochs (1 batch each): the lr both optimizers see at every epoch's start."""
    rec = LrRecorder()
    model = tiny(epochs_constant=15, epochs_decay=15)
    t = trainer(tmp_path, max_epochs=30, callbacks=[rec], limit_train_batches=1)
    t.fit(model, loader(2))
    base = 3e-4
    expected = {0: base, 15: base * 15 / 16, 22: base * 8 / 16, 29: base / 16}
    for epoch, lr in expected.items():
        assert rec.lr[epoch][0] == pytest.approx(lr, rel=1e-9)
        assert rec.lr[epoch][1] == pytest.approx(lr, rel=1e-9)
    assert all(rec.lr[e] == (base, base) for e in range(15))
    assert t.callback_metrics["train/lr"].item() == pytest.approx(base / 16, rel=1e-5)
    # after the last epoch the schedulers point at epoch 30, where the lr is 0
    assert [c.scheduler.last_epoch for c in t.lr_scheduler_configs] == [30, 30]
    assert t.optimizers[0].param_groups[0]["lr"] == 0.0


# --------------------------------------------------------------------------- resume
class Capture(Callback):
    """State right after Lightning restored a checkpoint, and the lr per epoch."""

    def __init__(self) -> None:
        self.lr = LrRecorder()
        self.first_epoch: int | None = None
        self.optimizer_states: list[dict] = []
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.optimizer_states = [
            {k: {n: v.clone() for n, v in st.items()} for k, st in o.state_dict()["state"].items()}
            for o in trainer.optimizers
        ]
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.first_epoch is None:
            self.first_epoch = trainer.current_epoch
        self.lr.on_train_epoch_start(trainer, pl_module)


class SaveMidEpoch(Callback):
    def __init__(self, path: Path, epoch: int) -> None:
        self.path, self.epoch = path, epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            trainer.save_checkpoint(self.path)


@pytest.fixture(scope="module")
def uninterrupted_lr(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[float, float]]:
    rec = LrRecorder()
    pl.seed_everything(0)
    t = trainer(tmp_path_factory.mktemp("full"), max_epochs=6, callbacks=[rec])
    t.fit(tiny(epochs_constant=2, epochs_decay=4), loader(), loader())
    return rec.lr


@pytest.mark.parametrize("saved", ["epoch_end", "validation_end", "mid_epoch"])
def test_resume_continues_schedule_and_adam_state(
    tmp_path: Path, uninterrupted_lr: dict[int, tuple[float, float]], saved: str
) -> None:
    """Train (toward) 4 of 6 epochs, save, resume with ckpt_path; compare with a 6-epoch run.

    epoch_end: ModelCheckpoint(save_last) after the epoch (after the scheduler step);
    validation_end: saved at validation end, before ``on_train_epoch_end`` stepped the
    schedulers; mid_epoch: saved after the first batch of epoch 3 (as a preemption would).
    """
    pl.seed_everything(0)
    ckpt_dir = tmp_path / "ckpt"
    if saved == "mid_epoch":
        path = tmp_path / "mid.ckpt"
        callbacks, max_epochs = [SaveMidEpoch(path, epoch=3)], 6
    else:
        path = ckpt_dir / "last.ckpt"
        ckpt = ModelCheckpoint(
            dirpath=ckpt_dir,
            monitor="val/cycle",
            save_last=True,
            save_on_train_epoch_end=saved == "epoch_end",
        )
        callbacks, max_epochs = [ckpt], 4
    first = trainer(tmp_path / "a", max_epochs=max_epochs, callbacks=callbacks,
                    enable_checkpointing=saved != "mid_epoch")  # fmt: skip
    first.fit(tiny(epochs_constant=2, epochs_decay=4), loader(), loader())

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 3
    scheduler_epochs = [s["last_epoch"] for s in checkpoint["lr_schedulers"]]
    assert scheduler_epochs == ([4, 4] if saved == "epoch_end" else [3, 3])

    capture = Capture()
    resumed = trainer(tmp_path / "b", max_epochs=6, callbacks=[capture])
    resumed.fit(tiny(epochs_constant=2, epochs_decay=4), loader(), loader(), ckpt_path=path)

    # the same weights and the same Adam moments as saved
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(capture.weights[key], value), key
    for saved_opt, restored in zip(checkpoint["optimizer_states"], capture.optimizer_states, strict=True):
        assert saved_opt["state"].keys() == restored.keys() and restored
        for idx, st in saved_opt["state"].items():
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(st[name], restored[idx][name]), (idx, name)
    # continues at epoch 4 (the interrupted epoch 3 is finished first when saved within it)
    assert capture.first_epoch == 4
    assert resumed.current_epoch == 6
    for epoch in (4, 5):
        assert capture.lr.lr[epoch] == pytest.approx(uninterrupted_lr[epoch], rel=1e-12)
    assert uninterrupted_lr[4][0] == pytest.approx(3e-4 * lr_factor(4, 2, 4))
    assert resumed.global_step == 6 * 2 * 2  # 6 epochs x 2 batches x (G + D)


@pytest.mark.numerics
def test_cleaner_loads_the_trained_generator(tmp_path: Path) -> None:
    """The cleaner's loader (one implementation) rebuilds G_S→N from a real checkpoint."""
    pl.seed_everything(0)
    model = tiny(n_blocks=2)
    t = trainer(tmp_path, limit_train_batches=1)
    t.fit(model, loader())
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    # Fitted without a DataModule: add the crop size the DataModule would have recorded.
    ckpt = torch.load(path, weights_only=True)
    ckpt["datamodule_hyper_parameters"] = {"crop_size": 32}
    torch.save(ckpt, path)
    gen, settings = load_generator(path)
    assert settings.crop_size == 32
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        # Same weights; the trained copy is channels_last, so only summation order differs.
        torch.testing.assert_close(gen(x), model.gen_s2n(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- DDP
class SameWeightsOnAllRanks(Callback):
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        gathered = pl_module.all_gather(flat)
        assert gathered.shape[0] == 2
        assert torch.equal(gathered[0], gathered[1]), "ranks diverged"
        assert len(pl_module.pool_s) > 0  # each rank fed its own pool


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """2 processes (gloo) with find_unused_parameters: trains, ranks stay in sync.

    Spawn launcher so it runs inside pytest; the CLI uses ``ddp_find_unused_parameters_true``,
    which wraps the module in the same DDP with the same setting.
    """
    pl.seed_everything(0)
    t = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn_find_unused_parameters_true",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[SameWeightsOnAllRanks()],
    )
    model = tiny()
    before = snapshot(model)
    t.fit(model, loader(8), loader(4))
    for name in NETS:
        assert changed(before[name], getattr(model, name)), name
    assert torch.isfinite(t.callback_metrics["train/loss_g"])
    assert torch.isfinite(t.callback_metrics["val/cycle"])


def test_lightning_cli_builds_the_model_from_its_signature(tmp_path: Path) -> None:
    from pytorch_lightning.cli import LightningCLI

    cli = LightningCLI(
        CycleGAN,
        run=False,
        args=[
            "--model.ngf=8",
            "--model.n_blocks=2",
            "--model.lambda_identity=0.0",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
    )
    assert isinstance(cli.model, CycleGAN)
    assert cli.model.hparams.ngf == 8 and cli.model.hparams.n_blocks == 2
    assert cli.model.hparams.lambda_identity == 0.0 and cli.model.hparams.lr == 3e-4
    # the documented paper values reach the config schema's help (line wrapping removed)
    help_text = " ".join(cli.parser.format_help().split())
    assert "residual blocks per generator (paper: 9)" in help_text
    assert "weight λ of the cycle-consistency L1 losses (paper: 10)" in help_text
