"""Files reach a handler only as uploads: a guard in front of every Gradio request.

A Gradio event whose input is a file component (the Try tab's upload) takes a JSON
``{"path": …, "meta": {"_type": "gradio.FileData"}}`` naming a server-side file, and
Gradio copies that file into its cache for the handler. Its own check that the file was
uploaded is skipped for an app mounted into FastAPI (it applies only after
``launch()``), so any client of 127.0.0.1 — on a shared node, any local user — could have
the app read any file its user can read. :class:`UploadsOnly` looks into the body of every
POST request before Gradio does and refuses (403, with a message) each file payload whose
path, resolved (symbolic links and ``..`` followed), does not lie inside the upload
folder: the files Gradio itself received through its upload route in this app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Largest JSON body looked into (a request's data, not a file: uploads are multipart).
MAX_JSON_BYTES = 8 * 1024 * 1024


def file_paths(data: Any) -> Iterator[str]:
    """Every ``path`` of a file payload anywhere in a decoded JSON request body (any dict
    with a string ``path``: with or without Gradio's ``meta`` marker)."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if isinstance(item.get("path"), str):
                yield item["path"]
            todo += list(item.values())
        elif isinstance(item, list):
            todo += item


def refused_path(body: bytes, upload_dir: Path) -> str | None:
    """The first file path in ``body`` outside ``upload_dir``, or None (also for a body
    that is not JSON: Gradio refuses that itself)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    root = upload_dir.resolve()
    for path in file_paths(data):
        if "\x00" in path or not path:
            return path
        try:
            inside = Path(path).resolve().is_relative_to(root) and Path(path).resolve() != root
        except (OSError, RuntimeError):  # a symlink loop, an unresolvable name
            inside = False
        if not inside:
            return path
    return None


class UploadsOnly:
    """ASGI middleware: POST bodies naming a file outside ``upload_dir`` are answered 403."""

    def __init__(self, app: Any, upload_dir: Path) -> None:
        self.app = app
        self.upload_dir = Path(upload_dir)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or _is_multipart(scope):
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_JSON_BYTES:
                await _answer(send, 413, f"request body over {MAX_JSON_BYTES // 1024 // 1024} MB")
                return
        body = b"".join(chunks)
        bad = refused_path(body, self.upload_dir)
        if bad is not None:
            await _answer(send, 403, f"refused {bad!r}: not a file uploaded to this app; upload it in the Try tab")
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_multipart(scope: dict) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            return value.split(b";")[0].strip().lower() == b"multipart/form-data"
    return False


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
