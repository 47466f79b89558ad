"""Bad input, tried as a new user would: every case ends with exit code 2, one message
naming the file or option, no traceback, and no new files in the output folders; user
data is never overwritten and results are never silently wrong.

The cases run the real entry points (``python -m sensor_removal fit|clean``,
``python -m evaluation run|report``) in-process, on tiny synthetic videos; none trains.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evaluation.cli import main as evaluation_main
from sensor_removal.cli.commands import main as sr_main
from sensor_removal.core.manifest import ManifestError, load_manifest, output_path
from tests.checkpoints import write_checkpoint
from tests.videos import make_video

BBOX = [8, 4, 32, 32]
SEGMENTS = {"schaede": [0.0, 1.0], "sentence": [1.0, 2.0]}
#: Tiny data options shared by the fit cases (36 px cache, 32 px crops).
DATA = ["--data.fraction", "0.5", "--data.load_size", "36", "--data.crop_size", "32", "--data.num_workers", "0"]
MODEL = ["--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1"]


def _rec(name: str, condition: str, session: int = 1, path: str | None = None) -> dict:
    return {
        "name": name,
        "path": path or f"{name}.mp4",
        "session": session,
        "condition": condition,
        "bbox": BBOX,
        "segments": SEGMENTS,
    }


def _write(path: Path, subject: str, recs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"subject": subject, "recordings": recs}, sort_keys=False))
    return path


@dataclass
class World:
    """A subject folder (manifest + videos), a checkpoint, and folders to write into."""

    root: Path
    subject: Path  # folder of the subject's videos
    manifest: Path
    ckpt: Path
    out: Path  # parent of every output of a case

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file under root with size and mtime: 'no new or changed files' checks."""
        return {
            str(p.relative_to(self.root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture(scope="module")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input")
    subj = root / "subj"
    subj.mkdir()
    recs = []
    for i, (name, cond, session) in enumerate(
        [("s1_normal", "normal", 1), ("s1_sensor", "sensor", 1), ("s2_normal", "normal", 2), ("s2_sensor", "sensor", 2)]
    ):
        make_video(subj / f"{name}.mp4", n=24, width=48, height=40, seed=i)
        recs.append(_rec(name, cond, session))
    _write(subj / "manifest.yaml", "subj01", recs)
    write_checkpoint(root / "model.ckpt", subj / "manifest.yaml")
    return root


@pytest.fixture
def world(world_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "w"
    shutil.copytree(world_template, root)
    (root / "out").mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(root / "out")  # anything written relative to the cwd counts as output
    return World(root, root / "subj", root / "subj" / "manifest.yaml", root / "model.ckpt", root / "out")


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Exit status of an entry point, whether it returns it or raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


# ----------------------------------------------------------------------- the cases
# Each case prepares the world and returns (entry point, argv, texts the message must
# contain). After it runs: exit 2, no traceback, the texts in stderr, no new/changed files.


def _clean(w: World, *extra: str) -> list[str]:
    return ["clean", "--ckpt", str(w.ckpt), "--device", "cpu", "--no-progress", *extra]


def _fit(w: World, *extra: str) -> list[str]:
    return [
        "fit",
        "--data.manifest",
        str(w.manifest),
        *DATA,
        *MODEL,
        "--trainer.default_root_dir",
        str(w.out / "run"),
        *extra,
    ]


def case_name_with_separators(w: World):
    """A recording named ../s1_normal must not make clean overwrite the subject's video."""
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][1]["name"] = "../s1_normal"
    bad = w.subject / "evil.yaml"
    bad.write_text(yaml.safe_dump(doc))
    return (
        sr_main,
        _clean(w, "--manifest", str(bad), "--out", str(w.subject / "clean")),
        [str(bad), "../s1_normal", "name"],
    )


def case_subject_outside_cache(w: World):
    doc = yaml.safe_load(w.manifest.read_text())
    doc["subject"] = "../../../x"
    bad = w.subject / "evil.yaml"
    bad.write_text(yaml.safe_dump(doc))
    return sr_main, _fit(w, "--data.manifest", str(bad)), [str(bad), "subject", "../../../x"]


def case_clean_out_holds_subject_manifest(w: World):
    """--manifest DIR/manifest.json --out DIR: DIR/manifest.yaml is the subject's, not a cleaned one."""
    as_json = w.subject / "manifest.json"
    as_json.write_text(json.dumps(yaml.safe_load(w.manifest.read_text())))
    return sr_main, _clean(w, "--manifest", str(as_json), "--out", str(w.subject)), [str(w.manifest), "clean"]


def case_clean_video_out_exists(w: World):
    (w.out / "done.mp4").write_bytes(b"earlier result")
    return (
        sr_main,
        _clean(w, "--video", str(w.subject / "s1_sensor.mp4"), "--bbox", "8,4,32,32", "--out", str(w.out / "done.mp4")),
        [str(w.out / "done.mp4"), "--overwrite"],
    )


def case_clean_video_out_is_input(w: World):
    src = str(w.subject / "s1_sensor.mp4")
    return sr_main, _clean(w, "--video", src, "--bbox", "8,4,32,32", "--out", src, "--overwrite"), [src, "input"]


def case_clean_output_is_other_input(w: World):
    """A sensor recording whose output name is the file of a normal recording."""
    recs = [
        _rec("s1_sensor", "sensor"),
        _rec("s1_normal", "normal", path="nothing_here.mp4"),
        _rec("n1", "normal", path="s1_sensor.mp4"),
    ]
    recs[0]["path"] = "s2_sensor.mp4"
    d = w.root / "subj2"
    d.mkdir()
    for name in ("s1_sensor.mp4", "s2_sensor.mp4"):
        shutil.copy(w.subject / name, d / name)
    bad = _write(d / "mixed.yaml", "subj01", recs)
    return sr_main, _clean(w, "--manifest", str(bad), "--out", str(d)), [str(d / "s1_sensor.mp4"), "input"]


def case_clean_out_has_a_foreign_file(w: World):
    """A file in --out that the cleaned manifest does not list is the user's: not replaced."""
    (w.out / "c").mkdir()
    (w.out / "c" / "s1_sensor.mp4").write_bytes(b"someone's video")
    return (
        sr_main,
        _clean(w, "--manifest", str(w.manifest), "--out", str(w.out / "c")),
        [str(w.out / "c" / "s1_sensor.mp4"), "--overwrite"],
    )


def case_resume_with_other_model_options(w: World):
    return (
        sr_main,
        _fit(w, "--model.ngf", "8", "--ckpt_path", str(w.ckpt)),
        [str(w.ckpt), "--model.ngf: 8 now, 4 in the checkpoint"],
    )


def case_init_from_other_architecture(w: World):
    """A population checkpoint of another width: the field and the file, before any cache."""
    wide = write_checkpoint(w.root / "wide.ckpt", w.manifest, ngf=8)
    return (
        sr_main,
        _fit(w, "--model.init_from", str(wide)),
        [str(wide), "--model.init_from", "hyper_parameters.ngf is 8 in the checkpoint but 4 in this fit"],
    )


def case_init_from_other_crop(w: World):
    return (
        sr_main,
        _fit(w, "--model.init_from", str(w.ckpt), "--data.load_size", "44", "--data.crop_size", "40"),
        [str(w.ckpt), "datamodule_hyper_parameters.crop_size is 32 in the checkpoint but 40 in this fit"],
    )


def case_init_from_missing(w: World):
    missing = w.root / "population.ckpt"
    expected = [f"--model.init_from: {missing}: checkpoint file not found"]
    return sr_main, _fit(w, "--model.init_from", str(missing)), expected


def case_init_from_pickle_runs_code(w: World):
    evil = w.root / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(w.out / "pwned")}, evil)
    return sr_main, _fit(w, "--model.init_from", str(evil)), [str(evil), "refused"]


def case_manifest_list_twice(w: World):
    argv = _fit(w, "--data.manifest", f"[{w.manifest}, {w.manifest}]")
    return sr_main, argv, [f"data.manifest: {w.manifest} is listed twice"]


def case_manifest_list_empty(w: World):
    return sr_main, _fit(w, "--data.manifest", "[]"), ["no manifest given"]


def case_manifest_list_one_bad(w: World):
    """One bad subject of a population stops the fit, naming that manifest."""
    missing = w.subject / "other.yaml"
    return sr_main, _fit(w, "--data.manifest", f"[{w.manifest}, {missing}]"), [str(missing)]


def case_val_fraction_above_one(w: World):
    return sr_main, _fit(w, "--data.val_fraction", "1.5"), ["data.val_fraction"]


def case_fraction_zero(w: World):
    return sr_main, _fit(w, "--data.fraction", "0"), ["data.fraction"]


def case_fraction_above_one(w: World):
    return sr_main, _fit(w, "--data.fraction", "1.5"), ["data.fraction"]


def case_crop_larger_than_load(w: World):
    return sr_main, _fit(w, "--data.crop_size", "40"), ["data.crop_size", "data.load_size"]


def case_crop_not_multiple_of_four(w: World):
    return sr_main, _fit(w, "--data.crop_size", "30"), ["data.crop_size", "multiple of 4"]


def case_odd_load_size(w: World):
    return sr_main, _fit(w, "--data.load_size", "35"), ["data.load_size", "even"]


def case_negative_lr(w: World):
    return sr_main, _fit(w, "--model.lr", "-1"), ["model.lr"]


def case_infinite_lr(w: World):
    return sr_main, _fit(w, "--model.lr", "inf"), ["model.lr"]


def case_nan_loss_weight(w: World):
    return sr_main, _fit(w, "--model.lambda_cycle", "nan"), ["model.lambda_cycle"]


def case_fifo_as_video(w: World):
    fifo = w.out / "pipe.mp4"
    os.mkfifo(fifo)  # opening it would block forever: it must be refused unopened
    return (
        sr_main,
        _clean(w, "--video", str(fifo), "--bbox", "8,4,32,32", "--out", str(w.out / "x.mp4")),
        [str(fifo), "named pipe"],
    )


def case_device_as_video(w: World):
    return (
        sr_main,
        _clean(w, "--video", "/dev/zero", "--bbox", "8,4,32,32", "--out", str(w.out / "x.mp4")),
        ["/dev/zero", "character device"],
    )


def case_segment_name_with_separators(w: World):
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][1]["segments"] = {"foo/../bar": [0.0, 1.0]}
    bad = w.subject / "evil.yaml"
    bad.write_text(yaml.safe_dump(doc))
    return sr_main, _clean(w, "--manifest", str(bad), "--out", str(w.out / "c")), [str(bad), "foo/../bar", "segment"]


