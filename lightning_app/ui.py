"""The Gradio page: four tabs (Runs, Train, Review, Try) over one :class:`AppContext`.

Each handler reads the run folders afresh (no state besides the fits this app started),
checks every path it is given against the served folders, and turns expected failures
into a message on the page instead of an exception.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from lightning_app import review, runs, training, tryout
from lightning_app.paths import ServedRoots

#: Keeps the three videos, the slider and the plot cursor of the Review tab in sync.
#: Delegated listeners on ``document``, so they survive the tab's re-renders.
PAGE_JS = """
() => {
  const fpsOf = (box) => parseFloat(box.dataset.fps) || 25;
  const show = (box, frame) => {
    const fps = fpsOf(box), t = frame / fps;
    const label = box.querySelector('.review-frame');
    if (label) label.textContent = `frame ${frame} · ${t.toFixed(2)} s`;
    const plot = box.querySelector('.review-plot');
    const cursor = plot && plot.querySelector('#review-cursor');
    if (cursor) {
      const d = plot.dataset, t0 = +d.t0, t1 = +d.t1, x0 = +d.x0, x1 = +d.x1;
      const x = (Math.min(Math.max(t, t0), t1) - t0) / ((t1 - t0) || 1) * (x1 - x0);
      cursor.setAttribute('transform', `translate(${x} 0)`);
    }
  };
  document.addEventListener('input', (ev) => {
    const s = ev.target;
    if (!(s instanceof HTMLInputElement) || !s.classList.contains('review-slider')) return;
    const box = s.closest('.review-box'), frame = +s.value, t = (frame + 0.5) / fpsOf(box);
    box.querySelectorAll('video').forEach((v) => { v.pause(); v.currentTime = Math.min(t, (v.duration || t) - 1e-3); });
    show(box, frame);
  });
  document.addEventListener('click', (ev) => {
    const b = ev.target;
    if (!(b instanceof HTMLElement) || !b.classList.contains('review-play')) return;
    const box = b.closest('.review-box'), vids = [...box.querySelectorAll('video')];
    if (vids.some((v) => !v.paused)) { vids.forEach((v) => v.pause()); return; }
    const t = vids[0].currentTime;
    vids.forEach((v) => { v.currentTime = Math.min(t, (v.duration || t) - 1e-3); v.play(); });
  });
  document.addEventListener('timeupdate', (ev) => {
    const v = ev.target;
    if (!(v instanceof HTMLVideoElement) || v.paused || v.dataset.key !== 'S') return;
    const box = v.closest('.review-box');
    if (!box) return;
    const frame = Math.floor(v.currentTime * fpsOf(box));
    const s = box.querySelector('.review-slider');
    if (s) s.value = String(Math.min(frame, +s.max));
    box.querySelectorAll('video').forEach((o) => {
      if (o !== v && Math.abs(o.currentTime - v.currentTime) > 0.1 && v.currentTime < o.duration) {
        o.currentTime = v.currentTime;
      }
    });
    show(box, Math.min(frame, s ? +s.max : frame));
  }, true);
}
"""

CSS = """
.review-videos { display: flex; gap: 8px; }
.review-videos figure { flex: 1; margin: 0; text-align: center; }
.review-videos video { width: 100%; height: 240px; background: #000; }
.review-controls { display: flex; gap: 12px; align-items: center; margin: 8px 0; }
.review-slider { flex: 1; }
.review-plot svg { width: 100%; height: auto; }
"""


@dataclass
class AppContext:
    """What every handler needs: the served folders, the configs folder, the fits this
    app started, the upload limits and a private folder for Try results."""

    roots: ServedRoots
    conf: Path
    limits: tryout.UploadLimits = field(default_factory=tryout.UploadLimits)
    launcher: training.FitLauncher = field(init=False)
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.launcher = training.FitLauncher(self.roots.runs)
        self.work = Path(tempfile.mkdtemp(prefix="sensor-removal-app-"))

    # ---------------------------------------------------------------- lookups
    def run_names(self) -> list[str]:
        return [p.relative_to(self.roots.runs).as_posix() for p in runs.find_runs(self.roots.runs)]

    def run_path(self, name: str | None) -> Path | None:
        """A run folder named by the page, or None (also for any path outside --runs)."""
        if not name:
            return None
        try:
            path = self.roots.resolve("runs", name)
        except ValueError:
            return None
        return path if path.is_dir() and runs.is_run(path) else None

    def configs(self) -> list[tuple[str, str]]:
        return [(self._label(p), str(p)) for p in training.find_configs(self.conf, self.roots.data)]

    def manifests(self) -> list[tuple[str, str]]:
        return [(self._label(p), str(p)) for p in training.find_manifests(self.roots.data)]

    def checkpoints(self) -> list[tuple[str, str]]:
        out = []
        for run in runs.find_runs(self.roots.runs):
            out += [(p.relative_to(self.roots.runs).as_posix(), str(p)) for p in runs.checkpoints(run)]
        return out

    def _label(self, p: Path) -> str:
        for base in (self.conf.parent, self.roots.data):
            if base is not None and p.resolve().is_relative_to(base.resolve()):
                return p.resolve().relative_to(base.resolve()).as_posix()
        return p.name


def _read_rgb(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    import cv2

    img = cv2.imread(str(path))
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------- Runs tab


def runs_table(ctx: AppContext) -> list[list]:
    rows = []
    for run in runs.find_runs(ctx.roots.runs):
        name = run.relative_to(ctx.roots.runs).as_posix()
        rows.append(runs.summarize_run(run, running=ctx.launcher.running(name)).row(ctx.roots.runs))
    return rows


def run_details(ctx: AppContext, name: str | None):
    run = ctx.run_path(name)
    if run is None:
        return None, None, "Pick a run."
    df = runs.read_metrics(run)
    fig = runs.loss_figure(df, run.name) if len(df) else None
    grid = runs.latest_grid(run)
    note = f"`{run.name}`: {len(df)} logged rows" + (f", grid `{grid.name}`" if grid else ", no grid yet")
    if not len(df):
        note += " — no CSV log (`csv/version_*/metrics.csv`): add Lightning's CSVLogger to the config's loggers."
    return fig, _read_rgb(grid), note


def live_choices(timer: gr.Timer, dropdown: gr.Dropdown, fetch, initial: list) -> None:
    """Refresh ``dropdown``'s choices from ``fetch()`` on every tick, but only when they
    changed (a re-render would close an open dropdown and drop the user's pick)."""
    last = gr.State(initial)

    def refresh(value, before):
        now = fetch()
        if now == before:
            return gr.skip(), before
        values = [c if isinstance(c, str) else c[1] for c in now]
        return gr.update(choices=now, value=value if value in values else (values[0] if values else None)), now

    timer.tick(refresh, inputs=[dropdown, last], outputs=[dropdown, last], show_progress="hidden")


# ------------------------------------------------------------------------ Train tab


def start_fit(
    ctx: AppContext, name: str, config: str, manifest: str, epochs: float, overrides: str, resume: bool = False
) -> str:
    if config not in {v for _, v in ctx.configs()}:
        return "Pick a config from the list."
    if manifest not in {v for _, v in ctx.manifests()}:
        return "Pick a manifest from the list (manifests under --data)."
    try:
        fit = ctx.launcher.start(
            (name or "").strip(), Path(config), Path(manifest), int(epochs or 0), overrides or "", resume=resume
        )
    except training.LaunchError as exc:
        return f"Not started: {exc}"
    verb = "Resumed" if resume else "Started"
    return f"{verb} `{fit.name}` (pid {fit.popen.pid}); log: `{fit.run.name}/{training.LOG_NAME}`"


def stop_fit(ctx: AppContext, name: str) -> str:
    name = (name or "").strip()
    if not ctx.launcher.running(name):
        return f"`{name}` is not running."
    code = ctx.launcher.stop(name)
    ckpt = runs.resume_checkpoint(ctx.launcher.run_dir(name))
    where = f"resume from `{ckpt.name}`" if ckpt else "no checkpoint was written"
    return f"Stopped `{name}` (exit {code}); {where}."


def fit_progress(ctx: AppContext, name: str):
    name = (name or "").strip()
    try:
        run = ctx.launcher.run_dir(name)
    except training.LaunchError:
        return "", None, ""
    p = ctx.launcher.progress(name)
    ckpts = runs.checkpoints(run) if run.is_dir() else []
    text = p.text() + (f" · checkpoints: {', '.join(c.name for c in ckpts)}" if ckpts else "")
    return text, _read_rgb(runs.latest_grid(run)), p.tail


# ----------------------------------------------------------------------- Review tab


def review_choices(ctx: AppContext, name: str | None):
    run = ctx.run_path(name)
    if run is None:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    try:
        trips = review.triplets(run)
    except review.ReviewError:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    labels = [f"session {t.session}: {t.sensor.name}" for t in trips]
    feats = review.series_features(review.read_series(run, trips[0]))
    return gr.update(choices=labels, value=labels[0]), gr.update(choices=feats, value=feats[0] if feats else None)


def review_view(ctx: AppContext, name: str | None, which: str | None, feature: str | None):
    run = ctx.run_path(name)
    if run is None:
        return "<p>Pick a run.</p>", ""
    report = review.report_markdown(run, ctx.roots)
    try:
        trips = review.triplets(run)
    except review.ReviewError as exc:
        return f"<p>{exc}</p>", report
    labels = [f"session {t.session}: {t.sensor.name}" for t in trips]
    trip = trips[labels.index(which)] if which in labels else trips[0]
    return review.review_html(run, trip, feature, ctx.roots), report


# -------------------------------------------------------------------------- Try tab


def try_preview(ctx: AppContext, upload: str | None):
    """On upload: check it, show its first frame, propose a centred square bbox."""
    if not upload:
        return None, "", gr.skip(), gr.skip(), gr.skip(), gr.skip()
    path = Path(upload)
    try:
        tryout.check_upload(path, ctx.limits)
        frame = tryout.first_frame(path)
    except tryout.UploadRejected as exc:
        path.unlink(missing_ok=True)  # a rejected upload is not kept
        return None, f"**Rejected:** {exc}", gr.skip(), gr.skip(), gr.skip(), gr.skip()
    h, w = frame.shape[:2]
    side = min(h, w) // 2 * 2
    x, y = (w - side) // 2, (h - side) // 2
    return _with_box(frame, (x, y, side, side)), "", x, y, side, side


def _with_box(frame: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    import cv2

    x, y, w, h = bbox
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), max(1, min(frame.shape[:2]) // 100))
    return out


def try_clean(ctx: AppContext, upload: str | None, checkpoint: str | None, x: float, y: float, w: float, h: float):
    """Clean the upload; returns (video update, image update, message). The upload is
    deleted afterwards, also when it is rejected."""
    nothing = (gr.update(value=None), gr.update(value=None))
    if not upload or not Path(upload).is_file():
        return *nothing, "Upload a clip or a frame first (each upload is cleaned once, then deleted)."
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is None or not ckpt.is_file() or not ctx.roots.contains(ckpt) or ckpt.suffix != ".ckpt":
        return *nothing, "Pick a checkpoint from the list (checkpoints under --runs)."
    try:
        bbox = tuple(int(v) for v in (x, y, w, h))
        out = tryout.clean_upload(Path(upload), ckpt, bbox, ctx.limits, ctx.work)  # type: ignore[arg-type]
    except (tryout.UploadRejected, TypeError, ValueError) as exc:
        Path(upload).unlink(missing_ok=True)
        return *nothing, f"**Rejected:** {exc}"
    if out.suffix == ".png":
        image = _read_rgb(out)
        out.unlink()
        return (
            gr.update(value=None, visible=False),
            gr.update(value=image, visible=True),
            f"Cleaned frame with `{ckpt.name}`.",
        )
    return (
        gr.update(value=str(out), visible=True),
        gr.update(value=None, visible=False),
        f"Cleaned clip with `{ckpt.name}` (face crop pasted back).",
    )


# ---------------------------------------------------------------------------- page


def build_blocks(ctx: AppContext) -> gr.Blocks:
    names = ctx.run_names()
    # Gradio's own cache (uploads, results sent to the page) is emptied hourly.
    with gr.Blocks(title="sensor-removal", delete_cache=(600, 3600)) as blocks:
        gr.Markdown("## sensor-removal — train, watch and review")
        with gr.Tabs():
            with gr.Tab("Runs", id="runs"):
                table = gr.Dataframe(
                    headers=runs.TABLE_HEADERS,
                    value=lambda: runs_table(ctx),
                    interactive=False,
                    elem_id="runs-table",
                    wrap=True,
                )
                pick = gr.Dropdown(choices=names, value=names[0] if names else None, label="run", elem_id="runs-pick")
                note = gr.Markdown(elem_id="runs-note")
                with gr.Row():
                    loss = gr.Plot(label="loss curves", elem_id="runs-loss")
                    grid = gr.Image(
                        label="latest image grid (input | translated | cycle)", interactive=False, elem_id="runs-grid"
                    )
                timer = gr.Timer(2.0)
                timer.tick(lambda: runs_table(ctx), outputs=table, show_progress="hidden")
                live_choices(timer, pick, ctx.run_names, names)
                pick.change(lambda n: run_details(ctx, n), inputs=pick, outputs=[loss, grid, note])
                blocks.load(lambda n: run_details(ctx, n), inputs=pick, outputs=[loss, grid, note])

            with gr.Tab("Train", id="train"):
                configs, manifests = ctx.configs(), ctx.manifests()
                with gr.Row():
                    config = gr.Dropdown(
                        choices=configs,
                        value=configs[0][1] if configs else None,
                        label="config",
                        elem_id="train-config",
                    )
                    manifest = gr.Dropdown(
                        choices=manifests,
                        value=manifests[0][1] if manifests else None,
                        label="manifest (under --data)",
                        elem_id="train-manifest",
                    )
                with gr.Row():
                    run_name = gr.Textbox(label="run name (folder under --runs)", value="subject", elem_id="train-name")
                    epochs = gr.Number(label="epochs", value=30, precision=0, minimum=1, elem_id="train-epochs")
                overrides = gr.Textbox(
                    label="overrides (model/data options, e.g. --model.ngf 32 --data.fraction 0.05)",
                    elem_id="train-overrides",
                )
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="train-start")
                    stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
                    resume = gr.Button("Resume", elem_id="train-resume")
                status = gr.Markdown(elem_id="train-status")
                progress = gr.Textbox(label="progress", interactive=False, elem_id="train-progress")
                with gr.Row():
                    tgrid = gr.Image(label="newest grid", interactive=False, elem_id="train-grid")
                    tail = gr.Textbox(
                        label="console (tail)", lines=10, max_lines=12, interactive=False, elem_id="train-log"
                    )
                start.click(
                    lambda *a: start_fit(ctx, *a),
                    inputs=[run_name, config, manifest, epochs, overrides],
                    outputs=status,
                )
                resume.click(
                    lambda *a: start_fit(ctx, *a, resume=True),
                    inputs=[run_name, config, manifest, epochs, overrides],
                    outputs=status,
                )
                stop.click(lambda n: stop_fit(ctx, n), inputs=run_name, outputs=status)
                gr.Timer(1.0).tick(
                    lambda n: fit_progress(ctx, n),
                    inputs=run_name,
                    outputs=[progress, tgrid, tail],
                    show_progress="hidden",
                )

            with gr.Tab("Review", id="review"):
                with gr.Row():
                    rrun = gr.Dropdown(
                        choices=names, value=names[0] if names else None, label="run", elem_id="review-run"
                    )
                    which = gr.Dropdown(label="session: sensor recording", elem_id="review-which")
                    feature = gr.Dropdown(label="AU / emotion", elem_id="review-feature")
                live_choices(timer, rrun, ctx.run_names, names)
                view = gr.HTML(elem_id="review-html")
                report = gr.Markdown(elem_id="review-report")
                rrun.change(lambda n: review_choices(ctx, n), inputs=rrun, outputs=[which, feature])
                for comp in (rrun, which, feature):
                    comp.change(
                        lambda n, w, f: review_view(ctx, n, w, f), inputs=[rrun, which, feature], outputs=[view, report]
                    )
                blocks.load(lambda n: review_choices(ctx, n), inputs=rrun, outputs=[which, feature])

            with gr.Tab("Try", id="try"):
                gr.Markdown(
                    f"Upload a short clip or one frame ({ctx.limits.describe()}), pick a checkpoint and the face box."
                )
                with gr.Row():
                    upload = gr.File(
                        label="clip or frame",
                        file_types=list(tryout.VIDEO_TYPES + tryout.IMAGE_TYPES),
                        type="filepath",
                        elem_id="try-upload",
                    )
                    ckpts = ctx.checkpoints()
                    ckpt = gr.Dropdown(
                        choices=ckpts, value=ckpts[0][1] if ckpts else None, label="checkpoint", elem_id="try-ckpt"
                    )
                with gr.Row():
                    bx = gr.Number(label="bbox x", precision=0, elem_id="try-x")
                    by = gr.Number(label="bbox y", precision=0, elem_id="try-y")
                    bw = gr.Number(label="bbox w", precision=0, elem_id="try-w")
                    bh = gr.Number(label="bbox h", precision=0, elem_id="try-h")
                message = gr.Markdown(elem_id="try-message")
                clean = gr.Button("Clean", variant="primary", elem_id="try-clean")
                with gr.Row():
                    preview = gr.Image(label="first frame and face box", interactive=False, elem_id="try-preview")
                    out_video = gr.Video(label="cleaned clip", interactive=False, elem_id="try-video")
                    out_image = gr.Image(label="cleaned frame", interactive=False, visible=False, elem_id="try-image")
                upload.upload(
                    lambda f: try_preview(ctx, f),
                    inputs=upload,
                    outputs=[preview, message, bx, by, bw, bh],
                    api_name="try_preview",
                )
                clean.click(
                    lambda *a: try_clean(ctx, *a),
                    inputs=[upload, ckpt, bx, by, bw, bh],
                    outputs=[out_video, out_image, message],
                    api_name="try_clean",
                )
                live_choices(timer, ckpt, ctx.checkpoints, ckpts)
    return blocks
