"""Tests of sensor_removal.models.networks: shapes, 70x70 receptive field, init, image pool."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sensor_removal.models.networks import (
    ImagePool,
    PatchDiscriminator,
    ResidualBlock,
    ResnetGenerator,
    init_weights,
    receptive_field,
)


@pytest.mark.parametrize("size", [32, 64])
def test_generator_keeps_size(size: int) -> None:
    gen = init_weights(ResnetGenerator(ngf=4, n_blocks=2))
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = gen(x)
    assert y.shape == (2, 3, size, size)


def test_generator_output_is_tanh_bounded() -> None:
    torch.manual_seed(0)
    gen = init_weights(ResnetGenerator(ngf=4, n_blocks=1), gain=1.0)  # large weights: saturates
    y = gen(torch.randn(1, 3, 32, 32) * 10)
    assert isinstance(gen.model[-1], nn.Tanh)
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert y.abs().max() > 0.99  # really saturating, so the bound is tested


def test_generator_layout_matches_paper() -> None:
    gen = ResnetGenerator()  # paper defaults: ngf 64, 9 blocks, 2 down / 2 up
    convs = [m for m in gen.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (7, 7) and convs[0].out_channels == 64
    assert convs[-1].kernel_size == (7, 7) and convs[-1].out_channels == 3
    assert sum(1 for m in gen.modules() if isinstance(m, ResidualBlock)) == 9
    assert sum(1 for c in convs if c.stride == (2, 2)) == 2
    ups = [m for m in gen.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 2 and all(u.stride == (2, 2) for u in ups)
    norms = [m for m in gen.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not n.affine and not n.track_running_stats for n in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gen.modules())
    # reflection padding, no zero padding, in the 7x7 and residual 3x3 convs
    assert sum(1 for m in gen.modules() if isinstance(m, nn.ReflectionPad2d)) == 2 + 2 * 9
    assert all(c.padding == (0, 0) for c in convs if c.stride == (1, 1))


@pytest.mark.parametrize(("size", "grid"), [(32, 2), (64, 6), (256, 30)])
def test_discriminator_patch_grid(size: int, grid: int) -> None:
    disc = init_weights(PatchDiscriminator(ndf=4, n_layers=3))
    out = disc(torch.rand(2, 3, size, size) * 2 - 1)
    assert out.shape == (2, 1, grid, grid)


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_receptive_field(n_layers: int, field: int) -> None:
    assert receptive_field(PatchDiscriminator(ndf=4, n_layers=n_layers)) == field


def test_receptive_field_matches_gradient_support() -> None:
    """An independent check: the input pixels one score depends on span 70x70.

    Instance norm couples every pixel to every other through the statistics, so it is
    replaced by identity for this measurement (it does not change the conv geometry).
    """
    torch.manual_seed(0)
    disc = copy.deepcopy(PatchDiscriminator(ndf=2, n_layers=3)).double()
    for i, m in enumerate(disc.model):
        if isinstance(m, nn.InstanceNorm2d):
            disc.model[i] = nn.Identity()
    for m in disc.modules():
        if isinstance(m, nn.LeakyReLU):
            m.inplace = False
    x = torch.rand(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    out = disc(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = support.any(dim=1).nonzero().flatten()
    cols = support.any(dim=0).nonzero().flatten()
    assert int(rows[-1] - rows[0] + 1) == receptive_field(disc) == 70
    assert int(cols[-1] - cols[0] + 1) == 70


def test_init_weights_normal_002() -> None:
    torch.manual_seed(0)
    gen = ResnetGenerator()  # default size: many weights, a tight estimate of the std
    init_weights(gen)
    weights = torch.cat([m.weight.flatten() for m in gen.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(weights.mean().item()) < 1e-3
    biases = [m.bias for m in gen.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)


def test_init_weights_affine_norm() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4096, 1), nn.BatchNorm2d(4096), nn.InstanceNorm2d(8, affine=True))
    init_weights(net, gain=0.02)
    assert net[1].weight.mean().item() == pytest.approx(1.0, abs=2e-3)
    assert net[1].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(net[1].bias) == 0
    assert torch.count_nonzero(net[2].bias) == 0


def test_pool_size_zero_passes_through() -> None:
    pool = ImagePool(0)
    x = torch.rand(3, 3, 8, 8)
    assert pool.query(x) is x
    assert len(pool) == 0


def test_pool_keeps_the_memory_layout() -> None:
    """Pooled fakes come back channels_last when they went in so (the discriminators
    keep their NHWC kernels, and a compiled one its graph), NCHW when NCHW."""
    torch.manual_seed(0)
    pool = ImagePool(2)
    for _ in range(4):
        x = torch.rand(1, 3, 8, 8).contiguous(memory_format=torch.channels_last)
        out = pool.query(x)
        assert out.is_contiguous(memory_format=torch.channels_last) and out.shape == x.shape
    assert pool.query(torch.rand(2, 3, 8, 8)).is_contiguous()


def test_pool_fills_then_swaps_and_never_exceeds_size() -> None:
    torch.manual_seed(0)
    pool = ImagePool(4)
    seen: list[torch.Tensor] = []
    # fill phase: the new images come back unchanged and are stored
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    assert torch.equal(pool.query(first), first)
    assert len(pool) == 4
    seen += list(first)
    returned_old = returned_new = 0
    for step in range(50):
        batch = torch.full((2, 3, 2, 2), float(100 + 2 * step))
        batch[1] += 1
        out = pool.query(batch)
        # images go in one by one: an earlier image of this batch may already come back
        seen += list(batch)
        assert out.shape == batch.shape
        assert len(pool) <= 4
        for new, got in zip(batch, out, strict=True):
            if torch.equal(got, new):
                returned_new += 1
            else:
                returned_old += 1
                assert any(torch.equal(got, s) for s in seen), "returned an image never stored"
        # every stored image is one that was fed in
        assert all(any(torch.equal(p[0], s) for s in seen) for p in pool.images)
    assert len(pool) == 4
    assert returned_old > 20 and returned_new > 20  # p = 0.5 each over 100 draws


def test_pool_is_seeded_and_detached() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(123)
        pool = ImagePool(3)
        outs = [pool.query(torch.full((2, 1, 1, 1), float(i))) for i in range(10)]
        return torch.cat(outs)

    assert torch.equal(run(), run())

    pool = ImagePool(2)
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    out = pool.query(x)
    assert not out.requires_grad
    with torch.no_grad():
        x.add_(1.0)  # the pool keeps copies, not views of the caller's tensor
    assert torch.equal(torch.cat(pool.images), out)
    assert not torch.equal(out, x)