def case_crf_too_high(w: World):
    return sr_main, _clean(w, "--manifest", str(w.manifest), "--out", str(w.out / "c"), "--crf", "100"), ["--crf", "51"]


def case_crf_negative(w: World):
    return (
        sr_main,
        _clean(w, "--manifest", str(w.manifest), "--out", str(w.out / "c"), "--crf", "-5"),
        ["--crf", ">= 0"],
    )


def _vfr_video(path: Path, n: int = 24) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 40, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((40, 48, 3), 8 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += 50 if i < n // 2 else 150  # 20 fps, then 6.7 fps
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def case_variable_frame_rate(w: World):
    _vfr_video(w.subject / "s1_sensor.mp4")
    return sr_main, _fit(w), [str(w.subject / "s1_sensor.mp4"), "variable frame rate", "ffmpeg", "cfr"]


def case_manifest_not_utf8_fit(w: World):
    w.manifest.write_bytes("subject: caf\u00e9\n".encode("latin-1"))
    return sr_main, _fit(w), [str(w.manifest), "UTF-8"]


def case_manifest_not_utf8_clean(w: World):
    w.manifest.write_bytes("subject: caf\u00e9\n".encode("latin-1"))
    return sr_main, _clean(w, "--manifest", str(w.manifest), "--out", str(w.out / "c")), [str(w.manifest), "UTF-8"]


def case_manifest_not_utf8_evaluation(w: World):
    w.manifest.write_bytes("subject: caf\u00e9\n".encode("latin-1"))
    return (
        evaluation_main,
        ["run", "--manifest", str(w.manifest), "--out", str(w.out / "r"), "--metrics", "groundtruth"],
        [str(w.manifest), "UTF-8"],
    )


def case_recording_too_short(w: World):
    make_video(w.subject / "s1_sensor.mp4", n=1, width=48, height=40)
    recs = [_rec("s1_normal", "normal"), _rec("s1_sensor", "sensor")]
    for r in recs:
        r["segments"] = {}
    bad = _write(w.subject / "short.yaml", "subj01", recs)
    return (
        sr_main,
        _fit(w, "--data.manifest", str(bad), "--data.fraction", "0.02"),
        [str(bad), "sensor", "--data.fraction"],
    )


def case_ckpt_missing(w: World):
    path = str(w.root / "nope.ckpt")
    return sr_main, _fit(w, "--ckpt_path", path), [path, "not found"]


def case_ckpt_not_a_checkpoint(w: World):
    (w.root / "notes.ckpt").write_text("these are my notes")
    return sr_main, _fit(w, "--ckpt_path", str(w.root / "notes.ckpt")), [str(w.root / "notes.ckpt"), "cannot load"]


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def case_ckpt_pickle_runs_code(w: World):
    path = w.root / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(w.out / "pwned")}, path)
    return sr_main, _fit(w, "--ckpt_path", str(path)), [str(path), "refused"]


