"""A population warm start (ours): ``fit`` on a list of manifests pools the subjects'
frames; ``--model.init_from`` starts a subject's fit from that model's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sensor_removal.cli.commands import main
from sensor_removal.cluster.spec import load_sweep
from sensor_removal.cluster.task import FitTask
from sensor_removal.core.checkpoint import NORMAL_REFERENCE_KEY, CheckpointError, resume_differences
from sensor_removal.training.data import FramesDataModule
from sensor_removal.training.module import CycleGAN
from sensor_removal.training.pool import ConcatFrames, PoolSettingsError
from sensor_removal.training.warmstart import init_state
from tests.checkpoints import write_checkpoint
from tests.videos import make_video

TINY_MODEL = {"ngf": 4, "ndf": 4, "n_blocks": 1}
DATA = {"fraction": 0.5, "load_size": 36, "crop_size": 32, "num_workers": 0}
#: Frames per recording: subject a's recordings have 40, subject b's 30.
FRAMES = {"a": 40, "b": 30}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two subjects (a, b) of one normal and one sensor recording each, and a tiny fit
    config without a manifest."""
    d = tmp_path_factory.mktemp("warmstart")
    for k, (subject, n) in enumerate(FRAMES.items()):
        (d / subject).mkdir()
        recs = []
        for i, (name, cond) in enumerate([("n1", "normal"), ("s1", "sensor")]):
            make_video(d / subject / f"{name}.mp4", n=n, width=64, height=48, seed=10 * k + i)
            recs.append({"name": name, "path": f"{name}.mp4", "session": 1, "condition": cond, "bbox": [10, 4, 36, 36]})
        (d / subject / "manifest.yaml").write_text(yaml.safe_dump({"subject": subject, "recordings": recs}))
    (d / "tiny.yaml").write_text(
        """
subject: pop
trainer:
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {save_last: true, filename: "epoch{epoch:03d}", auto_insert_metric_name: false}
model: {ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1, epochs_decay: 0}
data: {fraction: 0.5, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}
"""
    )
    return d


def _manifests(d: Path) -> list[str]:
    return [str(d / s / "manifest.yaml") for s in FRAMES]


@pytest.fixture(scope="module")
def population(two: Path) -> Path:
    """The last checkpoint of a one-epoch population fit of both subjects."""
    run = two / "pop"
    argv = ["fit", "--config", str(two / "tiny.yaml"), "--trainer.default_root_dir", str(run)]
    assert main([*argv, "--data.manifest", "[" + ", ".join(_manifests(two)) + "]"]) == 0
    return run / "checkpoints" / "last.ckpt"


def test_list_of_manifests_pools_each_subjects_frames(two: Path) -> None:
    """Each subject's frames are sampled, cached and split as for its own fit; the pool is
    their concatenation, per domain and per split (50 % of 40 and of 30 frames)."""
    pooled = FramesDataModule(_manifests(two), **DATA)
    singles = [FramesDataModule(m, **DATA) for m in _manifests(two)]
    pooled.setup()
    for dm in singles:
        dm.setup()
    assert [s.subject for s in pooled.subjects] == ["a", "b"]
    for domain in ("sensor", "normal"):
        counts = [len(dm.frames(domain, "train")) + len(dm.frames(domain, "val")) for dm in singles]
        assert counts == [20, 15]
        for split in ("train", "val"):
            want = np.concatenate([dm.frames(domain, split) for dm in singles])
            np.testing.assert_array_equal(pooled.frames(domain, split), want)
    # The per-subject caches are the single-subject fits' (the same folders).
    assert pooled.cache is not None and singles[0].cache is not None and singles[1].cache is not None
    assert pooled.cache.paths == [singles[0].cache.path, singles[1].cache.path]  # type: ignore[union-attr]
    # 90 % of 20 and of 15 (split_train_val rounds the validation share: 2 and 2).
    assert [len(dm.frames("sensor", "train")) for dm in singles] == [18, 13]
    assert len(pooled.train_dataloader().dataset) == 18 + 13
    assert pooled.normal_reference() is None  # a population's reference is no subject's
    assert singles[0].normal_reference() is not None
    # Held-out frames are spread over the subjects: 3 + 2.
    assert len(pooled.heldout_frames("normal", 5)) == 5


