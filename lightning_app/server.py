"""The web server: Gradio's page plus one file route, on one FastAPI app.

``GET /files/{runs|data}/{path}`` serves a file from under ``--runs`` or ``--data``
(videos for the Review tab, report images) with range requests, so browsers can seek in
videos. The path is resolved and checked by :class:`lightning_app.paths.ServedRoots`;
anything outside is answered 403, a missing file 404. Gradio itself is given no extra
allowed paths: the page's images travel as data, not as file links.
"""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from lightning_app.paths import FILES_ROUTE, PathRefused
from lightning_app.ui import CSS, PAGE_JS, AppContext, build_blocks


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
    """Run the server until interrupted; stop the fits this app started on the way out."""
    import shutil

    import uvicorn

    app = build_app(ctx, host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        ctx.launcher.shutdown()
        shutil.rmtree(ctx.work, ignore_errors=True)

