"""Speed-ups applied to py-feat's detectors after they are built.

Result-preserving, on by default (``FacialAnalyzer`` options):

* ``face_detectors`` (a :class:`FaceDetectorPool`): one RetinaFace per pool and weights for
  every AU model's detector, which answers a batch it has already seen from memory
  (:class:`SharedFaceDetector`): with two AU models the second pipeline's face
  detection is free and bit-identical.
* ``channels_last``: NHWC weights (:func:`_to_channels_last`); float summation order only.
* ``fold_batchnorm``: each BatchNorm folded into the convolution that feeds it
  (:func:`fold_batchnorm_on_first_call`); float rounding only, checked on the first batch.

Opt in, values move: ``precision="bf16"`` (:func:`_run_networks_in_bf16`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger(__name__)


def _feat_networks(detector: object) -> list:
    """py-feat's torch networks inside a detector: its registered submodules (landmark,
    emotion, ... models) and the networks its plain-object wrappers hold (e.g.
    RetinaFace's ``net``)."""
    import torch

    nets = list(detector.children()) if isinstance(detector, torch.nn.Module) else []
    for value in vars(detector).values():
        if not isinstance(value, torch.nn.Module) and hasattr(value, "__dict__"):
            nets += [v for v in vars(value).values() if isinstance(v, torch.nn.Module)]
    return nets


def _to_channels_last(detector: object) -> None:
    """NHWC layout for py-feat's networks, in place (only 4-D weights change layout)."""
    import torch

    for net in _feat_networks(detector):
        net.to(memory_format=torch.channels_last)


def _run_networks_in_bf16(detector: object, device_type: str) -> None:
    """Run each of py-feat's networks under bf16 autocast and hand float32 on.

    Autocast cannot wrap ``detect`` as a whole: py-feat turns intermediate tensors into
    numpy arrays (HOG features, landmarks), which bf16 tensors cannot become. So each
    network's ``forward`` (on this instance only) autocasts its own convolutions and
    returns float32 tensors to py-feat's code."""
    import torch
    from torch.utils._pytree import tree_map

    def as_float(x):
        return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    for net in _feat_networks(detector):
        forward = net.forward

        def bf16_forward(*args, _forward=forward, **kwargs):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = _forward(*args, **kwargs)
            return tree_map(as_float, out)

        net.forward = bf16_forward


# --------------------------------------------------------------------------- BatchNorm folding

#: Folded networks must reproduce the unfolded output on their first batch within this
#: tolerance, relative to the output's largest magnitude (float32 rounding is ~1e-6).
FOLD_RTOL = 1e-4


def fold_batchnorm_on_first_call(detector: object) -> None:
    """Fold every eval-mode ``BatchNorm2d`` that only ever reads a ``Conv2d``'s output
    into that convolution, in each of py-feat's networks, on the network's first call.

    Which convolution feeds which BatchNorm is read off that first call (forward hooks),
    so py-feat's forward code needs no graph tracing. The first call's output is computed
    unfolded and returned as is; the folded network then runs the first two inputs of
    that batch again and must agree within :data:`FOLD_RTOL` of the output's scale, or the network is put
    back unfolded (a convolution whose output is also read elsewhere would disagree).
    Folding reorders float32 arithmetic only: ``conv(x) * s + t`` becomes
    ``conv'(x)`` with ``w' = w s`` and ``b' = (b - mean) s + beta``."""
    for net in _feat_networks(detector):
        if any(isinstance(m, _batchnorm_type()) for m in net.modules()):
            _fold_lazily(net)


def _batchnorm_type():
    import torch

    return torch.nn.BatchNorm2d


def _fold_lazily(net) -> None:
    original = net.forward  # the class's forward, or an earlier wrapper
    done: list[bool] = []

    def first_forward(*args, **kwargs):
        # Stays in place (wrappers added later, e.g. bf16, call it): later calls pass through.
        if done:
            return original(*args, **kwargs)
        done.append(True)
        return _fold_and_check(net, original, args, kwargs)

    net.forward = first_forward


def _fold_and_check(net, forward, args, kwargs):
    import torch
    from torch.utils._pytree import tree_leaves

    conv_of: dict[int, torch.nn.Module] = {}
    keep: list = []  # outputs stay alive during the call, so their ids stay unique
    calls: dict[int, int] = {}
    fed: dict[int, list] = {}

    def conv_hook(module, inputs, output):
        keep.append(output)
        conv_of[id(output)] = module
        calls[id(module)] = calls.get(id(module), 0) + 1

    def bn_hook(module, inputs, output):
        keep.append(inputs[0])
        fed.setdefault(id(module), [module]).append(conv_of.get(id(inputs[0])))

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [m.register_forward_hook(conv_hook) for m in convs] + [m.register_forward_hook(bn_hook) for m in bns]
    device_type = next((p.device.type for p in net.parameters()), "cpu")
    try:
        with torch.autocast(device_type, enabled=False):
            reference = forward(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for bn, *sources in fed.values():
        conv = sources[0]
        if (
            conv is None
            or any(s is not conv for s in sources)
            or calls.get(id(conv)) != len(sources)  # every output of the conv goes to this BN
            or bn.training
            or bn.running_mean is None
            or not isinstance(conv, torch.nn.Conv2d)
            or conv.out_channels != bn.num_features
        ):
            continue
        pairs.append((conv, bn))
    if len({id(c) for c, _ in pairs}) != len(pairs):  # a conv feeding two BNs: leave both
        return reference
    keep.clear()
    conv_of.clear()
    saved = [
        (conv, conv.weight.detach().clone(), None if conv.bias is None else conv.bias.detach().clone(), bn)
        for conv, bn in pairs
    ]
    with torch.no_grad():
        for conv, bn in pairs:
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            bias = shift if conv.bias is None else conv.bias * scale + shift
            conv.weight.mul_(scale.to(conv.weight.dtype).reshape(-1, 1, 1, 1))
            conv.bias = torch.nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
            bn.forward = _identity
        # Checked on the first two inputs of the batch (rows are independent in eval mode).
        n = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0 else None
        short = n is not None and n > 2
        with torch.autocast(device_type, enabled=False):
            folded = forward(args[0][:2], *args[1:], **kwargs) if short else forward(*args, **kwargs)
    ref_leaves = [t for t in tree_leaves(reference) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if short:
        ref_leaves = [t[:2] if t.dim() > 0 and t.shape[0] == n else t for t in ref_leaves]
    new_leaves = [t for t in tree_leaves(folded) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    agree = (
        len(ref_leaves) == len(new_leaves)
        and all(
            a.shape == b.shape
            and torch.equal(torch.isnan(a), torch.isnan(b))
            and bool((a - b).nan_to_num().abs().max() <= FOLD_RTOL * (1.0 + a.nan_to_num().abs().max()))
            for a, b in zip(ref_leaves, new_leaves, strict=True)
        )
        if ref_leaves
        else False
    )
    if not agree:
        log.warning("%s: folded BatchNorm changed the output; the network runs unfolded", type(net).__name__)
        with torch.no_grad():
            for conv, weight, bias, bn in saved:
                conv.weight.copy_(weight)
                conv.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
                del bn.forward
    else:
        net._folded_batchnorms = len(pairs)
    return reference


def _identity(x):
    return x


# --------------------------------------------------------------------------- shared face detector


class _BatchFaceDetector(Protocol):
    """What :class:`SharedFaceDetector` calls on py-feat's ``Retinaface``."""

    def forward(self, img: Any) -> list: ...


class SharedFaceDetector:
    """One py-feat ``Retinaface`` used by several detectors (the v1 ``xgb``/``svm`` and
    the v2 pipelines all start with RetinaFace R34 on the same frames), remembering its
    results for the last :attr:`capacity` input batches by content. A batch it has
    seen (the same bytes: BLAKE2b digest, shape and dtype) is answered from memory, so
    the second AU model's detector gets exactly the first one's boxes and scores
    without running the network again."""

    def __init__(self, retinaface: _BatchFaceDetector, capacity: int = 16) -> None:
        self.inner, self.capacity = retinaface, capacity
        self._memo: OrderedDict[tuple, list] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, img):
        return self.forward(img)

    def forward(self, img):
        key = _content_key(img)
        if key in self._memo:
            self.hits += 1
            self._memo.move_to_end(key)
        else:
            self.misses += 1
            self._memo[key] = self.inner.forward(img)
            while len(self._memo) > self.capacity:
                self._memo.popitem(last=False)
        return copy.deepcopy(self._memo[key])  # lists of floats; callers may not share them

    def clear(self) -> None:
        """Forget the remembered batches (benchmarks that analyse the same frames again)."""
        self._memo.clear()

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def _content_key(img) -> tuple:
    array = img.detach().cpu().contiguous().numpy()
    return (tuple(array.shape), str(array.dtype), hashlib.blake2b(array.data, digest_size=20).hexdigest())


class FaceDetectorPool:
    """The RetinaFaces a group of analyzers share — one evaluation run's AU models — by
    everything that makes two of them compute the same function (weights file, device,
    layout, precision, folding). Handed to each analyzer of the group explicitly
    (``FacialAnalyzer(face_detectors=pool)``), so sharing never outlives the run."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, SharedFaceDetector] = {}

    def share(self, detector: object, key: tuple) -> SharedFaceDetector | None:
        """Put this pool's :class:`SharedFaceDetector` for ``key`` in place of
        ``detector``'s own RetinaFace; the first detector of a key lends its own. Returns
        it, or None for a detector without RetinaFace (img2pose)."""
        attr = "face_detector" if hasattr(detector, "face_detector") else "facepose_detector"
        own = getattr(detector, attr, None)
        if own is None or type(own).__name__ not in ("Retinaface", "SharedFaceDetector"):
            return None
        shared = self._by_key.get(key)
        if shared is None:
            shared = own if isinstance(own, SharedFaceDetector) else SharedFaceDetector(own)
            self._by_key[key] = shared
        setattr(detector, attr, shared)  # a plain attribute (RetinaFace is no nn.Module)
        return shared
