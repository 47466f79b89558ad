"""``torch.compile`` of the four networks (ours, ``--model.compile true``) that warms up once.

Compiling is paid for in the first steps (on 2 CPU cores, minutes for the paper
networks); it pays off only when later runs do not pay it again and the user knows
what the silent first steps are. So:

* **a persistent compile cache**: Inductor's FX-graph cache and AOTAutograd's cache are
  kept in ``$TORCHINDUCTOR_CACHE_DIR`` when that is set, else in
  ``$XDG_CACHE_HOME/sensor-removal/inductor`` (``~/.cache/sensor-removal/inductor``),
  not in torch's default ``/tmp/torchinductor_<user>``, which cluster jobs often lose.
  The next subject, a resumed run and every sweep task on the same node load the
  compiled kernels instead of compiling them again;
* **networks only, one graph each where it can be**: each network's ``forward`` is
  compiled in place (``nn.Module.compile``, parameter names and checkpoints unchanged)
  with static shapes (the batches of a fit have one size; a dynamic-shape recompile
  after the first size change would only slow the steady state);
* **a progress line** while the first steps compile, with the elapsed time
  (:class:`CompileProgress`), and the number of graphs compiled at the end of it
  (:func:`graphs_compiled`; ``TORCH_LOGS=recompiles`` names every recompile's reason).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import IO

#: Environment variable that moves the compile cache (Inductor's own).
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
#: Seconds between two "still compiling" lines.
EVERY_S = 30.0
MESSAGE = "compiling the networks (first steps are slow)"


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: ``$TORCHINDUCTOR_CACHE_DIR``, else the user cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(root).expanduser() / "sensor-removal" / "inductor"


def use_persistent_cache() -> Path:
    """Point Inductor at :func:`compile_cache_dir` (setting ``$TORCHINDUCTOR_CACHE_DIR``
    only where it is unset: Inductor reads the variable itself, also in its compile
    workers) and keep the FX-graph and AOTAutograd caches on. Returns the folder."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(CACHE_ENV, str(path))
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return path


def compile_networks(networks) -> Path:
    """Compile each network's ``forward`` in place with static shapes, caching on disk.
    Returns the cache folder."""
    path = use_persistent_cache()
    for net in networks:
        net.compile(dynamic=False)
    return path


def graphs_compiled() -> int:
    """Graphs Dynamo has compiled in this process (one per network when nothing recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompileProgress:
    """Prints :data:`MESSAGE` when the first step starts, the elapsed time every
    ``every_s`` seconds while it runs (from a timer thread: the step itself is busy in
    the compiler), and one line with the warm-up time and the graphs compiled when
    :meth:`done` is called."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = EVERY_S) -> None:
        self.stream, self.every_s = stream, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def start(self, cache: Path | None = None) -> None:
        self.started = time.perf_counter()
        where = f"; compile cache {cache}" if cache is not None else ""
        self._print(f"{MESSAGE}{where}")
        self._thread = threading.Thread(target=self._tick, name="compile-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self._print(f"{MESSAGE}: {time.perf_counter() - self.started:.0f} s so far")

    def done(self) -> float:
        """Stop the timer; print and return the warm-up seconds."""
        if self._thread is None:
            return 0.0
        self._stop.set()
        self._thread.join()
        self._thread = None
        elapsed = time.perf_counter() - self.started
        self._print(f"networks compiled: warm-up {elapsed:.1f} s, {graphs_compiled()} graphs")
        return elapsed
