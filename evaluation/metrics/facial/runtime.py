"""py-feat's per-frame networks through an inference runtime (ours): same float32 values, faster.

Facial analysis is the long wait of an evaluation, and nearly all of it is py-feat's
float32 convolutions (ResMaskNet, RetinaFace, the landmark net, v2's multitask net).
PyTorch eager runs them layer by layer; an inference runtime compiles the fixed graph
once, fuses convolution + BatchNorm + activation and picks its kernels for the CPU it
runs on. So each of the detector's torch networks (those with weights) is exported to
ONNX and run by OpenVINO's CPU plugin or ONNX Runtime, float32 throughout (OpenVINO's
own bf16 default on AVX-512 BF16/AMX CPUs is switched off: the paper's numbers are fp32).

What stays as it was
    py-feat's real constructors load the weights (the exported graph comes from the
    network py-feat built), and all of py-feat's code around the networks (anchor
    decoding, NMS, face crops, HOG, xgboost, softmax) runs unchanged: only the network's
    ``forward`` on this detector instance is replaced.

Checked on the first call
    The first call of each network runs in torch (its output is what the caller gets),
    then through the runtime on the same input; every output must agree within
    :data:`RUNTIME_RTOL` of its scale (as the BatchNorm folding is checked,
    :data:`~evaluation.metrics.facial.fastpaths.FOLD_RTOL`). A runtime that is not installed, that
    cannot load the graph, or that disagrees, leaves that network on torch and says so in
    one log line (a warning): never a silent change of numbers.

Cached graphs
    The exported ONNX file is kept next to py-feat's weights
    (``<weights folder>/runtime-graphs/``), named by the network, a hash of the weights it
    holds (BLAKE2b of the state dict as the network runs: folded BatchNorms included) and
    the torch and runtime versions; it is written to a temporary name and renamed when
    complete. A later process, or the second analyzer of an evaluation, loads it instead
    of exporting again.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

#: ``facial_backend`` values: an inference runtime, or PyTorch eager (py-feat as shipped).
FacialBackend = Literal["openvino", "onnxruntime", "torch"]
BACKENDS: tuple[str, ...] = ("openvino", "onnxruntime", "torch")
#: The faster runtime on the CPUs measured (bench/bench_facial.py; docs/performance.md).
DEFAULT_BACKEND: FacialBackend = "openvino"
#: Runtime outputs must equal torch's on the first call within this fraction of the
#: output's largest magnitude (float32 rounding of a reordered sum is ~1e-6).
RUNTIME_RTOL = 1e-4
#: Folder (inside py-feat's weights folder) that holds the exported graphs.
GRAPH_DIR = "runtime-graphs"
_OPSET = 17


def runtime_version(backend: str) -> str | None:
    """The installed version of ``backend``'s package, or None when it is not importable."""
    try:
        if backend == "openvino":
            import openvino

            return openvino.get_version().split("-")[0]
        if backend == "onnxruntime":
            import onnxruntime

            return onnxruntime.__version__
    except Exception:  # a broken install is as good as a missing one: torch runs
        return None
    return None


