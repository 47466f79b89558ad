"""A non-editable install (a wheel in a fresh venv) has the configs and every command.

The venv reuses the already installed dependencies (a ``.pth`` line to this
interpreter's site-packages) and gets the project wheel with ``--no-deps``: seconds,
not a 5 GB install. It runs from a folder without the repository, so only what the
wheel ships can be found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "runs", "demo", ".pytest_cache"
)


def _can_build_without_isolation() -> bool:
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel; returns its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_SKIP)
    # Without setuptools here, pip fetches it from the registry into an isolated build env.
    isolation = ["--no-build-isolation"] if _can_build_without_isolation() else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(tmp / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel_file,) = (tmp / "dist").glob("sensor_removal-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies already installed here, behind the venv's own site-packages.
    (site / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel_file)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_ships_the_configs_and_finds_them(installed: Path, tmp_path: Path) -> None:
    where = _run(
        installed,
        tmp_path,
        "-c",
        "import sensor_removal, sensor_removal.core.configs as c; "
        "print(sensor_removal.__file__); print(c.config_file('default.yaml'))",
    )
    assert where.returncode == 0, where.stderr[-2000:]
    package, default = where.stdout.split()
    venv_dir = installed.parent.parent
    assert Path(package).is_relative_to(venv_dir) and Path(default).is_relative_to(venv_dir)  # not the checkout
    assert Path(default).is_file()
    for name in ("demo.yaml", "subjects/subj07.yaml"):
        assert (Path(default).parent / name).is_file()

    # fit --print_config shows the paper defaults, logger and callbacks from the shipped default.yaml.
    cfg = _run(installed, tmp_path, "-m", "sensor_removal", "fit", "--data.manifest", "m.yaml", "--print_config")
    assert cfg.returncode == 0, cfg.stderr[-2000:]
    doc = yaml.safe_load(cfg.stdout)
    assert doc["trainer"]["max_epochs"] == 30
    assert [lg["class_path"].rsplit(".", 1)[-1] for lg in doc["trainer"]["logger"]] == ["CSVLogger", "WandbLogger"]
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in doc["trainer"]["callbacks"]]
    assert {"PerceptualMetrics", "RunCheckpoint", "ImageGrid", "PostFitBenchmark"} <= set(callbacks)

    # The demo's default config resolves inside the installed package too.
    demo = _run(installed, tmp_path, "-m", "sensor_removal", "demo", "--help")
    assert demo.returncode == 0 and "demo.yaml" in demo.stdout
    top = _run(installed, tmp_path, "-m", "sensor_removal", "--help")
    assert top.returncode == 0 and "clean" in top.stdout and "evaluate" in top.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    script = subprocess.run(
        [str(installed.parent / "sensor-removal"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and script.stdout == top.stdout  # the console script is the same entry point


def test_wheel_ships_the_paper_values(installed: Path, tmp_path: Path) -> None:
    """The report prints the paper's published blocks from a data file inside the package."""
    r = _run(
        installed,
        tmp_path,
        "-c",
        "from evaluation.report.published import PUBLISHED_CSV, load_published; load_published(); print(PUBLISHED_CSV)",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(r.stdout.strip()).is_relative_to(installed.parent.parent) and Path(r.stdout.strip()).is_file()
