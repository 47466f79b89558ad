"""The app in a real browser: Playwright driving Debian's headless Chromium against a
real ``python -m lightning_app`` server on a free localhost port.

The run the app shows is made here: a tiny fit (32 px, ngf 4, 1 epoch) of a short
synthetic subject through the normal CLI, whose post-fit hook cleans the sensor videos;
then the evaluation protocol adds AU / emotion series with a deterministic stand-in for
py-feat (py-feat itself is tested in tests/test_facial.py) and the report.

Chromium: ``/usr/bin/chromium`` (Playwright's own browser download is not used). When it
is missing and we run as root with apt, the session installs it (CI); otherwise the
tests are skipped with the reason. Screenshots of every tab are saved under the pytest
temp folder (the path is printed).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Upload limits the test server runs with (small, so "oversized" is cheap to make).
MAX_UPLOAD_MB = 1

TINY_CONFIG = """\
subject: tiny
trainer:
  max_epochs: 1
  accelerator: cpu
  log_every_n_steps: 1
  enable_model_summary: false
  logger:
    - class_path: pytorch_lightning.loggers.CSVLogger
      init_args: {{save_dir: "${{....default_root_dir}}", name: csv}}
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
    - class_path: sensor_removal.training.callbacks.ImageGrid
      init_args: {{num_frames: 2}}
    - class_path: sensor_removal.workflows.postfit.PostFitBenchmark
      init_args: {{metrics: [groundtruth], batch_size: 8, device: cpu}}
    - class_path: sensor_removal.training.callbacks.InterruptCheckpoint
      init_args: {{dirpath: "${{....default_root_dir}}/checkpoints", filename: interrupted}}
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: {constant}, epochs_decay: 0, pool_size: 4}}
data: {{fraction: 0.25, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
"""


# ------------------------------------------------------------------ browser and server


def _install_chromium() -> str | None:
    """Install Debian's chromium with apt when possible; the reason when not."""
    if CHROMIUM.is_file():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}"
    return None if CHROMIUM.is_file() else f"apt installed chromium but {CHROMIUM} is still missing"


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium browser (Playwright over the system binary)."""
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    why = _install_chromium()
    if why:
        print(f"\nbrowser tests skipped: {why}")
        pytest.skip(why)
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except sync_api.Error as exc:  # e.g. a snap wrapper that cannot run in a container
            why = f"{CHROMIUM} does not start under Playwright: {str(exc).splitlines()[0]}"
            print(f"\nbrowser tests skipped: {why}")
            pytest.skip(why)
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _SeriesStandIn:
    """Deterministic AU / emotion series per video, in place of py-feat (tested in
    tests/test_facial.py): N, S and C get differently phased curves."""

    stride = 1

    def cache_file(self, path, bbox, size, cache_dir):
        return Path(cache_dir) / f"{Path(path).stem}.csv"

    def save_series(self, series, cache_file):
        pass

    def load_series(self, cache_file, fps, path):
        """Served as if from the series cache: the shared decoding pass decodes nothing."""
        return self.analyze_video(path)

    def analyze_video(self, path, bbox=None, frame_range=None, cache_dir=None):
        import numpy as np
        import pandas as pd

        from evaluation.metrics.facial import AU_COLUMNS, EMOTION_COLUMNS, FACE_COLUMNS, FacialSeries
        from sensor_removal.core.video import probe

        path = Path(path)
        info = probe(path)
        t = np.arange(info.frame_count)
        phase = 1.5 if "clean" in str(path.parent) else (3.0 if "sensor" in path.stem else 0.0)
        cols = list(AU_COLUMNS) + list(EMOTION_COLUMNS)
        values = pd.DataFrame(
            {c: 0.5 + 0.4 * np.sin((t + phase + i) / 2.0) for i, c in enumerate(cols)}, index=pd.Index(t, name="frame")
        )
        faces = pd.DataFrame(1.0, index=values.index, columns=list(FACE_COLUMNS))
        return FacialSeries(values=values, faces=faces, stride=1, fps=info.fps, path=path)


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory: pytest.TempPathFactory, chromium) -> dict[str, Path]:
    """``data/`` (synthetic subject + tiny config) and ``runs/tiny`` (a trained, cleaned,
    evaluated and reported run)."""
    import evaluation.protocol as protocol
    from evaluation.protocol import run_protocol
    from evaluation.report import make_report
    from evaluation.settings import ProtocolSettings
    from sensor_removal.cli.commands import main as cli_main
    from sensor_removal.synthetic import make_subject

    base = tmp_path_factory.mktemp("app")
    data, runs = base / "data", base / "runs"
    manifest = make_subject(data / "synth", seconds=2.0, fps=8.0, size=(64, 64), seed=0)
    (data / "configs").mkdir()
    config = data / "configs" / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(constant=1))
    yaml.safe_load(config.read_text())
    run = runs / "tiny"
    torch.set_num_threads(1)
    assert (
        cli_main(
            ["fit", "--config", str(config), "--data.manifest", str(manifest), "--trainer.default_root_dir", str(run)]
        )
        == 0
    )
    with pytest.MonkeyPatch.context() as mp:  # the stand-in needs no py-feat weights
        mp.setattr(protocol, "check_weights", lambda metrics, **kw: [])
        settings = ProtocolSettings(metrics=("groundtruth", "facial"), max_shift_s=0.5)
        run_protocol(
            manifest,
            run / "clean" / "manifest.yaml",
            run / "evaluation",
            settings,
            facial_analyzer=lambda model: _SeriesStandIn(),
            log=lambda _: None,
        )
    make_report([run / "evaluation"], run / "report")
    assert (run / "evaluation" / "series" / "s1_normal.csv").is_file()
    return {"data": data, "runs": runs, "run": run, "manifest": manifest, "config": config}


@pytest.fixture(scope="module")
def server(app_dirs: dict[str, Path]):
    """``python -m lightning_app`` on a free port; yields its base URL."""
    port = _free_port()
    # One OpenMP thread: the fits the app starts are tiny, and spinning threads on a
    # busy CI box make them many times slower.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "GRADIO_TEMP_DIR": str(app_dirs["runs"].parent / "gradio_tmp"),
    }
    log = open(app_dirs["runs"].parent / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightning_app",
            "--runs",
            str(app_dirs["runs"]),
            "--data",
            str(app_dirs["data"]),
            "--port",
            str(port),
            "--max-upload-mb",
            str(MAX_UPLOAD_MB),
            "--max-upload-seconds",
            "5",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
    if proc.poll() is not None:
        pytest.fail("app server did not start:\n" + (app_dirs["runs"].parent / "server.log").read_text()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.getbasetemp() / "app-screenshots"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def page(chromium, server):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server)
    pg.wait_for_selector("#runs-table")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _screenshot(pg, shots: Path, name: str, full_page: bool = True) -> Path:
    path = shots / f"{name}.png"
    pg.screenshot(path=str(path), full_page=full_page)
    print(f"\nscreenshot of the {name} tab: {path}")
    return path


def _tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=name).click()


def _choose(pg, elem_id: str, text: str) -> None:
    """Pick the option containing ``text`` in the Gradio dropdown ``elem_id``."""
    pg.locator(f"#{elem_id} input").click()
    pg.get_by_role("option", name=text, exact=True).click()


# ----------------------------------------------------------------------------- tests


@pytest.mark.browser
def test_runs_table_lists_run_and_loss_plot_renders(page, shots: Path) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#runs-table")).to_contain_text("tiny")
    expect(page.locator("#runs-table")).to_contain_text("1/1")
    expect(page.locator("#runs-table")).to_contain_text("finished")
    img = page.locator("#runs-loss img")
    expect(img).to_be_visible(timeout=30_000)
    # A rendered, non-blank image: real pixel size and more than one colour.
    page.wait_for_function(
        "() => { const i = document.querySelector('#runs-loss img'); return i && i.complete && i.naturalWidth > 100; }"
    )
    distinct = page.evaluate(
        """() => { const i = document.querySelector('#runs-loss img'); const c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; const s = new Set();
        for (let k = 0; k < d.length; k += 4 * 97) s.add(d[k] + ',' + d[k + 1] + ',' + d[k + 2]); return s.size; }"""
    )
    assert distinct > 5
    expect(page.locator("#runs-grid img")).to_be_visible()
    _screenshot(page, shots, "runs")


@pytest.mark.browser
def test_review_plays_three_videos_and_slider_moves_cursor(page, shots: Path) -> None:
    from playwright.sync_api import expect

    _tab(page, "Review")
    expect(page.locator("#review-html video")).to_have_count(3, timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#review-html video')].every(v => v.readyState >= 1 && v.duration > 0)",
        timeout=30_000,
    )
    durations = page.evaluate("() => [...document.querySelectorAll('#review-html video')].map(v => v.duration)")
    assert len(durations) == 3 and all(d > 0 for d in durations)
    cursor = page.locator("#review-html #review-cursor")
    expect(cursor).to_have_count(1)
    x_before = cursor.bounding_box()["x"]
    slider = page.locator("#review-html input.review-slider")
    last = int(slider.get_attribute("max"))
    slider.fill(str(last))
    expect(page.locator("#review-html .review-frame")).to_contain_text(f"frame {last}")
    x_after = cursor.bounding_box()["x"]
    assert x_after > x_before + 50, (x_before, x_after)
    times = page.evaluate("() => [...document.querySelectorAll('#review-html video')].map(v => v.currentTime)")
    assert all(t > 0.5 for t in times), times
    expect(page.locator("#review-report")).to_contain_text("PSNR")
    # Play: all three run together from the slider's frame, and the slider follows.
    slider.fill("0")
    page.locator("#review-html .review-play").click()
    page.wait_for_function("() => +document.querySelector('#review-html .review-slider').value >= 3", timeout=15_000)
    page.locator("#review-html .review-play").click()  # pause
    times = page.evaluate("() => [...document.querySelectorAll('#review-html video')].map(v => v.currentTime)")
    assert min(times) > 0.2 and max(times) - min(times) < 0.3, times
    slider.fill(str(last // 2))  # the README's picture: cursor mid-way
    expect(page.locator("#review-html .review-frame")).to_contain_text(f"frame {last // 2}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#review-html video')].every(v => !v.seeking && v.readyState >= 2)"
    )
    _screenshot(page, shots, "review", full_page=False)


@pytest.mark.browser
def test_train_starts_fit_then_stop_leaves_resumable_checkpoint(page, shots: Path, app_dirs) -> None:
    from playwright.sync_api import expect

    _tab(page, "Train")
    _choose(page, "train-config", "configs/tiny.yaml")
    _choose(page, "train-manifest", "synth/manifest.yaml")
    page.locator("#train-name textarea, #train-name input").first.fill("fromapp")
    page.locator("#train-epochs input").fill("1")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("Started", timeout=30_000)
    progress = page.locator("#train-progress textarea")
    expect(progress).to_have_value(re.compile(r"state: running.*step \d+"), timeout=120_000)
    expect(progress).to_have_value(re.compile(r"exited \(0\).*last\.ckpt"), timeout=180_000)
    run = app_dirs["runs"] / "fromapp"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    _screenshot(page, shots, "train")
    _tab(page, "Runs")
    expect(page.locator("#runs-table")).to_contain_text("fromapp", timeout=10_000)

    # Resume with many more epochs, stop while it trains: a resumable checkpoint is left.
    _tab(page, "Train")
    page.locator("#train-epochs input").fill("500")
    page.locator("#train-resume").click()
    expect(page.locator("#train-status")).to_contain_text("Resumed", timeout=30_000)
    expect(progress).to_have_value(re.compile(r"state: running · epoch [1-9]"), timeout=120_000)
    page.locator("#train-stop").click()
    expect(page.locator("#train-status")).to_contain_text("interrupted.ckpt", timeout=90_000)
    ckpt = torch.load(run / "checkpoints" / "interrupted.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] >= 1 and ckpt["global_step"] > 0 and "state_dict" in ckpt and "loops" in ckpt
    expect(page.locator("#runs-table")).to_contain_text("fromapp")


@pytest.mark.browser
def test_try_cleans_an_upload_and_rejects_bad_ones(page, shots: Path, app_dirs, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    upload = page.locator("#try-upload input[type=file]")
    message = page.locator("#try-message")
    _fresh_try(page)
    # Not a video, though named like one: our message, no traceback.
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are notes, not a video\n" * 20)
    upload.set_input_files(str(fake))
    expect(message).to_contain_text("not a readable video", timeout=30_000)
    # Larger than the limit: refused with a message naming the limit.
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 1024 * 1024))
    _fresh_try(page)
    upload.set_input_files(str(big))
    expect(page.get_by_text(re.compile(r"exceed|maximum|too large", re.I)).first).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()
    # A real clip: the cleaned clip comes back and plays.
    _fresh_try(page)
    clip = app_dirs["manifest"].parent / "s1_sensor_a.mp4"
    page.locator("#try-upload input[type=file]").set_input_files(str(clip))
    expect(page.locator("#try-w input")).to_have_value("64", timeout=30_000)  # centred square box proposed
    page.locator("#try-clean").click()
    expect(page.locator("#try-message")).to_contain_text("Cleaned clip", timeout=120_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#try-video video'); return v && v.duration > 0; }", timeout=30_000
    )
    assert "Traceback" not in page.content()
    _screenshot(page, shots, "try")
    # Every upload is gone from the server once used or rejected.
    uploaded = {p.name for p in (app_dirs["runs"].parent / "gradio_tmp").rglob("*") if p.is_file()}
    assert not uploaded & {"notes.mp4", "big.mp4", "s1_sensor_a.mp4"}, uploaded


def _fresh_try(pg) -> None:
    """The page reloaded on the Try tab, with an empty upload field."""
    pg.reload()
    pg.wait_for_selector("#runs-table")
    _tab(pg, "Try")


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


@pytest.mark.parametrize(
    "path",
    [
        "/files/runs/../../etc/passwd",
        "/files/runs/%2e%2e/%2e%2e/etc/passwd",
        "/files/data/..%2f..%2f..%2fetc%2fpasswd",
        "/files/runs/tiny/../../../../../../etc/passwd",
        "/files/etc/passwd",
        "/files/runs//etc/passwd",
    ],
)
def test_file_route_refuses_paths_outside_the_served_folders(server, path: str) -> None:
    status, body = _raw_get(server, path)
    assert status in (403, 404), (status, body[:200])
    assert b"root:" not in body


def test_file_route_serves_run_files_with_ranges(server) -> None:
    status, body = _raw_get(server, "/files/runs/tiny/grids/epoch_000.png")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/files/data/synth/s1_normal.mp4", headers={"Range": "bytes=0-99"})
    resp = conn.getresponse()
    assert resp.status == 206 and len(resp.read()) == 100  # browsers seek in videos this way


def test_make_app_runs_the_app_command() -> None:
    """``make app RUNS=… DATA=…`` runs the command the server fixture above starts."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "app", "RUNS=some/runs", "DATA=."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"python -m lightning_app --runs some/runs --data \.$", proc.stdout, flags=re.MULTILINE), (
        proc.stdout
    )
