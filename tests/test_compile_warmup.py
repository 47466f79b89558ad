"""torch.compile that warms up once (sensor_removal.training.compile_warmup): a persistent cache
folder the user can move, a progress line while the first step compiles, and the
module wiring (compiled networks, the line printed once per fit)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from torch import nn

import sensor_removal.training.compile_warmup as cw
from tests.test_precision import tiny


def test_cache_folder_is_the_users_unless_torchinductor_cache_dir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cw.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cw.compile_cache_dir() == tmp_path / "xdg" / "sensor-removal" / "inductor"
    path = cw.use_persistent_cache()
    assert path.is_dir() and os.environ[cw.CACHE_ENV] == str(path)  # Inductor (and its workers) read this
    monkeypatch.setenv(cw.CACHE_ENV, str(tmp_path / "mine"))
    assert cw.use_persistent_cache() == tmp_path / "mine" and os.environ[cw.CACHE_ENV] == str(tmp_path / "mine")

    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    assert inductor_config.fx_graph_cache and functorch_config.enable_autograd_cache


def test_progress_says_compiling_with_elapsed_time_until_done() -> None:
    out = io.StringIO()
    progress = cw.CompileProgress(stream=out, every_s=0.05)
    progress.start(Path("/cache"))
    time.sleep(0.3)
    elapsed = progress.done()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{cw.MESSAGE}; compile cache /cache"
    assert any(line.startswith(f"{cw.MESSAGE}: ") and line.endswith("s so far") for line in lines[1:-1])
    assert lines[-1].startswith("networks compiled: warm-up") and elapsed >= 0.3
    n = len(lines)
    time.sleep(0.15)
    assert len(out.getvalue().splitlines()) == n and progress.done() == 0.0  # stopped, once


def test_compiled_module_prints_the_line_once_per_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv(cw.CACHE_ENV, str(tmp_path / "inductor"))
    calls: list[tuple[nn.Module, dict]] = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: calls.append((self, k)))  # eager, but counted
    from tests.test_precision import fit

    model = tiny(compile=True)
    fit(model, tmp_path, batches=2)
    assert [m for m, _ in calls] == list(model.networks()) and all(k == {"dynamic": False} for _, k in calls)
    err = capsys.readouterr().err
    assert err.count(cw.MESSAGE) == 1 and err.count("networks compiled: warm-up") == 1
    assert str(tmp_path / "inductor") in err and model.compile_warmup_s > 0


@pytest.mark.slow  # Dynamo traces all four networks (eager backend, no Inductor): ~30 s on 2 loaded cores
def test_a_compiled_fit_compiles_one_graph_per_network_and_grad_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four graphs and no more: G and D each with an input that does / does not require
    grad (real images vs fakes: autograd differs, so those two are inherent). The pooled
    fakes used to come back NCHW and recompiled D on a stride guard."""
    import torch._dynamo

    monkeypatch.setenv(cw.CACHE_ENV, str(tmp_path / "inductor"))
    real = nn.Module.compile
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: real(self, backend="eager", **k))
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    from tests.test_precision import fit

    fit(tiny(compile=True), tmp_path, batches=3)
    assert cw.graphs_compiled() == 4
