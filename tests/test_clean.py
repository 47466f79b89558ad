"""Cleaning whole videos (sensor_removal.cleaning): frames, pixels, failures, manifest."""

from __future__ import annotations

import dataclasses
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from sensor_removal.cleaning import (
    CLEAN_MANIFEST_LOCK,
    CleanError,
    CleanOptions,
    CleanSettings,
    GeneratorRunner,
    clean_subject,
    clean_video,
    feather_alpha,
    load_generator,
    paste_back,
)
from sensor_removal.cleaning.steady import SteadySettings
from sensor_removal.cli.clean import main
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.tensors import to_uint8
from sensor_removal.core.video import VideoError, crop_resize, probe, read_frames, write_video
from sensor_removal.models.networks import ResnetGenerator

# Non-square boxes on purpose (real resizes): their manifest warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::sensor_removal.core.manifest.ManifestWarning")

W, H = 64, 48
BBOX = (10, 6, 40, 36)  # x, y, w, h: not square, not the crop size -> real resizes
CROP = 32
LOAD = 36  # the training cache's crop size, recorded in the checkpoint
SETTINGS = CleanSettings(crop_size=CROP)
FPS = Fraction(30000, 1001)  # 29.97: a non-integer rate must survive


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth moving pattern + noise: compresses like video, every frame different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    for t in range(n):
        base = np.stack([(xx * 4 + t * 7) % 256, (yy * 5 + t * 3) % 256, ((xx + yy) * 3 + t * 11) % 256], axis=-1)
        out.append(np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8))
    return out


def _video(path: Path, n: int = 13, seed: int = 0, codec: str = "h264-lossless") -> Path:
    return write_video(path, _frames(n, seed), float(FPS), codec=codec)


def _tiny_generator(seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)
    return ResnetGenerator(ngf=4, n_blocks=1).eval()


def _all_files(folder: Path) -> set[str]:
    """Files in ``folder``, without the (empty, hidden) lock file of the cleaned manifest."""
    return {p.name for p in folder.iterdir() if p.name != CLEAN_MANIFEST_LOCK} if folder.exists() else set()


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Recorder(nn.Module):
    """Wraps a generator and keeps (a copy of) every input batch it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.inner(x)


class Exploding(nn.Module):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.calls = 0
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("boom in the generator")
        return x


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A checkpoint laid out like the CycleGAN LightningModule's (tiny sizes)."""
    g = _tiny_generator(1)
    other = _tiny_generator(2)
    state = {f"gen_s2n.{k}": v for k, v in g.state_dict().items()}
    state |= {f"gen_n2s.{k}": v for k, v in other.state_dict().items()}
    state["disc_s.model.0.weight"] = torch.zeros(4, 3, 4, 4)
    path = tmp_path / "subj.ckpt"
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": {"ngf": 4, "n_blocks": 1, "lr": 3e-4},
            "datamodule_hyper_parameters": {"load_size": LOAD, "crop_size": CROP, "manifest": "subj.yaml"},
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return path


def _write_manifest(path: Path, recs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"subject": "subj01", "recordings": recs}, sort_keys=False))
    return path


def _rec(name: str, condition: str = "sensor", session: int = 1, bbox=BBOX) -> dict:
    return {
        "name": name,
        "path": f"{name}.mp4",
        "session": session,
        "condition": condition,
        "bbox": list(bbox),
        "segments": {"schaede": [0.0, 0.1], "sentence": [0.1, 0.3]},
    }


# --------------------------------------------------------------------------- checkpoints


def test_load_generator_takes_gen_s2n_and_settings(ckpt: Path) -> None:
    gen, settings = load_generator(ckpt, "cpu")
    assert settings.crop_size == CROP and settings.load_size == LOAD
    assert settings.inference_size == LOAD  # the cached training crop, not the random 32 crop
    assert (settings.ngf, settings.n_blocks) == (4, 1)
    assert settings.manifest == Path("subj.yaml")
    assert not gen.training
    expected = _tiny_generator(1).state_dict()
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0)