def case_evaluation_run_out_is_file(w: World):
    (w.out / "results").write_text("x")
    return (
        evaluation_main,
        ["run", "--manifest", str(w.manifest), "--out", str(w.out / "results"), "--metrics", "groundtruth"],
        [str(w.out / "results"), "not a folder"],
    )


def case_evaluation_report_out_is_file(w: World):
    res = w.out / "res"
    res.mkdir()
    (res / "results.csv").write_text(
        "subject,session,segment,kind,reference,other,metric,feature,value,std,n\n"
        "subj01,1,whole,sensor,a,b,lpips,image,0.5,0.1,3\n"
    )
    (w.out / "report").write_text("x")
    return (
        evaluation_main,
        ["report", str(res), "--out", str(w.out / "report")],
        [str(w.out / "report"), "not a folder"],
    )


def case_directory_as_video(w: World):
    (w.subject / "s1_sensor.mp4").unlink()
    (w.subject / "s1_sensor.mp4").mkdir()
    return sr_main, _fit(w), [str(w.subject / "s1_sensor.mp4"), "is a directory"]


def case_directory_as_video_to_clean(w: World):
    (w.subject / "takes").mkdir()
    return (
        sr_main,
        _clean(w, "--video", str(w.subject / "takes"), "--bbox", "8,4,32,32", "--out", str(w.out / "c.mp4")),
        [str(w.subject / "takes"), "is a directory"],
    )