def test_concat_frames_reads_rows_across_parts() -> None:
    a, b = np.arange(6).reshape(3, 2), np.arange(10, 14).reshape(2, 2)
    c = ConcatFrames([a, b])
    assert len(c) == 5 and c.shape == (5, 2)
    np.testing.assert_array_equal(c[3], b[0])
    np.testing.assert_array_equal(c[np.array([4, 0, 2])], np.stack([b[1], a[0], a[2]]))
    np.testing.assert_array_equal(np.asarray(c), np.concatenate([a, b]))
    with pytest.raises(IndexError):
        c[5]


def test_a_manifest_listed_twice_is_refused(two: Path) -> None:
    m = _manifests(two)[0]
    with pytest.raises(PoolSettingsError, match=f"data.manifest: {m} is listed twice"):
        FramesDataModule([m, m], **DATA)


def test_population_checkpoint_has_no_reference_and_records_the_list(two: Path, population: Path) -> None:
    ckpt = torch.load(population, map_location="cpu", weights_only=True)
    assert NORMAL_REFERENCE_KEY not in ckpt
    assert ckpt["datamodule_hyper_parameters"]["manifest"] == _manifests(two)
    # The resume check compares the list path by path (and order matters: another pool).
    data = dict(ckpt["datamodule_hyper_parameters"])
    assert resume_differences(ckpt, {}, data) == []
    assert resume_differences(ckpt, {}, {**data, "manifest": _manifests(two)[::-1]})
    assert resume_differences(ckpt, {}, {**data, "manifest": _manifests(two)[0]})


def test_population_checkpoint_cleans_only_a_named_manifest(population: Path, tmp_path: Path) -> None:
    """The cleaner loads a population model; it cleans no default subject."""
    from sensor_removal.cleaning import CleanError, clean_subject, load_generator
    from sensor_removal.cleaning.options import CleanOptions

    assert load_generator(population)[1].manifest is None
    with pytest.raises(CleanError, match="checkpoint records no manifest; pass --manifest"):
        clean_subject(population, None, tmp_path / "c", options=CleanOptions(device="cpu", progress=False))


def test_init_from_copies_the_four_networks(population: Path) -> None:
    """After ``setup("fit")`` (before any step) every weight is the checkpoint's; a module
    built without ``init_from`` differs (so the comparison can fail)."""
    saved = torch.load(population, map_location="cpu", weights_only=True)["state_dict"]
    fresh = CycleGAN(**TINY_MODEL)
    fresh.setup("fit")
    assert any(not torch.equal(v, saved[k]) for k, v in fresh.state_dict().items() if k in saved)
    model = CycleGAN(**TINY_MODEL, init_from=str(population))
    model.setup("fit")
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in state.items():
        assert torch.equal(value, saved[key]), key


def test_fine_tune_from_the_population_model(two: Path, population: Path) -> None:
    """``fit --model.init_from`` on one subject trains and stores that subject's reference."""
    run = two / "fine"
    argv = ["fit", "--config", str(two / "tiny.yaml"), "--trainer.default_root_dir", str(run)]
    assert main([*argv, "--data.manifest", _manifests(two)[0], "--model.init_from", str(population)]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["init_from"] == str(population)
    assert NORMAL_REFERENCE_KEY in ckpt
    assert ckpt["global_step"] > 0


def test_mismatched_architecture_names_the_field_and_file(population: Path) -> None:
    with pytest.raises(CheckpointError, match=r"hyper_parameters\.ngf is 4 in the checkpoint but 8") as err:
        CycleGAN(**{**TINY_MODEL, "ngf": 8}, init_from=str(population)).setup("fit")
    assert str(population) in str(err.value)
    with pytest.raises(CheckpointError, match=r"n_layers_d is 3 in the checkpoint but 2"):
        CycleGAN(**TINY_MODEL, n_layers_d=2, init_from=str(population)).setup("fit")
    with pytest.raises(CheckpointError, match=r"generator is 'resnet' in the checkpoint but 'attention'"):
        CycleGAN(**TINY_MODEL, generator="attention", init_from=str(population)).setup("fit")
    with pytest.raises(CheckpointError, match=r"crop_size is 32 in the checkpoint but 64 in this fit"):
        init_state(str(population), dict(CycleGAN(**TINY_MODEL).hparams), 64)


def test_missing_init_from_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError, match=f"--model.init_from: {missing}: checkpoint file not found"):
        CycleGAN(**TINY_MODEL, init_from=str(missing)).setup("fit")


