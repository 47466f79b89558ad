"""The CycleGAN networks of the paper: ResNet generator, 70x70 PatchGAN, image pool.

Büchner et al., "Let's Get the FACS Straight" (VISAPP 2023), Sec. 3 (method) uses the
unpaired CycleGAN of Zhu et al. (ICCV 2017) unchanged in architecture:

* generator: ResNet with 2 stride-2 down-sampling blocks, 9 residual blocks, 2 up-sampling
  blocks, instance normalisation (affine off) and reflection padding;
* discriminator: the 70x70 PatchGAN (3 strided 4x4 convolutions), which judges overlapping
  patches instead of whole images — a sensor is a local artefact, so local realism is what
  has to be enforced;
* weights drawn from N(0, 0.02);
* the discriminators see a history of 50 generated images (Shrivastava et al., CVPR 2017)
  rather than only the newest ones, which damps oscillation between G and D.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "AttentionGenerator",
    "GENERATORS",
    "ImagePool",
    "InstanceNorm2dFP32",
    "PatchDiscriminator",
    "ResidualBlock",
    "ResnetGenerator",
    "build_generator",
    "init_weights",
    "receptive_field",
]


class InstanceNorm2dFP32(nn.InstanceNorm2d):
    """Instance norm computed in float32 even inside bf16 autocast (ours).

    Autocast runs ``instance_norm`` in the input's dtype (bf16 after a bf16 conv) on CPU
    and CUDA alike; its mean/variance and the normalised output then carry bf16's 8-bit
    mantissa. Measured on conv-like activations (64 channels, 64x64): a bf16 instance
    norm is off by about twice as much as a float32 one fed the same bf16 input. The norm is
    cheap next to the convolutions, so it runs in float32 and hands float32 on (the next
    convolution casts to bf16 again). Outside autocast this is plain ``InstanceNorm2d``.
    No parameters, so checkpoints are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def _norm(channels: int) -> nn.InstanceNorm2d:
    # Instance norm with affine off and no running statistics, as in the CycleGAN
    # reference: every image is normalised by its own statistics, in training and in
    # inference alike, so a frame is cleaned the same way whatever batch it is in.
    return InstanceNorm2dFP32(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``x + F(x)`` with F = pad, 3x3 conv, norm, ReLU, pad, 3x3 conv, norm (reflection pads)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=True),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=True),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet image-to-image generator (G_S→N and G_N→S of the paper).

    Layout: reflection pad 3 + 7x7 conv (``ngf``) → ``n_downsampling`` stride-2 3x3 convs
    doubling the channels → ``n_blocks`` residual blocks → ``n_downsampling`` stride-2
    transposed convs halving them → reflection pad 3 + 7x7 conv → tanh. Every hidden conv
    is followed by instance norm and ReLU. Output is in [-1, 1] like the input. H and W
    are kept for any size divisible by ``2 ** n_downsampling`` (256 px in the paper).

    Args:
        in_channels: channels of the input image (3, RGB).
        out_channels: channels of the output image (3, RGB).
        ngf: filters of the first conv layer (paper: 64).
        n_blocks: residual blocks at the bottleneck (paper: 9, the reference's choice
            for 256 px crops).
        n_downsampling: stride-2 down- (and up-) sampling blocks (paper: 2).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
    ) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0 or n_downsampling < 0:
            raise ValueError(
                f"ResnetGenerator: need ngf >= 1, n_blocks >= 0, n_downsampling >= 0; "
                f"got ngf={ngf}, n_blocks={n_blocks}, n_downsampling={n_downsampling}"
            )
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=True),
            _norm(ngf),
            nn.ReLU(inplace=True),
        ]
        channels = ngf
        for _ in range(n_downsampling):
            layers += [
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=True),
                _norm(channels * 2),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResidualBlock(channels) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                nn.ConvTranspose2d(
                    channels,
                    channels // 2,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=True,
                ),
                _norm(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, out_channels, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


#: The attention generator's initial mask value (see :class:`AttentionGenerator`).
ATTENTION_START = 0.05


class AttentionGenerator(nn.Module):
    """Attention-guided generator (our extension; UAGGAN, Mejjati et al., NeurIPS 2018;
    AttentionGAN, Tang et al. 2019): ``A·T(x) + (1 − A)·x``.

    The paper's ResNet generator with one extra output channel: channels 0–2 are the
    translation ``T(x)`` (tanh, [-1, 1]), channel 3 is the soft mask
    ``A = (tanh(·) + 1) / 2`` in [0, 1] — where A is 0 the input passes through unchanged,
    so the network only has to repaint where the sensors are. The mask is regularised in
    :class:`sensor_removal.training.module.CycleGAN` (sparsity + smoothness); ``forward`` returns
    the image only, so the cleaner and the callbacks use it like the ResNet generator.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                "AttentionGenerator: blends output with input, needs in_channels == out_channels, "
                f"got {in_channels}, {out_channels}"
            )
        self.body = ResnetGenerator(in_channels, out_channels + 1, ngf, n_blocks, n_downsampling)
        # Start from "repaint nothing": the mask channel's bias puts A at about
        # ATTENTION_START everywhere, so A grows only where the discriminator asks for a
        # change (the sensors), instead of starting at 0.5 over the whole crop and having
        # to be pushed down by the sparsity term alone.
        last_conv = self.body.model[-2]
        assert isinstance(last_conv, nn.Conv2d) and last_conv.bias is not None  # the 7x7 output conv
        with torch.no_grad():
            last_conv.bias[-1] = math.atanh(2.0 * ATTENTION_START - 1.0)

    def forward_with_mask(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(A·T(x) + (1 − A)·x, A)`` with ``A`` of shape ``(B, 1, H, W)`` in [0, 1]."""
        y = self.body(x)
        content, attention = y[:, :-1], (y[:, -1:] + 1.0) * 0.5
        return attention * content + (1.0 - attention) * x, attention

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_mask(x)[0]


#: ``model.generator`` choices: the paper's ResNet generator, or our attention variant.
GENERATORS: dict[str, type[nn.Module]] = {"resnet": ResnetGenerator, "attention": AttentionGenerator}


def build_generator(kind: str = "resnet", ngf: int = 64, n_blocks: int = 9, n_downsampling: int = 2) -> nn.Module:
    """An RGB→RGB generator of ``kind`` (:data:`GENERATORS`)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; expected one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](in_channels=3, out_channels=3, ngf=ngf, n_blocks=n_blocks, n_downsampling=n_downsampling)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake score per overlapping input patch.

    4x4 convs: ``ndf`` (stride 2, no norm) → ``n_layers - 1`` more stride-2 convs doubling
    the channels (capped at 8·ndf) → one stride-1 conv → a stride-1 conv to one channel.
    LeakyReLU(0.2) and instance norm after every hidden conv but the first. With
    ``n_layers=3`` each output score sees a 70x70 input patch (``receptive_field``) and a
    256-px crop gives a 30x30 grid of scores. The output is a raw score (no sigmoid):
    the least-squares GAN loss regresses it to 1 (real) or 0 (fake).

    Args:
        in_channels: channels of the judged image (3, RGB).
        ndf: filters of the first conv layer (paper: 64).
        n_layers: stride-2 conv layers (paper: 3, i.e. the 70x70 PatchGAN).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if ndf < 1 or n_layers < 1:
            raise ValueError(f"PatchDiscriminator: need ndf >= 1 and n_layers >= 1; got ndf={ndf}, n_layers={n_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(channels, out, kernel_size=4, stride=stride, padding=1, bias=True),
                _norm(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place as in the CycleGAN paper and return it.

    Conv, transposed-conv and linear weights ~ N(0, gain); affine norm weights ~ N(1, gain);
    all biases 0. Norm layers without affine parameters (our instance norms) have nothing
    to initialise.
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(module, "weight", None) is not None:
                nn.init.normal_(module.weight, 1.0, gain)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return net


def _pair(value: int | tuple[int, ...]) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"receptive_field: non-square kernel/stride {value} is not supported")
        return int(value[0])
    return int(value)


def receptive_field(disc: nn.Module) -> int:
    """Side, in input pixels, of the patch that one output score of ``disc`` depends on.

    Computed from the layers, assuming they run in registration order as a chain (true for
    ``PatchDiscriminator``): walking backwards from one output pixel, every conv or pooling
    layer with kernel k, stride s and dilation d grows the field r to ``(r - 1)·s + d·(k-1) + 1``.
    Padding does not change the size of the field, only where it sits.
    """
    layers: list[tuple[int, int, int]] = []
    for module in disc.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if isinstance(module, nn.ConvTranspose2d):
                raise ValueError("receptive_field: transposed convolutions are not supported")
            layers.append((_pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)))
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = module.stride if module.stride is not None else module.kernel_size
            dilation = getattr(module, "dilation", 1)
            layers.append((_pair(module.kernel_size), _pair(stride), _pair(dilation)))
    field = 1
    for kernel, stride, dilation in reversed(layers):
        field = (field - 1) * stride + dilation * (kernel - 1) + 1
    return field


class ImagePool:
    """History buffer of generated images for the discriminator (Shrivastava et al. 2017).

    ``query(images)`` goes image by image: while the pool holds fewer than ``size``
    images, the new image is stored and returned; once full, with probability 0.5 a
    uniformly chosen stored image is returned and the new one takes its place, otherwise
    the new image is returned and the pool is unchanged. ``size=0`` disables the pool.

    The pool is plain per-process state: under DDP every rank keeps its own history of the
    fakes it generated (nothing is synchronised, which is what the reference does on one
    GPU, per rank). Random choices come from torch's global RNG, so ``seed_everything``
    makes them reproducible. Stored images are detached copies; they are not part of any
    checkpoint (a resumed run refills its pool within ``size`` images).
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError(f"ImagePool: size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """Return a batch of the same shape: each image either the new one or a stored one."""
        if self.size == 0:
            return images
        out: list[Tensor] = []
        for image in images.detach():
            image = image.unsqueeze(0).clone()
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(()).item() < 0.5:
                idx = int(torch.randint(0, self.size, ()).item())
                out.append(self.images[idx])
                self.images[idx] = image
            else:
                out.append(image)
        # In the input's memory layout: torch.cat hands back NCHW, which made the
        # discriminators run NCHW kernels on pooled fakes under channels_last (and
        # recompile under torch.compile: a stride guard).
        layout = (
            torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        )
        return torch.cat(out, dim=0).contiguous(memory_format=layout)

    __call__ = query