def case_clean_video_bbox_outside(w: World):
    return (
        sr_main,
        _clean(w, "--video", str(w.subject / "s1_sensor.mp4"), "--bbox", "30,4,32,32", "--out", str(w.out / "c.mp4")),
        [str(w.subject / "s1_sensor.mp4"), "--bbox", "outside"],
    )


def _clean_video_reference(w: World) -> list[str]:
    """``clean --video`` of the sensor recording with the ``reference`` mask asked for."""
    video = ["--video", str(w.subject / "s1_sensor.mp4"), "--bbox", "8,4,32,32", "--out", str(w.out / "c.mp4")]
    return _clean(w, *video, "--composite", "auto", "--mask-method", "reference")


def case_clean_video_reference_mask_with_an_old_checkpoint(w: World):
    """Mask method 'reference' on a lone --video takes its colours from the checkpoint;
    one fitted before the reference was stored has none: the message names the
    checkpoint and the two ways out (re-fit, or a manifest with normal recordings)."""
    return (
        sr_main,
        _clean_video_reference(w),
        [str(w.ckpt), "normal_reference", "Re-fit", "--manifest", "normal recordings"],
    )


def case_clean_video_reference_of_another_crop_size(w: World):
    """A stored reference whose crops are not the checkpoint's crop size (36 px here)."""
    ckpt = torch.load(w.ckpt, weights_only=True)
    ckpt["normal_reference"] = {"frames": torch.zeros(3, 20, 20, 3, dtype=torch.uint8)}
    torch.save(ckpt, w.ckpt)
    return (
        sr_main,
        _clean_video_reference(w),
        [str(w.ckpt), "normal_reference", "20x20", "36x36"],
    )


def case_clean_video_reference_that_is_not_tensors(w: World):
    """A stored reference that is not a dict of tensors."""
    ckpt = torch.load(w.ckpt, weights_only=True)
    ckpt["normal_reference"] = {"frames": [1, 2, 3]}
    torch.save(ckpt, w.ckpt)
    return (
        sr_main,
        _clean(w, "--video", str(w.subject / "s1_sensor.mp4"), "--bbox", "8,4,32,32", "--out", str(w.out / "c.mp4")),
        [str(w.ckpt), "normal_reference", "tensors"],
    )


