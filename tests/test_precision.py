"""Fast paths of training (ours): bf16 autocast, channels_last, torch.compile, batch > 1.

Speed itself is measured in ``bench/`` (never asserted here); these tests check that the
fast paths compute what the paper's fp32 path computes, and that the parts kept in
float32 under bf16 (instance norm, losses, weights, Adam states) really are float32.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from sensor_removal.core.tensors import to_tensor
from sensor_removal.models.losses import cycle_loss, gan_loss, identity_loss
from sensor_removal.models.networks import InstanceNorm2dFP32, ResnetGenerator
from sensor_removal.training.module import CycleGAN, scaled_lr
from tests.test_module import trainer

NETS = ("gen_s2n", "gen_n2s", "disc_s", "disc_n")

pytestmark = [
    pytest.mark.filterwarnings(f"ignore:{pattern}")
    for pattern in (
        ".*does not have many workers",
        ".*lr schedule has",
        ".*smaller than the logging interval",
        ".*no `val_dataloader`",
        ".*LeafSpec",
        ".*args parameter is intended",
    )
]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


def tiny(**kwargs) -> CycleGAN:
    return CycleGAN(**{"ngf": 4, "ndf": 4, "n_blocks": 1, **kwargs})


def uint8_pairs(n: int = 2, size: int = 32, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "sensor": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
            "normal": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
        }
        for _ in range(n)
    ]


def fit(model: CycleGAN, root: Path, precision: str = "32-true", batches: int = 1, batch_size: int = 1) -> pl.Trainer:
    t = trainer(root, precision=precision, limit_train_batches=batches, limit_val_batches=0)
    t.fit(model, DataLoader(uint8_pairs(batches * batch_size), batch_size=batch_size))
    return t


# --------------------------------------------------------------------------- bf16
@pytest.mark.numerics
def test_instance_norm_stays_float32_under_autocast() -> None:
    norm = InstanceNorm2dFP32(8)
    x = torch.randn(2, 8, 16, 16) * 3 + 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x.bfloat16())
        plain = nn.InstanceNorm2d(8)(x.bfloat16())
    assert y.dtype == torch.float32
    assert plain.dtype == torch.bfloat16  # what autocast alone would do
    reference = nn.InstanceNorm2d(8)(x.bfloat16().double())
    err_ours = (y.double() - reference).abs().max()
    err_plain = (plain.double() - reference).abs().max()
    assert err_ours < 1e-5 < err_plain  # ours: only the input's rounding; plain: also the output's
    # Outside autocast it is the ordinary instance norm.
    torch.testing.assert_close(norm(x), nn.InstanceNorm2d(8)(x))


@pytest.mark.numerics
def test_losses_are_float32_for_bf16_inputs() -> None:
    a = torch.rand(1, 3, 8, 8).bfloat16()
    b = torch.rand(1, 3, 8, 8)
    for loss in (gan_loss(a, True), cycle_loss(a, b), identity_loss(a, b)):
        assert loss.dtype == torch.float32
    expected = (a.float() - b).abs().mean()
    assert float(cycle_loss(a, b)) == pytest.approx(float(expected), rel=1e-6)


def test_bf16_mixed_training_keeps_float32_weights_and_states(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny()
    before = {n: [p.detach().clone() for p in getattr(model, n).parameters()] for n in NETS}
    seen: dict[str, torch.dtype] = {}
    conv = model.gen_s2n.model[1]
    norm = model.gen_s2n.model[2]
    conv.register_forward_hook(lambda m, i, o: None if "conv" in seen else seen.update(conv=o.dtype))
    norm.register_forward_hook(lambda m, i, o: None if "norm" in seen else seen.update(norm=o.dtype))
    trainer = fit(model, tmp_path, precision="bf16-mixed")
    assert seen == {"conv": torch.bfloat16, "norm": torch.float32}
    for name in NETS:
        params = list(getattr(model, name).parameters())
        assert all(p.dtype == torch.float32 for p in params)
        assert any(not torch.equal(b, p) for b, p in zip(before[name], params, strict=True)), name
    for opt in trainer.optimizers:
        for state in opt.state.values():
            assert state["exp_avg"].dtype == torch.float32
    assert math.isfinite(float(trainer.callback_metrics["train/loss_g"]))


# --------------------------------------------------------------------------- layout
@pytest.mark.numerics
def test_channels_last_networks_and_batches() -> None:
    model = tiny()
    for name in NETS:
        convs = [m for m in getattr(model, name).modules() if isinstance(m, nn.Conv2d)]
        assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    batch = torch.utils.data.default_collate(uint8_pairs(2))
    out = model.on_after_batch_transfer(batch, 0)
    expected = to_tensor(batch["sensor"].permute(0, 2, 3, 1).numpy())
    assert out["sensor"].dtype == torch.float32
    assert out["sensor"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out["sensor"], expected, rtol=0, atol=0)
    # Float inputs keep their values; channels_last=False keeps the default layout.
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(model.on_after_batch_transfer(x, 0), x)
    plain = tiny(channels_last=False)
    assert plain.on_after_batch_transfer(batch, 0)["sensor"].is_contiguous()


@pytest.mark.numerics
def test_channels_last_computes_the_same_generator() -> None:
    torch.manual_seed(0)
    a = ResnetGenerator(ngf=4, n_blocks=1)
    b = ResnetGenerator(ngf=4, n_blocks=1)
    b.load_state_dict(a.state_dict())
    b.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(b(x.contiguous(memory_format=torch.channels_last)), a(x), rtol=1e-4, atol=1e-5)
    # Checkpoints stay loadable into an eager, contiguous generator.
    c = ResnetGenerator(ngf=4, n_blocks=1)
    c.load_state_dict(b.state_dict())
    torch.testing.assert_close(c(x), a(x), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_arrive_as_float_channels_last() -> None:
    model = tiny().cuda()
    batch = torch.utils.data.default_collate(uint8_pairs(2))
    moved = model.on_after_batch_transfer(
        {k: v.pin_memory().to("cuda", non_blocking=True) for k, v in batch.items()}, 0
    )
    assert moved["sensor"].is_cuda and moved["sensor"].dtype == torch.float32
    assert moved["sensor"].is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- compile
def test_compile_option_compiles_all_four_networks_in_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # the compile cache: never the user's in tests
    compiled: list[nn.Module] = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    model = tiny(compile=True)
    keys = set(model.state_dict())
    model.configure_model()
    model.configure_model()  # idempotent
    assert compiled == [model.gen_s2n, model.gen_n2s, model.disc_s, model.disc_n]
    assert set(model.state_dict()) == keys
    tiny().configure_model()
    assert len(compiled) == 4  # off by default


@pytest.mark.numerics
@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    results = []
    for compile_ in (False, True):
        pl.seed_everything(0)
        model = tiny(compile=compile_, pool_size=0)
        trainer = fit(model, tmp_path)
        results.append((float(trainer.callback_metrics["train/loss_g"]), model.gen_s2n.state_dict()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    for key, value in results[0][1].items():
        torch.testing.assert_close(results[1][1][key], value, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- batch > 1
def test_lr_scaling_rules() -> None:
    assert scaled_lr(3e-4, 1, "sqrt") == scaled_lr(3e-4, 1, "linear") == 3e-4  # the paper's batch 1
    assert scaled_lr(3e-4, 4, "sqrt") == pytest.approx(6e-4)
    assert scaled_lr(3e-4, 4, "linear") == pytest.approx(1.2e-3)
    assert scaled_lr(3e-4, 4, "none") == 3e-4
    with pytest.raises(ValueError, match="lr_scaling"):
        scaled_lr(3e-4, 4, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        tiny(lr_batch_size=0)


def test_batch_of_four_trains_with_scaled_lr(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny(lr_batch_size=4, lr_scaling="sqrt")
    trainer = fit(model, tmp_path, batches=1, batch_size=4)
    assert [opt.param_groups[0]["initial_lr"] for opt in trainer.optimizers] == pytest.approx([6e-4, 6e-4])
    assert trainer.global_step == 2  # one G and one D step for the batch of four pairs


def test_a_batch_size_the_lr_was_not_scaled_for_is_reported(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="lr_batch_size=1"):
        fit(tiny(), tmp_path, batches=1, batch_size=2)


def test_cli_links_data_batch_size_to_the_lr_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from sensor_removal.training.cli import build_cli
    from tests.videos import make_video

    recs = []
    for i, (name, cond) in enumerate([("n1", "normal"), ("s1", "sensor")]):
        make_video(tmp_path / f"{name}.mp4", n=8, width=48, height=48, seed=i)
        recs.append({"name": name, "path": f"{name}.mp4", "session": 1, "condition": cond, "bbox": [0, 0, 48, 48]})
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"subject": "t", "recordings": recs}))
    from pytorch_lightning.cli import LightningCLI

    monkeypatch.setattr(LightningCLI, "_run_subcommand", lambda self, name: None)  # build, no training
    cli = build_cli(
        ["fit", f"--data.manifest={manifest}", "--data.batch_size=8", "--data.fraction=1.0", "--trainer.logger=false",
         "--trainer.callbacks=[]", f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    hp = cli.model.hparams
    assert hp.lr_batch_size == 8  # linked from data.batch_size
    assert hp.lr_scaling == "sqrt" and hp.channels_last is True and hp.compile is False
    assert cli.trainer.precision == "32-true"  # the paper's default
    opt_g, _ = cli.model.configure_optimizers()[0]
    assert opt_g.param_groups[0]["lr"] == pytest.approx(3e-4 * math.sqrt(8))