def test_load_generator_rejects_other_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    no_gen = tmp_path / "nogen.ckpt"
    torch.save({"state_dict": {"disc_s.w": torch.zeros(1)}, "hyper_parameters": {}}, no_gen)
    plain = tmp_path / "plain.pt"
    torch.save(_tiny_generator().state_dict(), plain)
    for path in (garbage, no_gen, plain, tmp_path / "missing.ckpt"):
        with pytest.raises(CleanError, match=path.name):
            load_generator(path, "cpu")


# --------------------------------------------------------------------------- one video


@pytest.mark.numerics
def test_frames_fps_and_generator_input(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=13)
    rec = Recorder(_tiny_generator())
    res = clean_video(
        rec,
        SETTINGS,
        src,
        BBOX,
        tmp_path / "out" / "c.mp4",
        CleanOptions(paste_back=True, batch_size=4, device="cpu", codec="h264-lossless", progress=False),
    )
    assert res.frames == 13
    for path, size in ((res.out, (CROP, CROP)), (res.full_out, (W, H))):
        info = probe(path)
        assert (info.width, info.height) == size
        assert info.frame_count == 13
        assert info.fps == pytest.approx(float(FPS), abs=1e-6)
        assert len(read_frames(path, range(13))) == 13
    # The generator saw exactly crop_resize of the decoded frames, in order, in batches of 4.
    assert [len(x) for x in rec.inputs] == [4, 4, 4, 1]
    seen = to_uint8(torch.cat(rec.inputs))
    decoded = read_frames(src, range(13))
    expected = np.stack([crop_resize(f, BBOX, CROP) for f in decoded])
    np.testing.assert_array_equal(seen, expected)


@pytest.mark.numerics
def test_identity_generator_reproduces_crop(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=9)
    res = clean_video(
        Identity(),
        SETTINGS,
        src,
        BBOX,
        tmp_path / "c.mp4",
        CleanOptions(batch_size=3, device="cpu", codec="h264-lossless", progress=False),
    )
    out = read_frames(res.out, range(9)).astype(int)
    expected = np.stack([crop_resize(f, BBOX, CROP) for f in read_frames(src, range(9))]).astype(int)
    assert np.abs(out - expected).max() <= 1


def test_paste_back_video_keeps_outside_pixels(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=11)
    res = clean_video(
        _tiny_generator(),
        SETTINGS,
        src,
        BBOX,
        tmp_path / "c.mp4",
        CleanOptions(paste_back=True, batch_size=4, device="cpu", codec="h264-lossless", progress=False),
    )
    assert res.full_out == tmp_path / "c.full.mp4"
    decoded = read_frames(src, range(11))
    full = read_frames(res.full_out, range(11))
    x, y, w, h = BBOX
    outside = np.ones((H, W), bool)
    outside[y : y + h, x : x + w] = False
    np.testing.assert_array_equal(full[:, outside], decoded[:, outside])
    # ... and the inside did change (a random generator is far from the identity).
    assert np.abs(full[:, ~outside].astype(int) - decoded[:, ~outside]).mean() > 10
    # The full video's bbox interior is the cleaned crop pasted back.
    crops = read_frames(res.out, range(11))
    for f, c, g in zip(decoded, crops, full, strict=True):
        np.testing.assert_array_equal(g, paste_back(f, c, BBOX))