def run_networks_in_runtime(detector: object, backend: str, graph_dir: Path, device: str = "cpu") -> list:
    """Replace the ``forward`` of each of ``detector``'s torch networks that holds weights
    by a :class:`RuntimeForward` (``backend`` on the CPU; checked on its first call).
    Returns the wrappers. ``backend="torch"``, a non-CPU device, or a runtime that is not
    installed leave every network on torch (the latter two with one log line)."""
    from evaluation.metrics.facial.fastpaths import _feat_networks

    if backend not in BACKENDS:
        raise ValueError(f"facial analysis: facial_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return []
    if device.split(":")[0] != "cpu":
        log.info(
            "facial analysis: facial_backend=%s runs on the CPU only; the networks stay on torch (%s)", backend, device
        )
        return []
    version = runtime_version(backend)
    if version is None:
        package = "openvino" if backend == "openvino" else "onnxruntime"
        log.warning(
            "facial analysis: %s is not installed (pip install %s); py-feat's networks run on torch", backend, package
        )
        return []
    wrappers = []
    for net in _feat_networks(detector):
        if any(True for _ in net.parameters()):  # HOG (no weights) stays where it is
            wrappers.append(RuntimeForward(net, backend, version, Path(graph_dir)))
    return wrappers


class RuntimeForward:
    """``net.forward`` through ``backend`` (installed on ``net`` by the constructor).

    :attr:`state` is ``"first"`` until the first call, then ``"runtime"`` (checked and
    in use) or ``"torch"`` (fallen back; :attr:`reason` says why). Calls with keyword
    arguments or non-tensor arguments always run in torch (py-feat makes none)."""

    def __init__(self, net, backend: str, version: str, graph_dir: Path) -> None:
        self.net, self.backend, self.version, self.graph_dir = net, backend, version, graph_dir
        self.torch_forward = net.forward  # the class's forward, or an earlier fast path (folding)
        self.state, self.reason = "first", ""
        self.graph_file: Path | None = None
        self._run: Callable[[Any], list[Any]] | None = None
        self._spec: Any = None
        net.forward = self

    def __call__(self, *args, **kwargs):
        import torch

        if self.state == "torch" or kwargs or not args or not all(isinstance(a, torch.Tensor) for a in args):
            return self.torch_forward(*args, **kwargs)
        if self.state == "first":
            return self._first_call(args)
        assert self._run is not None  # state 'runtime': the session was built and checked
        return self._unflatten(self._run(args), args[0].device)

    # -- first call: export (or load), check, decide

    def _first_call(self, args):
        import torch
        from torch.utils._pytree import tree_flatten

        reference = self.torch_forward(*args)
        leaves, self._spec = tree_flatten(reference)
        # The graph's outputs are the tensor leaves; None leaves (absent heads) stay None.
        self._tensor_at = [i for i, t in enumerate(leaves) if t is not None]
        self._leaves = len(leaves)
        name = type(self.net).__name__
        try:
            if not all(isinstance(leaves[i], torch.Tensor) and leaves[i].is_floating_point() for i in self._tensor_at):
                raise RuntimeError("its output holds more than float tensors and None")
            self.graph_file = self._graph(args)
            self._run = _session(self.backend, self.graph_file)
            got = self._run(args)
            problem = _disagreement([leaves[i] for i in self._tensor_at], got)
        except Exception as error:  # any failure of export or runtime: torch, said once
            problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        if problem:
            self.state, self.reason, self._run = "torch", problem, None
            log.warning("facial analysis: %s stays on torch (%s %s: %s)", name, self.backend, self.version, problem)
        else:
            self.state = "runtime"
            graph = self.graph_file.name if self.graph_file is not None else "?"
            log.info("facial analysis: %s runs on %s %s (%s)", name, self.backend, self.version, graph)
        return reference

    def _graph(self, args) -> Path:
        """The cached ONNX file for this network's weights, exported when absent."""
        import torch

        from sensor_removal.core.video import atomic_output

        digest = weights_digest(self.net)
        shapes = "-".join("x".join(str(d) for d in a.shape[1:2]) + f"r{a.dim()}" for a in args)
        torch_version = torch.__version__.split("+")[0]
        path = self.graph_dir / (
            f"{type(self.net).__name__}-{digest}-in{shapes}-torch{torch_version}-{self.backend}{self.version}.onnx"
        )
        if path.is_file():
            return path
        with atomic_output(path) as tmp:
            _export(self.net, args, tmp)
        return path

    def _unflatten(self, arrays, device):
        import torch
        from torch.utils._pytree import tree_unflatten

        leaves: list = [None] * self._leaves
        for i, array in zip(self._tensor_at, arrays, strict=True):
            leaves[i] = torch.from_numpy(array).to(device)
        return tree_unflatten(leaves, self._spec)


def weights_digest(net) -> str:
    """BLAKE2b (20 hex digits) of ``net``'s state dict: names, dtypes, shapes and values."""
    h = hashlib.blake2b(digest_size=10)
    for key, value in net.state_dict().items():
        array = value.detach().cpu().contiguous().numpy()
        h.update(f"{key}:{array.dtype}:{tuple(array.shape)};".encode())
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def _class_forward_module(net):
    """A module that runs the class's own ``forward`` of ``net``: instance wrappers (this
    module's, the bf16 one) are not part of the exported network."""
    import torch

    class ClassForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args):
            return type(self.net).forward(self.net, *args)

    return ClassForward()


def _export(net, args, path: Path) -> None:
    """ONNX (TorchScript exporter: no extra packages) with the batch, and for 4-D
    inputs also height and width, left dynamic (frames and face counts vary)."""
    import torch

    names = [f"input{i}" for i in range(len(args))]
    dynamic = {
        n: ({0: "batch", 2: "height", 3: "width"} if a.dim() == 4 else {0: "batch"})
        for n, a in zip(names, args, strict=True)
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            _class_forward_module(net).eval(),
            tuple(a.contiguous() for a in args),
            str(path),
            dynamo=False,
            input_names=names,
            dynamic_axes=dynamic,
            opset_version=_OPSET,
            do_constant_folding=True,
        )


def _session(backend: str, path: Path):
    """A callable: tuple of torch tensors -> list of float32 numpy arrays."""
    import numpy as np
    import torch

    threads = max(1, torch.get_num_threads())

    def feeds(args):
        return [np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float32) for a in args]

    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_ort(args):
            return session.run(None, dict(zip(names, feeds(args), strict=True)))

        return run_ort
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    outputs = compiled.outputs

    def run_ov(args):
        result = request.infer(feeds(args))
        return [np.array(result[o], copy=True) for o in outputs]

    return run_ov


def _disagreement(reference: list, got: list) -> str:
    """Empty when every runtime output equals torch's within :data:`RUNTIME_RTOL`."""
    import numpy as np

    if len(reference) != len(got):
        return f"{len(got)} outputs instead of {len(reference)}"
    for i, (a, b) in enumerate(zip(reference, got, strict=True)):
        a = a.detach().float().cpu().numpy()
        if a.shape != b.shape:
            return f"output {i} has shape {b.shape} instead of {a.shape}"
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return f"output {i} has NaNs where torch has none (or the other way)"
        scale = 1.0 + float(np.nanmax(np.abs(a))) if a.size else 1.0
        worst = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
        if not worst <= RUNTIME_RTOL * scale:
            return f"output {i} differs by {worst:.3g} (allowed {RUNTIME_RTOL * scale:.3g})"
    return ""
