"""The attention generator option (model.generator: attention; our extension)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from sensor_removal.cleaning import load_generator
from sensor_removal.models.losses import (
    cycle_loss,
    gan_loss,
    identity_loss,
    mask_smoothness,
    mask_sparsity,
)
from sensor_removal.models.networks import AttentionGenerator, ResnetGenerator, build_generator
from tests.test_module import loader, tiny, trainer


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.numerics
def test_output_blends_translation_and_input_by_the_mask() -> None:
    torch.manual_seed(0)
    gen = AttentionGenerator(ngf=4, n_blocks=1)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y, a = gen.forward_with_mask(x)
    assert a.shape == (2, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    t = gen.body(x)[:, :3]
    assert torch.allclose(y, a * t + (1 - a) * x, atol=1e-6)
    assert torch.equal(gen(x), y)
    # A mask of 0 passes the input through untouched.
    last = gen.body.model[-2]
    with torch.no_grad():
        last.weight[3].zero_()
        last.bias[3] = -50.0
    y0, a0 = gen.forward_with_mask(x)
    assert a0.max() == 0 and torch.equal(y0, x)


def test_build_generator_kinds() -> None:
    assert isinstance(build_generator("resnet", ngf=4, n_blocks=1), ResnetGenerator)
    assert isinstance(build_generator("attention", ngf=4, n_blocks=1), AttentionGenerator)
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("unet")


def test_mask_losses() -> None:
    a = torch.zeros(1, 1, 4, 4)
    assert mask_sparsity(a) == 0 and mask_smoothness(a) == 0
    a[..., :, 2:] = 1.0  # half on, one vertical edge
    assert mask_sparsity(a) == 0.5
    assert mask_smoothness(a) == pytest.approx(4 / 12)


def test_objective_adds_the_mask_terms() -> None:
    torch.manual_seed(0)
    model = tiny(generator="attention", lambda_mask_sparsity=0.3, lambda_mask_smooth=0.2)
    s, n = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    out = model.generator_losses(s, n)
    fake_n, mask_n = model.gen_s2n.forward_with_mask(s)
    fake_s, mask_s = model.gen_n2s.forward_with_mask(n)
    base = (
        gan_loss(model.disc_n(fake_n), True) + gan_loss(model.disc_s(fake_s), True)
        + 10 * (cycle_loss(model.gen_n2s(fake_n), s) + cycle_loss(model.gen_s2n(fake_s), n))
        + 5 * (identity_loss(model.gen_s2n(n), n) + identity_loss(model.gen_n2s(s), s))
    )  # fmt: skip
    sparsity = mask_sparsity(mask_n) + mask_sparsity(mask_s)
    smooth = mask_smoothness(mask_n) + mask_smoothness(mask_s)
    assert torch.allclose(out.loss, base + 0.3 * sparsity + 0.2 * smooth, atol=1e-5)
    assert torch.allclose(out.mask_sparsity, sparsity)


@pytest.mark.numerics
def test_attention_cyclegan_trains_in_a_tiny_fit_and_cleans(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny(generator="attention")
    before = [p.detach().clone() for p in model.gen_s2n.parameters()]
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, loader())
    logged = t.logged_metrics
    assert 0 <= float(logged["train/mask_sparsity"]) <= 2  # two means of masks in [0, 1]
    assert float(logged["train/mask_smoothness"]) >= 0
    assert torch.isfinite(logged["train/loss_g"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.gen_s2n.parameters(), strict=True))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        _, a = model.gen_s2n.forward_with_mask(x)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0
    # The cleaner rebuilds the attention generator from the checkpoint's hparams.
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["datamodule_hyper_parameters"] = {"crop_size": 32}
    torch.save(ckpt, path)
    gen, _ = load_generator(path)
    assert isinstance(gen, AttentionGenerator)
    # What the loader promises: the same architecture and the same weights, bit for bit.
    trained = model.gen_s2n.state_dict()
    rebuilt = gen.state_dict()
    assert rebuilt.keys() == trained.keys()
    assert all(torch.equal(rebuilt[k], trained[k]) for k in trained)
    with torch.no_grad():
        # The trained copy is channels_last, the rebuilt one NCHW: the convolutions take
        # other kernels (another float summation order, ~1e-6 here on outputs of size ~1).
        # 1e-4 absorbs any kernel's rounding yet catches a wrong weight or layer, which
        # moves outputs by ~1e-1.
        torch.testing.assert_close(gen(x), model.gen_s2n(x), rtol=0, atol=1e-4)
        # In the same memory format both run the same kernels: exactly equal.
        gen.to(memory_format=torch.channels_last)
        assert torch.equal(gen(x), model.gen_s2n(x))


def test_a_fresh_attention_generator_repaints_almost_nothing() -> None:
    """The mask channel starts near ATTENTION_START, not at 0.5: A grows where the
    discriminator asks for a change instead of being pushed down everywhere."""
    from sensor_removal.models.networks import ATTENTION_START

    torch.manual_seed(0)
    gen = AttentionGenerator(ngf=8, n_blocks=2)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    y, a = gen.forward_with_mask(x)
    assert a.mean().item() < 2 * ATTENTION_START
    assert (y - x).abs().mean().item() < 0.2 * (gen.body(x)[:, :3] - x).abs().mean().item()