def _evaluation_cleaned(w: World, keep: list[str], frames: int = 24) -> Path:
    """A cleaned-recordings manifest with cleaned videos for the sensor recordings ``keep``."""
    d = w.out / "cleaned"
    d.mkdir(exist_ok=True)
    recs = []
    for name in keep:
        make_video(d / f"{name}.mp4", n=frames, width=32, height=32, seed=9)
        r = _rec(f"{name}_clean", "clean", session=int(name[1]), path=f"{name}.mp4")
        r.update(bbox=[0, 0, 32, 32], source=name, segments={"schaede": [0.0, 0.9]})  # fits 10 frames
        recs.append(r)
    return _write(d / "manifest.yaml", "subj01", recs)


def case_evaluation_missing_cleaned(w: World):
    cleaned = _evaluation_cleaned(w, ["s1_sensor"])
    return (
        evaluation_main,
        [
            "run",
            "--manifest",
            str(w.manifest),
            "--cleaned",
            str(cleaned),
            "--out",
            str(w.out / "r"),
            "--metrics",
            "groundtruth",
        ],
        [str(cleaned), "s2_sensor", "--allow-missing"],
    )


def case_evaluation_frame_count_mismatch(w: World):
    cleaned = _evaluation_cleaned(w, ["s1_sensor", "s2_sensor"], frames=10)
    return (
        evaluation_main,
        [
            "run",
            "--manifest",
            str(w.manifest),
            "--cleaned",
            str(cleaned),
            "--out",
            str(w.out / "r"),
            "--metrics",
            "groundtruth",
        ],
        [str(w.out / "cleaned" / "s1_sensor.mp4"), "10 frames", "24"],
    )


# Cases that already ended with a clear message: they must stay that way.
def case_unknown_condition(w: World):
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][1]["condition"] = "electrodes"
    w.manifest.write_text(yaml.safe_dump(doc))
    return sr_main, _fit(w), [str(w.manifest), "recording 's1_sensor', field 'condition'"]


def case_bbox_outside_frame(w: World):
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][0]["bbox"] = [40, 4, 32, 32]
    w.manifest.write_text(yaml.safe_dump(doc))
    return sr_main, _fit(w), [str(w.manifest), "recording 's1_normal', field 'bbox'", "outside"]


def case_missing_video(w: World):
    (w.subject / "s2_normal.mp4").unlink()
    return sr_main, _fit(w), [str(w.subject / "s2_normal.mp4"), "not found"]


def case_segment_after_end(w: World):
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][0]["segments"]["emotion"] = [2.0, 30.0]
    w.manifest.write_text(yaml.safe_dump(doc))
    return sr_main, _fit(w), [str(w.manifest), "segments.emotion", "after the end"]


def case_clean_missing_manifest(w: World):
    path = str(w.subject / "none.yaml")
    return sr_main, _clean(w, "--manifest", path, "--out", str(w.out / "c")), [path, "not found"]


# sEMG (ours): the emg: entry's file checked before any work; one message naming file and channel.
def _with_emg(
    w: World, seconds: float = 4.0, edit: Callable[[np.ndarray, list[str]], None] | None = None, **entry
) -> list[str]:
    """sEMG files for both sensor recordings (synthetic, 2,048 Hz) and their emg: entries;
    ``edit(samples, labels)`` spoils the first one in place. Returns the emg report argv."""
    from sensor_removal.synthetic import emg as synth_emg

    doc = yaml.safe_load(w.manifest.read_text())
    for i, rec in enumerate(doc["recordings"]):
        if rec["condition"] != "sensor":
            continue
        sig = np.random.default_rng(i).uniform(0, 1, (int(seconds * 10), 7))
        raw = synth_emg.synthesize(sig, 10.0, np.random.default_rng(i), offset_s=0.5)
        samples, labels = raw.samples[: int(seconds * 2048)].copy(), [*synth_emg.LABELS, synth_emg.TRIGGER_CHANNEL]
        if edit is not None and rec["name"] == "s1_sensor":
            edit(samples, labels)
        name = f"{rec['name']}.emg.npz"
        np.savez(w.subject / name, samples=samples, rate_hz=2048.0, labels=np.array(labels))
        rec["emg"] = {**synth_emg.manifest_entry(w.subject / name).to_dict(w.subject, os.path.relpath), **entry}
    w.manifest.write_text(yaml.safe_dump(doc))
    return ["emg", "report", "--manifest", str(w.manifest), "--out", str(w.out / "emg")]


