"""``python -m lightning_app --runs runs/ [--data data/] [--host 127.0.0.1] [--port 7860]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sensor_removal.core.argtypes import int_at_least

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lightning_app",
        description="Browser app: list runs and their loss curves, start/stop/resume fits, "
        "review normal | sensor | cleaned videos with AU curves, clean an uploaded clip.",
    )
    p.add_argument("--runs", type=Path, required=True, help="folder of run folders (fits started here go there too)")
    p.add_argument(
        "--data", type=Path, default=None, help="folder of recordings and manifests (served read-only to the page)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_at_least(1), default=7860)
    p.add_argument("--conf", type=Path, default=CONF_DIR, help="folder of fit configs offered in the Train tab")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="Try tab: largest upload")
    p.add_argument("--max-upload-seconds", type=float, default=20.0, help="Try tab: longest clip")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, folder in (("--runs", args.runs), ("--data", args.data)):
        if folder is not None and folder.exists() and not folder.is_dir():
            print(f"error: {flag} {folder}: not a folder", file=sys.stderr)
            return 2
    if args.data is not None and not args.data.is_dir():
        print(f"error: --data {args.data}: no such folder", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0 or args.max_upload_seconds <= 0:
        print("error: --max-upload-mb and --max-upload-seconds must be > 0", file=sys.stderr)
        return 2
    args.runs.mkdir(parents=True, exist_ok=True)
    try:
        from lightning_app.paths import ServedRoots
        from lightning_app.server import serve
        from lightning_app.tryout import UploadLimits
        from lightning_app.ui import AppContext
    except ImportError as exc:
        print(f"error: {exc.name} is missing: install the app extra (pip install -e '.[app]')", file=sys.stderr)
        return 2
    ctx = AppContext(
        ServedRoots.create(args.runs, args.data),
        args.conf.resolve(),
        UploadLimits(args.max_upload_mb, args.max_upload_seconds),
    )
    # Uploads go into the app's private folder (mode 0700, removed at exit), not into a
    # /tmp/gradio shared with every other Gradio app of the node; GRADIO_TEMP_DIR wins.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ctx.work / "uploads"))
    print(
        f"sensor-removal app: http://{args.host}:{args.port}  (runs {ctx.roots.runs}, data {ctx.roots.data})",
        flush=True,
    )
    serve(ctx, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
