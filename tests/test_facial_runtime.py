"""py-feat's networks through an inference runtime (evaluation.metrics.facial.runtime): exported
once, cached by weights and versions, checked against torch on the first call, and
left on torch with one warning when the runtime is missing or disagrees.

Toy networks keep these fast; the stand-in py-feat networks run through the runtime in
tests/test_facial.py (the default backend) and in the slow test at the end here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluation.metrics.facial.runtime as rt
from evaluation.metrics.facial import FacialAnalyzer, _feat_networks

RUNTIMES = [b for b in ("openvino", "onnxruntime") if rt.runtime_version(b) is not None]


class _Toy(torch.nn.Module):
    """Conv + BatchNorm + ReLU, two heads in a dict (the shape of py-feat's outputs)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():  # the same weights in every copy
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.head = torch.nn.Linear(8, 4)
            with torch.no_grad():
                self.bn.running_mean.copy_(torch.randn(8))
                self.bn.running_var.copy_(torch.rand(8) + 0.5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return {"map": y, "absent": None, "logits": self.head(y.mean(dim=(2, 3)))}  # py-feat v2 has None heads


class _Holder(torch.nn.Module):  # a detector: its networks are its submodules
    def __init__(self) -> None:
        super().__init__()
        self.net = _Toy().eval()


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_matches_torch_and_caches_the_graph(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = _Holder()
    x, x2 = torch.rand(3, 3, 20, 24), torch.rand(5, 3, 16, 12)  # batch and size vary: dynamic axes
    with torch.no_grad():
        want, want2 = holder.net(x), holder.net(x2)
        (wrapper,) = rt.run_networks_in_runtime(holder, backend, tmp_path)
        first = holder.net(x)
        assert all(torch.equal(first[k], want[k]) for k in ("map", "logits"))  # the first call is torch's own
        assert wrapper.state == "runtime" and wrapper.reason == ""
        got = holder.net(x2)
    assert set(got) == {"map", "absent", "logits"} and got["absent"] is None
    for k in ("map", "logits"):
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k], want2[k], rtol=0, atol=1e-5)
    (graph,) = tmp_path.glob("*.onnx")
    assert graph == wrapper.graph_file
    assert rt.weights_digest(holder.net) in graph.name and rt.runtime_version(backend) in graph.name
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, renamed

    # a second process (here: a second copy) loads the cached graph instead of exporting
    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(rt, "_export", no_export)
    again = _Holder()
    with torch.no_grad():
        (w2,) = rt.run_networks_in_runtime(again, backend, tmp_path)
        again.net(x)
        assert w2.state == "runtime" and w2.graph_file == graph
        # other weights: another key, so no stale graph is served
        again.net.head.bias.add_(1.0)
        assert rt.weights_digest(again.net) not in graph.name


def test_disagreeing_runtime_falls_back_to_torch_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    if not RUNTIMES:
        pytest.skip("no inference runtime installed")
    holder = _Holder()
    x = torch.rand(2, 3, 8, 8)
    real = rt._session

    def off_by_a_bit(backend, path):
        run = real(backend, path)
        return lambda args: [a + 1e-2 for a in run(args)]

    monkeypatch.setattr(rt, "_session", off_by_a_bit)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger=rt.__name__):
        want = _Toy().eval()(x)
        (wrapper,) = rt.run_networks_in_runtime(holder, RUNTIMES[0], tmp_path)
        holder.net(x)
        got = holder.net(x)
    assert wrapper.state == "torch" and "differs by" in wrapper.reason
    assert all(torch.equal(got[k], want[k]) for k in ("map", "logits"))  # torch from then on, bit for bit
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and "_Toy stays on torch" in lines[0].getMessage()


def test_missing_runtime_leaves_torch_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(rt, "runtime_version", lambda backend: None)
    holder = _Holder()
    with caplog.at_level(logging.WARNING, logger=rt.__name__):
        assert rt.run_networks_in_runtime(holder, "openvino", tmp_path) == []
    assert "forward" not in vars(holder.net)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "openvino is not installed" in line and "pip install openvino" in line
    assert rt.run_networks_in_runtime(holder, "torch", tmp_path) == []
    with pytest.raises(ValueError, match="backend"):
        rt.run_networks_in_runtime(holder, "tensorrt", tmp_path)
    with pytest.raises(ValueError, match="backend"):
        FacialAnalyzer(backend="tvm")  # type: ignore[arg-type]


def test_gpu_and_bf16_keep_torch(tmp_path: Path, caplog) -> None:
    holder = _Holder()
    with caplog.at_level(logging.INFO, logger=rt.__name__):
        assert rt.run_networks_in_runtime(holder, "openvino", tmp_path, device="cuda:0") == []
    assert "CPU only" in caplog.text


@pytest.mark.slow  # exports RetinaFace, MobileFaceNet, ResMaskNet and the multitask net per runtime: minutes on 2 cores
@pytest.mark.parametrize("backend", RUNTIMES)
def test_standin_series_match_torch_for_both_au_models(backend: str, tmp_path: Path) -> None:
    """Every AU and emotion series of xgb and v2 through the runtime equals torch's
    within 1e-4, with the same face / no-face frames, on the py-feat stand-ins."""
    from sensor_removal.core.video import write_video
    from tests.feat_standins import face_frame, write_standin_feat_weights

    hub = tmp_path / "hub"
    write_standin_feat_weights(hub, "v1")
    write_standin_feat_weights(hub, "v2")
    video = tmp_path / "v.mp4"
    write_video(
        video,
        [face_frame(256, 256, faces=((128, 128, 220),), seed=i) for i in range(6)],
        fps=10.0,
        codec="h264-lossless",
    )
    for model in ("xgb", "v2"):
        kw = dict(model_set=model, weights_dir=hub, device="cpu", batch_size=4)
        ours = FacialAnalyzer(backend=backend, **kw)
        got = ours.analyze_video(video)
        want = FacialAnalyzer(backend="torch", **kw).analyze_video(video)
        wrappers = [n.forward for n in _feat_networks(ours._get_detector())]
        assert any(isinstance(w, rt.RuntimeForward) and w.state == "runtime" for w in wrappers)
        assert got.no_face_frames == want.no_face_frames
        np.testing.assert_array_equal(np.isnan(got.values.to_numpy()), np.isnan(want.values.to_numpy()))
        np.testing.assert_allclose(got.values.to_numpy(), want.values.to_numpy(), rtol=0, atol=1e-4)