def case_emg_missing_channel(w: World):
    def drop(samples: np.ndarray, labels: list[str]) -> None:
        labels[labels.index("ZYG_L")] = "ZYG_LEFT"

    return (
        sr_main,
        _with_emg(w, edit=drop),
        [str(w.subject / "s1_sensor.emg.npz"), "'ZYG_L' (zygomaticus/left)", "not in the file"],
    )


def case_emg_wrong_rate(w: World):
    return (
        sr_main,
        _with_emg(w, rate_hz=4096),
        [str(w.subject / "s1_sensor.emg.npz"), "2048 Hz", "emg.rate_hz says 4096 Hz"],
    )


def case_emg_clipped_channel(w: World):
    def clip(samples: np.ndarray, labels: list[str]) -> None:
        c = labels.index("COR_R")
        samples[:, c] = np.clip(samples[:, c], -20.0, 20.0)

    return (
        sr_main,
        _with_emg(w, edit=clip),
        [str(w.subject / "s1_sensor.emg.npz"), "'COR_R' (corrugator/right)", "clipped"],
    )


def case_emg_flat_channel(w: World):
    def flat(samples: np.ndarray, labels: list[str]) -> None:
        samples[:, labels.index("MEN_L")] = 3.0

    return sr_main, _with_emg(w, edit=flat), [str(w.subject / "s1_sensor.emg.npz"), "'MEN_L' (mentalis/left)", "flat"]


def case_emg_file_shorter_than_video(w: World):
    # the videos have 24 frames at 10 fps (2.4 s)
    return sr_main, _with_emg(w, seconds=1.5), [str(w.subject / "s1_sensor.emg.npz"), "shorter than the video"]


def case_emg_unknown_muscle(w: World):
    argv = _with_emg(w)
    doc = yaml.safe_load(w.manifest.read_text())
    doc["recordings"][1]["emg"]["channels"]["ZYG_L"] = "nose/left"
    w.manifest.write_text(yaml.safe_dump(doc))
    return sr_main, argv, [str(w.manifest), "recording 's1_sensor', field 'emg.channels.ZYG_L'", "not a muscle/side"]