def test_paste_back_in_memory() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    crop = np.full((CROP, CROP, 3), 200, np.uint8)
    out = paste_back(frame, crop, BBOX, feather=4)
    assert out is not frame and out.shape == frame.shape
    x, y, w, h = BBOX
    outside = np.ones((H, W), bool)
    outside[y : y + h, x : x + w] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    np.testing.assert_array_equal(out[y + 4 : y + h - 4, x + 4 : x + w - 4], 200)  # interior: the crop
    alpha = feather_alpha(w, h, 4)[..., 0]
    assert alpha[0, 0] == pytest.approx(1 / 5) and alpha[h // 2, 0] == pytest.approx(1 / 5)
    assert alpha[h // 2, 3] == pytest.approx(4 / 5) and alpha[h // 2, 4] == 1.0
    # On the border ring the result lies between the original and the crop.
    edge = out[y + h // 2, x].astype(int)
    orig = frame[y + h // 2, x].astype(int)
    np.testing.assert_allclose(edge, np.rint(orig + (200 - orig) / 5), atol=1)
    np.testing.assert_array_equal(paste_back(frame, crop, BBOX, feather=0)[y : y + h, x : x + w], 200)
    with pytest.raises(ValueError, match="outside"):
        paste_back(frame, crop, (40, 6, 40, 36))


class PerSample(nn.Module):
    """Runs the wrapped generator one image at a time: batch-invariant by construction."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner(x[i : i + 1]) for i in range(len(x))])


@pytest.mark.numerics
def test_batch_size_does_not_change_output(tmp_path: Path) -> None:
    """Batching, ordering and the short last batch change nothing (bit-exact). The raw
    generator may differ by a rounding step: oneDNN uses another conv kernel for batch 1
    with few channels (float noise ~1e-6; bit-exact at the paper's ngf=64, 256 px)."""
    src = _video(tmp_path / "in.mp4", n=10)
    gen = _tiny_generator(5)
    outs: dict[tuple[str, int], np.ndarray] = {}
    for kind, model in (("per-sample", PerSample(gen)), ("raw", gen)):
        for bs in (1, 4):
            # The raw generator's rounding step may flip a pixel of the compositing mask at
            # its threshold; compare its full repaint (the compositing is per frame, in order).
            res = clean_video(
                model,
                SETTINGS,
                src,
                BBOX,
                tmp_path / f"{kind}{bs}.mp4",
                CleanOptions(
                    batch_size=bs,
                    device="cpu",
                    codec="h264-lossless",
                    progress=False,
                    composite="off" if kind == "raw" else "auto",
                ),
            )
            outs[kind, bs] = read_frames(res.out, range(10)).astype(int)
    np.testing.assert_array_equal(outs["per-sample", 1], outs["per-sample", 4])
    diff = np.abs(outs["raw", 1] - outs["raw", 4])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_generator_error_propagates_and_leaves_nothing(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=20)
    out_dir = tmp_path / "out"
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom in the generator"):
        clean_video(
            Exploding(after=2),
            SETTINGS,
            src,
            BBOX,
            out_dir / "c.mp4",
            CleanOptions(paste_back=True, batch_size=2, device="cpu", progress=False),
        )
    assert _all_files(out_dir) == set()

    class WrongShape(nn.Module):  # fails in the writer thread
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, :16, :16]

    with pytest.raises(CleanError, match="in.mp4.*16x16"):
        clean_video(
            WrongShape(),
            SETTINGS,
            src,
            BBOX,
            out_dir / "c.mp4",
            CleanOptions(batch_size=2, device="cpu", progress=False),
        )
    assert _all_files(out_dir) == set()
    assert threading.active_count() == before  # reader and writer threads are gone


def test_truncated_stream_with_valid_header_fails_cleanly(tmp_path: Path) -> None:
    """moov up front (faststart) + cut mdat: the header promises more frames than decode."""
    import av

    plain = _video(tmp_path / "plain.mp4", n=30, codec="h264")
    fast = tmp_path / "fast.mp4"
    with av.open(str(plain)) as inp, av.open(str(fast), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert probe(cut).frame_count == 30  # the header still says 30
    out_dir = tmp_path / "out"
    with pytest.raises(VideoError, match="cut.mp4.*decoded only"):
        clean_video(
            _tiny_generator(),
            SETTINGS,
            cut,
            BBOX,
            out_dir / "c.mp4",
            CleanOptions(paste_back=True, batch_size=4, device="cpu", progress=False),
        )
    assert _all_files(out_dir) == set()


def test_output_must_not_overwrite_input(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=3)
    with pytest.raises(CleanError, match="overwrite"):
        clean_video(Identity(), SETTINGS, src, BBOX, src, CleanOptions(device="cpu", progress=False))
    assert probe(src).frame_count == 3


# --------------------------------------------------------------------------- subjects / CLI


@pytest.fixture
def subject(tmp_path: Path) -> Path:
    """Sensor recordings: two good ones and five broken ones, plus a normal one."""
    d = tmp_path / "subj"
    d.mkdir()
    _video(d / "s1_good.mp4", n=12, seed=1)
    _video(d / "s2_good.mp4", n=10, seed=2)
    _video(d / "n1.mp4", n=12, seed=3)
    _video(d / "s1_wide.mp4", n=12, seed=4)
    valid = write_video(d / "tmp.mp4", _frames(12, 5), float(FPS), codec="h264").read_bytes()
    (d / "tmp.mp4").unlink()
    (d / "s1_trunc.mp4").write_bytes(valid[: len(valid) // 2])
    (d / "s1_garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    recs = [
        _rec("s1_good"),
        _rec("s1_trunc"),
        _rec("s1_garbage"),
        _rec("s1_missing"),
        _rec("s1_wide", bbox=(30, 6, 40, 36)),  # 30 + 40 > 64
        _rec("s2_good", session=2),
        _rec("n1", condition="normal"),
    ]
    return _write_manifest(d / "subj.yaml", recs)


def test_main_cleans_good_reports_bad(subject: Path, ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "clean"
    rc = main(
        [
            "--ckpt",
            str(ckpt),
            "--manifest",
            str(subject),
            "--out",
            str(out),
            "--paste-back",
            "--codec",
            "h264-lossless",
            "--batch_size",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert rc == 1
    assert _all_files(out) == {"s1_good.mp4", "s1_good.full.mp4", "s2_good.mp4", "s2_good.full.mp4", "manifest.yaml"}
    text = capsys.readouterr()
    report = text.out + text.err
    # Off a terminal: plain progress lines per video, numbered over the subject's videos.
    assert "clean s1_good (1/6): 12/12 frames (100%)" in text.out
    assert "clean s2_good (6/6): 10/10 frames (100%)" in text.out and "\r" not in text.out
    for name in ("s1_trunc.mp4", "s1_garbage.mp4", "s1_missing.mp4", "s1_wide.mp4"):
        assert name in report
    assert "outside" in report and "not found" in report
    assert "2 cleaned, 4 failed" in report
    assert probe(out / "s2_good.mp4").frame_count == 10

    clean = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert clean.subject == "subj01"
    by_source = {r.source: r for r in clean.recordings}
    assert set(by_source) == {"s1_good", "s2_good"}
    for src_name, rec in by_source.items():
        assert rec.condition == "clean" and rec.name == f"{src_name}_clean"
        assert rec.path == (out / f"{src_name}.mp4").resolve()
        assert rec.bbox == (0, 0, LOAD, LOAD)
        assert probe(rec.path).width == LOAD
        assert rec.segments == {"schaede": (0.0, 0.1), "sentence": (0.1, 0.3)}
    assert by_source["s2_good"].session == 2


def test_clean_subject_merges_manifest(subject: Path, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    first = clean_subject(
        ckpt, subject, out, ["s1_good"], CleanOptions(device="cpu", codec="h264-lossless", progress=False)
    )
    assert first.ok and set(first.results) == {"s1_good"}
    second = clean_subject(ckpt, subject, out, ["s2_good"], CleanOptions(device="cpu", progress=False))
    assert second.ok and second.manifest == (out / "manifest.yaml").resolve()
    names = {r.name for r in load_manifest(out / "manifest.yaml", require_domains=("clean",)).recordings}
    assert names == {"s1_good_clean", "s2_good_clean"}
    # Failing recordings in a later run keep the earlier entries.
    third = clean_subject(ckpt, subject, out, ["s1_trunc"], CleanOptions(device="cpu", progress=False))
    assert not third.ok and third.failures[0].name == "s1_trunc" and "s1_trunc.mp4" in third.failures[0].message
    names = {r.name for r in load_manifest(out / "manifest.yaml", require_domains=("clean",)).recordings}
    assert names == {"s1_good_clean", "s2_good_clean"}


def test_main_argument_errors(subject: Path, ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "clean"
    base = ["--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(base + ["--manifest", str(subject), "--recordings", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(base + ["--manifest", str(subject), "--recordings", "n1"]) == 2  # not a sensor recording
    assert main(["--ckpt", str(tmp_path / "none.ckpt"), "--manifest", str(subject), "--out", str(out)]) == 2
    assert "none.ckpt" in capsys.readouterr().err
    assert main(base + ["--video", str(subject.parent / "s1_good.mp4")]) == 2  # no --bbox
    assert main(base + ["--video", "x.mp4", "--bbox", "1,2,3"]) == 2
    assert _all_files(out) == set()


def test_main_single_video(subject: Path, ckpt: Path, tmp_path: Path, capsys) -> None:
    video = subject.parent / "s1_good.mp4"
    out = tmp_path / "one" / "cleaned.mp4"
    common = ["--ckpt", str(ckpt), "--video", str(video), "--out", str(out), "--device", "cpu"]
    assert main(common + ["--bbox", ",".join(map(str, BBOX)), "--paste-back"]) == 0  # with progress
    assert "s1_good.mp4: 12/12 frames (100%)" in capsys.readouterr().out  # plain lines: not a terminal
    assert probe(out).frame_count == 12 and probe(out.with_name("cleaned.full.mp4")).width == W
    out.unlink()
    out.with_name("cleaned.full.mp4").unlink()
    assert main(common + ["--bbox", "40,6,40,36"]) == 2  # bad input, checked before any work
    err = capsys.readouterr().err
    assert "s1_good.mp4" in err and "outside" in err
    assert _all_files(out.parent) == set()


def test_unexpected_error_keeps_finished_recordings(subject: Path, ckpt: Path, tmp_path: Path) -> None:
    """A bug-type error (not a bad video) propagates, but what was finished is listed."""
    from sensor_removal.cleaning import clean_recordings

    subj = load_manifest(subject, check_videos=False, require_domains=("sensor",))
    out = tmp_path / "clean"
    gen = Exploding(after=3)  # s1_good: 12 frames = 3 batches of 4; s2_good explodes
    with pytest.raises(RuntimeError, match="boom"):
        clean_recordings(
            gen,
            SETTINGS,
            subj,
            out,
            ["s1_good", "s2_good"],
            CleanOptions(batch_size=4, device="cpu", codec="h264-lossless", progress=False),
        )
    # the finished one's detail composite (ours) and the manifest listing it are kept too
    assert _all_files(out) == {"s1_good.mp4", "s1_good.detail.mp4", "manifest.yaml", "manifest.detail.yaml"}
    names = [r.name for r in load_manifest(out / "manifest.yaml", require_domains=("clean",)).recordings]
    assert names == ["s1_good_clean"]


def test_memory_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader never runs more than a few batches ahead of the generator."""
    import time

    import sensor_removal.cleaning.pipeline as clean_mod

    decoded = [0]
    real_iter = clean_mod.iter_frames

    def counting_iter(*args, **kwargs):
        for item in real_iter(*args, **kwargs):
            decoded[0] += 1
            yield item

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0
            self.lead: list[int] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(0.02)  # give the reader every chance to run ahead
            self.lead.append(decoded[0] - self.seen)
            self.seen += len(x)
            return x

    monkeypatch.setattr(clean_mod, "iter_frames", counting_iter)
    src = _video(tmp_path / "in.mp4", n=40)
    slow = Slow()
    clean_video(slow, SETTINGS, src, BBOX, tmp_path / "c.mp4", CleanOptions(batch_size=2, device="cpu", progress=False))
    assert slow.seen == 40, slow.lead
    # queue of 2 batches + the batch being built + the one in the generator (+1 frame slack)
    assert max(slow.lead) <= (clean_mod._QUEUE_DEPTH + 2) * 2 + 1
    assert max(slow.lead) >= 4  # it did read ahead (the overlap works)


def test_load_generator_accepts_paths_in_hparams(tmp_path: Path, ckpt: Path) -> None:
    data = torch.load(ckpt, weights_only=True)
    data["datamodule_hyper_parameters"]["manifest"] = Path("/data/subj.yaml")
    torch.save(data, tmp_path / "p.ckpt")
    _, settings = load_generator(tmp_path / "p.ckpt", "cpu")
    assert settings.manifest == Path("/data/subj.yaml")


@pytest.mark.numerics
def test_runner_pads_sides_that_do_not_divide_by_four() -> None:
    """A 286-px training crop (the paper's load size) is not a multiple of 4: the runner
    reflect-pads to 288 for the two stride-2 stages and crops the output back."""
    gen = _tiny_generator()
    runner = GeneratorRunner(gen, torch.device("cpu"), "fp32", multiple=4)
    batch = torch.from_numpy(np.stack(_frames(2))[:, :34, :34].copy())
    with torch.inference_mode():
        out = runner(batch)
        x = torch.nn.functional.pad(runner.to_input(batch), (0, 2, 0, 2), mode="reflect")
        expected = gen(x)[..., :34, :34]
    assert out.shape == (2, 3, 34, 34)
    torch.testing.assert_close(out, expected)


# --------------------------------------------------------------------------- compositing (ours)


class PaintSquare(nn.Module):
    """A stand-in G_S→N: paints a moving square white and shifts every colour a little
    (a global drift, as trained generators do), like a sensor removed at one place."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * 0.95 + 0.04).clamp(-1, 1)
        for i in range(len(y)):
            k = (self.calls + i) % 8
            y[i, :, 8 + k : 16 + k, 10:18] = 1.0
        self.calls += len(y)
        return y


@pytest.mark.numerics
def test_composite_keeps_every_pixel_outside_the_mask(tmp_path: Path) -> None:
    src = _video(tmp_path / "in.mp4", n=10)
    res = clean_video(
        PaintSquare(),
        SETTINGS,
        src,
        BBOX,
        tmp_path / "c.mp4",
        CleanOptions(
            batch_size=4,
            device="cpu",
            codec="h264-lossless",
            progress=False,
            composite="auto",
            mask_video=True,
            keep_repaint=True,
            steady=SteadySettings(),  # frame by frame: the composite is the repaint inside the mask
        ),
    )
    assert res.composited and res.mask_out == tmp_path / "c.mask.mp4" and res.repaint_out == tmp_path / "c.repaint.mp4"
    inputs = np.stack([crop_resize(f, BBOX, CROP) for f in read_frames(src, range(10))])
    out = read_frames(res.out, range(10))
    mask = read_frames(res.mask_out, range(10))[..., 0]
    repaint = read_frames(res.repaint_out, range(10))
    outside = mask == 0
    assert outside.mean() > 0.4  # most of the crop is left alone ...
    np.testing.assert_array_equal(out[outside], inputs[outside])  # ... bit for bit
    inside = mask == 255
    assert inside.any()
    np.testing.assert_array_equal(out[inside], repaint[inside])  # the repaint where the mask is 1
    # The painted square moves: so does the mask, which covers every pixel of it that
    # the painting really changed.
    for t in range(10):
        k = t % 8
        changed = np.zeros((CROP, CROP), bool)
        changed[8 + k : 16 + k, 10:18] = True
        changed &= (255 - inputs[t].astype(int)).max(-1) > 60
        assert changed.sum() > 20 and (mask[t][changed] > 0).all()
    # composite="off" is the paper's full repaint.
    off = clean_video(
        PaintSquare(),
        SETTINGS,
        src,
        BBOX,
        tmp_path / "o.mp4",
        CleanOptions(
            batch_size=4, device="cpu", codec="h264-lossless", progress=False, composite="off", mask_video=True
        ),
    )
    assert not off.composited and off.mask_out is None and not (tmp_path / "o.mask.mp4").exists()
    np.testing.assert_array_equal(read_frames(off.out, range(10)), repaint)


class ShimmerSquare(nn.Module):
    """A stand-in G_S→N that removes a sensor at a fixed place but paints it a little
    differently in every frame (fresh noise): the shimmer of a frame-by-frame repaint."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        noise = torch.randn((len(y), 3, 8, 8), generator=self.gen) * 0.03
        y[:, :, 8:16, 10:18] = (0.2 + noise).clamp(-1, 1)
        return y


@pytest.mark.numerics
def test_steady_fill_damps_the_shimmer_and_keeps_the_rest(tmp_path: Path) -> None:
    """--steady (ours): inside the repainted square the frame-to-frame change drops; the
    kept repaint is the generator's own; outside the mask the pixels stay the input's."""
    src = _video(tmp_path / "in.mp4", n=12)
    kw = CleanOptions(
        batch_size=4,
        device="cpu",
        codec="h264-lossless",
        progress=False,
        composite="auto",
        mask_video=True,
        steady=SteadySettings(),
    )
    plain = clean_video(ShimmerSquare(), SETTINGS, src, BBOX, tmp_path / "p.mp4", kw)
    steady = clean_video(
        ShimmerSquare(),
        SETTINGS,
        src,
        BBOX,
        tmp_path / "s.mp4",
        dataclasses.replace(kw, keep_repaint=True, steady=SteadySettings(strength=0.85)),
    )
    assert steady.steadied and not plain.steadied
    a, b = (read_frames(r.out, range(12)).astype(np.float32) for r in (plain, steady))
    square = (slice(None), slice(9, 15), slice(11, 17))
    change = {name: np.abs(np.diff(v[square], axis=0)).mean() for name, v in (("plain", a), ("steady", b))}
    assert change["steady"] < 0.6 * change["plain"], change
    full = clean_video(
        ShimmerSquare(), SETTINGS, src, BBOX, tmp_path / "f.mp4", dataclasses.replace(kw, composite="off")
    )
    np.testing.assert_array_equal(read_frames(steady.repaint_out, range(12)), read_frames(full.out, range(12)))
    inputs = np.stack([crop_resize(f, BBOX, CROP) for f in read_frames(src, range(12))])
    outside = read_frames(steady.mask_out, range(12))[..., 0] == 0
    assert outside.mean() > 0.4
    np.testing.assert_array_equal(b.astype(np.uint8)[outside], inputs[outside])


def test_main_composite_options(subject: Path, ckpt: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "--ckpt",
                str(ckpt),
                "--manifest",
                str(subject),
                "--out",
                str(tmp_path / "x"),
                "--mask-threshold",
                "0",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--mask-threshold" in capsys.readouterr().err
    assert (
        main(
            [
                "--ckpt",
                str(ckpt),
                "--manifest",
                str(subject),
                "--out",
                str(tmp_path / "x"),
                "--steady",
                "1",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--steady must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    out = tmp_path / "c"
    assert (
        main(
            [
                "--ckpt",
                str(ckpt),
                "--manifest",
                str(subject),
                "--out",
                str(out),
                "--composite",
                "auto",
                "--recordings",
                "s1_good",
                "--mask-video",
                "--keep-repaint",
                "--no-progress",
            ]
        )
        == 0
    )
    names = _all_files(out)
    assert any(n.endswith(".mask.mp4") for n in names) and any(n.endswith(".repaint.mp4") for n in names)
    cleaned = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert all(".mask" not in r.path.name and ".repaint" not in r.path.name for r in cleaned.recordings)


def test_main_reference_mask_takes_the_subjects_normal_recordings(subject: Path, ckpt: Path, tmp_path: Path) -> None:
    """--mask-method reference through a manifest: the normal recordings give the colours.
    The fixture's untrained generator changes every pixel, so the change part is switched
    off (threshold 200 levels: ramp 200 → 400): what remains is the colour novelty, which
    leaves pixels the normal recordings explain alone — here all of them, as the normal
    recording is made the same video as the sensor one (rank 1: the frames are noise, so
    only the identical frame explains a pixel)."""
    (subject.parent / "n1.mp4").write_bytes((subject.parent / "s1_good.mp4").read_bytes())
    masks = {}
    for method in ("change", "reference"):
        out = tmp_path / method
        assert (
            main(
                [
                    "--ckpt",
                    str(ckpt),
                    "--manifest",
                    str(subject),
                    "--out",
                    str(out),
                    "--composite",
                    "auto",
                    "--mask-method",
                    method,
                    "--mask-threshold",
                    "200",
                    "--mask-rank",
                    "1",
                    "--recordings",
                    "s1_good",
                    "--mask-video",
                    "--no-progress",
                ]
            )
            == 0
        )
        (mask_file,) = [p for p in out.iterdir() if p.name.endswith(".mask.mp4")]
        masks[method] = read_frames(mask_file, range(4))[..., 0]
    assert (masks["reference"] < 8).mean() > 0.95
    assert not np.array_equal(masks["reference"], masks["change"])


def test_detail_video_keeps_the_recordings_pixels_and_has_its_own_manifest(subject: Path, tmp_path: Path) -> None:
    """The detail composite (ours, default on with the sub-pixel composite) is written at
    the mask's finer size (here the bbox's 36 px, finer than the 32 px crop); where no
    sensor is found its pixels are the recording's cut at that size byte for byte (the
    normal recording is the sensor video itself, so nothing is novel); it gets its own
    manifest. A clean without it removes the earlier one and the manifest."""
    from sensor_removal.cleaning import clean_recordings
    from sensor_removal.cleaning.mask import MaskSettings
    from sensor_removal.cli.clean import _clean_options, build_parser

    (subject.parent / "n1.mp4").write_bytes((subject.parent / "s1_good.mp4").read_bytes())
    subj = load_manifest(subject, check_videos=False)
    out = tmp_path / "clean"
    options = CleanOptions(
        device="cpu",
        codec="h264-lossless",
        progress=False,
        mask=MaskSettings(method="reference", threshold=200, rank=1),
        steady=SteadySettings(strength=0.0),
    )
    assert options.detail_video  # the default
    report = clean_recordings(_tiny_generator(), SETTINGS, subj, out, ["s1_good"], options)
    detail = out / "s1_good.detail.mp4"
    assert report.results["s1_good"].detail_out == detail
    info = probe(detail)
    assert (info.width, info.height, info.frame_count) == (36, 36, 12)
    rec = subj.recording("s1_good")
    cut = np.stack([crop_resize(f, rec.bbox, 36) for f in read_frames(rec.path, range(12))])
    assert np.array_equal(read_frames(detail, range(12)), cut)
    (entry,) = load_manifest(out / "manifest.detail.yaml", require_domains=("clean",)).recordings
    assert (entry.path, entry.bbox, entry.source) == (detail.resolve(), (0, 0, 36, 36), "s1_good")
    args = build_parser().parse_args(["--ckpt", "c", "--video", "v", "--out", "o", "--detail-video", "off"])
    off = dataclasses.replace(options, detail_video=_clean_options(args).detail_video, overwrite=True)
    assert not off.detail_video
    clean_recordings(_tiny_generator(), SETTINGS, subj, out, ["s1_good"], off)
    assert not detail.exists() and not (out / "manifest.detail.yaml").exists()
    assert (out / "s1_good.mp4").is_file()


def test_clean_options_check_their_fields_once_when_built() -> None:
    """:class:`CleanOptions` refuses a bad value when it is built, before any video is
    opened; the nested mask and steady settings refuse theirs the same way."""
    from sensor_removal.cleaning.mask import MaskSettings

    with pytest.raises(CleanError, match="crf"):
        CleanOptions(crf=99)
    with pytest.raises(CleanError, match="batch_size"):
        CleanOptions(batch_size=0)
    with pytest.raises(CleanError, match="composite"):
        CleanOptions(composite="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        CleanOptions(mask=MaskSettings(threshold=0))
    options = CleanOptions(composite="auto", steady=SteadySettings(strength=0.5))
    assert options.compositing and options.steadied and options.mask == MaskSettings(method="reference")
    # Ours by default (docs/compositing.md, "Defaults"); the paper's full repaint is composite="off".
    default = CleanOptions()
    assert default.compositing and default.steady.strength == 0.9 and default.mask.method == "reference"
    assert default.mask_fallback
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.crf = 3  # type: ignore[misc]