def test_resume_ignores_init_from(two: Path, population: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """A ``--ckpt_path`` resume continues its own weights: ``init_from`` is not loaded —
    neither one given on the command line nor the one the checkpoint's options record
    (Lightning copies those back), even when that file is gone (a requeued sweep task
    whose population checkpoint was removed). A fresh fit refuses the missing file."""
    start = tmp_path / "pop.ckpt"
    start.write_bytes(population.read_bytes())
    run = tmp_path / "run"
    argv = ["fit", "--config", str(two / "tiny.yaml"), "--trainer.default_root_dir", str(run)]
    argv += ["--data.manifest", _manifests(two)[0]]
    assert main([*argv, "--model.init_from", str(start)]) == 0
    start.unlink()
    capfd.readouterr()
    assert main([*argv, "--trainer.default_root_dir", str(tmp_path / "new"), "--model.init_from", str(start)]) == 2
    assert f"--model.init_from: {start}: checkpoint file not found" in capfd.readouterr().err
    for extra in ([], ["--model.init_from", str(tmp_path / "other.ckpt")]):
        epochs = 2 if not extra else 3
        assert main([*argv, "--ckpt_path", "last", f"--trainer.max_epochs={epochs}", *extra]) == 0
        # (Lightning has put the checkpoint's own init_from over the command line's.)
        assert f"--model.init_from {start} is not used" in capfd.readouterr().out
        last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert last["epoch"] == epochs - 1
        assert last["hyper_parameters"]["init_from"] == str(start)  # still says where training began


def test_sweep_init_from_reaches_the_fit_arguments(two: Path, tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "pop.ckpt", two / "a" / "manifest.yaml")
    sweep = tmp_path / "sweep.yaml"
    doc = {"subjects": _manifests(two), "configs": [str(two / "tiny.yaml")], "root": str(tmp_path / "out")}
    sweep.write_text(yaml.safe_dump({**doc, "init_from": "pop.ckpt"}))  # relative to the sweep file
    spec = load_sweep(sweep)
    assert spec.init_from == ckpt.resolve()
    for task in spec.tasks():
        args = FitTask(task, spec.configs).cli_args()
        i = args.index("--model.init_from")
        assert args[i + 1] == str(ckpt.resolve())
    sweep.write_text(yaml.safe_dump(doc))
    assert "--model.init_from" not in FitTask(load_sweep(sweep).tasks()[0], ()).cli_args()


def test_post_fit_benchmark_skips_a_population_fit(two: Path) -> None:
    """A population model belongs to no one subject: one warning, nothing cleaned."""
    from types import SimpleNamespace

    from sensor_removal.workflows.postfit import PostFitBenchmark, population_fit

    hook = PostFitBenchmark(metrics=["groundtruth"], device="cpu")
    pooled = SimpleNamespace(is_global_zero=True, datamodule=SimpleNamespace(hparams={"manifest": _manifests(two)}))
    single = SimpleNamespace(datamodule=SimpleNamespace(hparams={"manifest": _manifests(two)[0]}))
    assert population_fit(pooled) and not population_fit(single)  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="post-fit benchmark skipped: a population fit"):
        hook.on_fit_end(pooled, None)  # type: ignore[arg-type]
    assert hook.outcome is not None and hook.outcome.error is None and hook.outcome.clean_dir is None
