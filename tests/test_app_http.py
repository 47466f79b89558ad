"""The app over plain HTTP, as any local user of a shared node can reach it: every
endpoint that takes a file refuses a server-side path outside Gradio's upload folder,
a real upload still works, and SIGTERM leaves no private temporary folder behind.

A real ``python -m lightning_app`` on a free port (no browser: tests/test_app.py drives
the page); its runs folder holds a tiny checkpoint written without training.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.checkpoints import write_checkpoint
from tests.videos import make_video

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("apphttp")
    data, runs, tmp, secret = base / "data", base / "runs", base / "tmp", base / "elsewhere"
    for d in (data, runs / "r1" / "checkpoints", tmp, secret):
        d.mkdir(parents=True)
    make_video(data / "clip.mp4", n=6, width=48, height=40, seed=0)
    (data / "manifest.yaml").write_text("subject: s\nrecordings: []\n")
    write_checkpoint(runs / "r1" / "checkpoints" / "last.ckpt", data / "manifest.yaml")
    # Files the app must never read for a client: outside --runs, --data and the uploads.
    make_video(secret / "private.mp4", n=6, width=48, height=40, seed=3)
    import cv2

    cv2.imwrite(str(secret / "private.png"), np.full((40, 48, 3), 77, np.uint8))
    port = _free_port()
    # TMPDIR: the app's private folder and Gradio's uploads land where the test can look.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp),
    }
    env.pop("GRADIO_TEMP_DIR", None)
    log = open(base / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_app", "--runs", str(runs), "--data", str(data), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.3)
    if proc.poll() is not None or time.time() >= deadline:
        proc.kill()
        pytest.fail("app did not start:\n" + (base / "server.log").read_text()[-3000:])
    yield {
        "port": port,
        "proc": proc,
        "secret": secret,
        "tmp": tmp,
        "data": data,
        "runs": runs,
        "log": base / "server.log",
    }
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    log.close()


def _request(port: int, method: str, path: str, body: object = None, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    raw = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=raw, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    return resp.status, resp.read()


def _call(port: int, api: str, data: list) -> tuple[int, str]:
    """POST /gradio_api/call/API, then read the event stream: (status, result text)."""
    status, body = _request(port, "POST", f"/gradio_api/call/{api}", {"data": data})
    if status != 200:
        return status, body.decode()
    event = json.loads(body)["event_id"]
    _, stream = _request(port, "GET", f"/gradio_api/call/{api}/{event}")
    return status, stream.decode()


def _file(path: Path | str) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def _file_endpoints(port: int) -> dict[str, list[int]]:
    """Every named endpoint and the positions of its file inputs, from the app's API info."""
    status, body = _request(port, "GET", "/gradio_api/info")
    assert status == 200
    out = {}
    for name, ep in json.loads(body)["named_endpoints"].items():
        files = [
            i
            for i, p in enumerate(ep["parameters"])
            if p.get("component") in ("File", "Video", "Image", "Audio", "Model3D", "Gallery")
        ]
        if files:
            out[name.lstrip("/")] = files
    return out


def test_every_file_endpoint_refuses_a_path_outside_the_uploads(app) -> None:
    endpoints = _file_endpoints(app["port"])
    assert {"try_preview", "try_clean"} <= set(endpoints), endpoints
    ckpt = str(app["runs"] / "r1" / "checkpoints" / "last.ckpt")
    outside = [
        app["secret"] / "private.mp4",
        app["secret"] / "private.png",
        app["data"] / "clip.mp4",
        app["secret"] / ".." / "elsewhere" / "private.mp4",
        "/etc/passwd",
    ]
    for name, positions in endpoints.items():
        status, body = _request(app["port"], "GET", "/gradio_api/info")
        n = len(json.loads(body)["named_endpoints"]["/" + name]["parameters"])
        for target in outside:
            data: list = [None] * n
            for i in positions:
                data[i] = _file(target)
            if name == "try_clean":
                data[1:] = [ckpt, 0, 0, 32, 32]
            status, text = _call(app["port"], name, data)
            assert status == 403, (name, target, status, text[:300])
            assert "not a file uploaded to this app" in text
    # Also through the page's own route (the queue) and with a symbolic link into the uploads.
    link = app["tmp"] / "link.mp4"
    link.symlink_to(app["secret"] / "private.mp4")
    status, body = _request(
        app["port"],
        "POST",
        "/gradio_api/queue/join",
        {"data": [_file(link)], "fn_index": 0, "session_hash": "x", "event_data": None, "trigger_id": 1},
    )
    assert status == 403, body[:300]


def test_a_real_upload_is_accepted(app) -> None:
    """The positive control: a file sent through Gradio's upload route is previewed."""
    boundary = "xxBOUNDARYxx"
    content = (app["data"] / "clip.mp4").read_bytes()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, resp = _request(
        app["port"], "POST", "/gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200, resp[:300]
    (uploaded,) = json.loads(resp)
    status, text = _call(app["port"], "try_preview", [_file(uploaded)])
    assert status == 200 and "event: complete" in text, text[:500]
    assert "Rejected" not in text and "not a file uploaded" not in text


def test_sigterm_removes_the_apps_private_folder(app) -> None:
    tmp = app["tmp"]
    assert [p for p in tmp.iterdir() if p.name.startswith("sensor-removal-app-")], "the app made no private folder"
    app["proc"].send_signal(signal.SIGTERM)
    app["proc"].wait(60)
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("sensor-removal-app-")]
    assert leftovers == [], (leftovers, app["log"].read_text()[-2000:])