CASES = {name[len("case_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_error(case: str, world: World, capfd: pytest.CaptureFixture, single_thread) -> None:
    main, argv, expected = CASES[case](world)
    before = world.files()
    code = run_main(main, argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} not in: {err}"
    assert world.files() == before  # nothing new, nothing changed (inputs included)
    assert not (world.out / "pwned").exists()  # no code ran from a checkpoint


# ------------------------------------------------------------------ the good paths


def test_names_are_safe_file_names(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "a\\b", "..", ".hidden", "a..b", "", "x" * 200, "a b", "ä"):
        doc = {"subject": "s", "recordings": [{**_rec("n", "normal"), "name": bad}]}
        f = tmp_path / "m.yaml"
        f.write_text(yaml.safe_dump(doc))
        with pytest.raises(ManifestError, match="name"):
            load_manifest(f, check_videos=False, require_domains=())
    with pytest.raises(ValueError, match="leaves its folder"):
        output_path(tmp_path, "../x.mp4")
    assert output_path(tmp_path, "s1_sensor-2.v1.mp4") == (tmp_path / "s1_sensor-2.v1.mp4").resolve()


def test_clean_video_overwrite_replaces_only_when_asked(
    world: World, capfd: pytest.CaptureFixture, single_thread
) -> None:
    out = world.out / "done.mp4"
    out.write_bytes(b"earlier result")
    args = _clean(world, "--video", str(world.subject / "s1_sensor.mp4"), "--bbox", "8,4,32,32", "--out", str(out))
    assert run_main(sr_main, [*args, "--overwrite"]) == 0
    from sensor_removal.core.video import probe

    assert probe(out).frame_count == 24


def test_allow_missing_lists_missing_recordings(world: World, capfd: pytest.CaptureFixture) -> None:
    cleaned = _evaluation_cleaned(world, ["s1_sensor"])
    out = world.out / "r"
    code = run_main(
        evaluation_main,
        [
            "run",
            "--manifest",
            str(world.manifest),
            "--cleaned",
            str(cleaned),
            "--out",
            str(out),
            "--metrics",
            "groundtruth",
            "--allow-missing",
        ],
    )
    assert code == 0, capfd.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_cleaned"] == ["s2_sensor"]
    assert summary["settings"]["allow_missing"] is True


def test_allow_missing_is_printed_under_the_tables(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    res = tmp_path / "res"
    res.mkdir()
    (res / "results.csv").write_text(
        "subject,session,segment,kind,reference,other,metric,feature,value,std,n\n"
        "subj01,1,whole,sensor,a,b,lpips,image,0.5,0.1,3\n"
    )
    (res / "summary.json").write_text(json.dumps({"subject": "subj01", "missing_cleaned": ["s2_sensor"]}))
    assert evaluation_main(["report", str(res), "--out", str(tmp_path / "rep")]) == 0
    assert "s2_sensor" in capfd.readouterr().out
    assert "Missing cleaned recordings" in (tmp_path / "rep" / "report.md").read_text()
    assert "s2_sensor" in (tmp_path / "rep" / "report.md").read_text()


def test_full_disk_while_caching_names_the_cache(
    world: World, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    import sensor_removal.training.frame_cache as frame_cache

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(frame_cache.np, "save", full)
    from sensor_removal.training.data import FramesDataModule

    dm = FramesDataModule(
        str(world.manifest), fraction=0.5, load_size=36, crop_size=32, num_workers=0, cache_dir=str(world.out / "cache")
    )
    with pytest.raises(frame_cache.FrameCacheError, match="No space left on device") as info:
        dm.prepare_data()
    assert str(world.out / "cache") in str(info.value)
    assert list((world.out / "cache").iterdir()) == []  # no half-written cache
    # Through the CLI: exit 2 and the message, no traceback.
    code = run_main(
        sr_main,
        _fit(
            world,
            "--trainer.logger",
            "false",
            "--trainer.callbacks",
            "[]",
            "--trainer.max_epochs",
            "1",
            "--trainer.accelerator",
            "cpu",
            "--data.cache_dir",
            str(world.out / "cache"),
        ),
    )
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(world.out / "cache") in err and "No space left on device" in err


def test_resume_with_the_checkpoints_options_passes_the_check(world: World) -> None:
    from sensor_removal.core.checkpoint import read_checkpoint, resume_differences
    from sensor_removal.training.module import CycleGAN

    ckpt = read_checkpoint(world.ckpt)
    same = dict(CycleGAN(ngf=4, ndf=4, n_blocks=1).hparams)
    data = {**ckpt["datamodule_hyper_parameters"], "num_workers": 4, "cache_dir": "/elsewhere"}
    assert resume_differences(ckpt, same, data) == []
    assert resume_differences(ckpt, {**same, "lr": 1e-3}, data) == ["--model.lr: 0.001 now, 0.0003 in the checkpoint"]


def test_video_writer_that_cannot_open_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Also what Ctrl-C / SIGTERM while a writer opens would leave: the same cleanup path."""
    from sensor_removal.core.video import VideoError, VideoWriter

    with pytest.raises(VideoError, match="unknown codec"):
        VideoWriter(tmp_path / "x.mp4", 10.0, 32, 32, codec="h265")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_caching_writes_nothing_into_the_run(
    world: World, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """With the shipped config's CSV logger and interrupt checkpoint: no interrupted.ckpt,
    no log files: the cache is built before anything of the run is written."""
    import sensor_removal.training.frame_cache as frame_cache

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(frame_cache.np, "save", full)
    config = world.root / "run.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 1\n  accelerator: cpu\n  enable_progress_bar: false\n"
        "  logger:\n    - class_path: pytorch_lightning.loggers.CSVLogger\n"
        "      init_args: {save_dir: '${....default_root_dir}', name: csv}\n"
        "  callbacks:\n    - class_path: sensor_removal.training.callbacks.InterruptCheckpoint\n"
        "      init_args: {dirpath: '${....default_root_dir}/checkpoints', filename: interrupted}\n"
    )
    code = run_main(sr_main, [*_fit(world, "--data.cache_dir", str(world.out / "cache")), "--config", str(config)])
    err = capfd.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert [p for p in (world.out / "run").rglob("*") if p.is_file()] == []
