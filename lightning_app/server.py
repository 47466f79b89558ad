"""The web server: Gradio's page plus one file route, on one FastAPI app.

Every POST first passes :class:`lightning_app.uploads.UploadsOnly`: a request that names
a server-side file outside Gradio's upload folder is refused before Gradio reads it.

``GET /files/{runs|data}/{path}`` serves a file from under ``--runs`` or ``--data``
(videos for the Review tab, report images) with range requests, so browsers can seek in
videos. The path is resolved and checked by :class:`lightning_app.paths.ServedRoots`;
anything outside is answered 403, a missing file 404. Gradio itself is given no extra
allowed paths: the page's images travel as data, not as file links.
"""

from __future__ import annotations

import signal
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from lightning_app.paths import FILES_ROUTE, PathRefused
from lightning_app.ui import CSS, PAGE_JS, AppContext, build_blocks
from lightning_app.uploads import UploadsOnly


def build_app(ctx: AppContext, host: str = "127.0.0.1", port: int = 7860) -> FastAPI:
    """FastAPI app with the file route and the Gradio page mounted at ``/``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(FILES_ROUTE + "/{root}/{relative:path}")
    def serve_file(root: str, relative: str) -> FileResponse:
        try:
            path = ctx.roots.resolve(root, relative)
        except PathRefused as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        if not path.is_file():
            raise HTTPException(status_code=404, detail="no such file")
        return FileResponse(path)

    blocks = build_blocks(ctx)
    blocks.queue(default_concurrency_limit=4)
    upload_dir = Path(blocks.GRADIO_CACHE)  # where Gradio's upload route puts files
    app.add_middleware(UploadsOnly, upload_dir=upload_dir)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="",
        server_name=host,
        server_port=port,
        max_file_size=ctx.limits.max_bytes,
        ssr_mode=False,
        css=CSS,
        js=PAGE_JS,
        footer_links=[],
        allowed_paths=[str(ctx.work)],
    )


def serve(ctx: AppContext, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Run the server until interrupted; stop the fits this app started and remove the
    app's private folder (Try results, uploads) on the way out, also after SIGTERM.

    uvicorn handles SIGTERM by shutting down and then re-raising the signal with the
    handler it found; with the default handler the process would die there, before this
    function's cleanup. Our handler turns the re-raised signal into ``SystemExit(143)``."""
    import shutil

    import uvicorn

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    app = build_app(ctx, host, port)
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)
        ctx.launcher.shutdown()
        shutil.rmtree(ctx.work, ignore_errors=True)
