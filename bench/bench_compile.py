"""``--model.compile true``: warm-up time, recompiles, steady-state ratio and break-even.

Each variant is a fresh process (as a user's fit is) training the CycleGAN module for a
few steps on random pairs, ``TORCH_LOGS=recompiles`` on:

* eager — the same module, not compiled (the baseline);
* compiled, cold cache — an empty ``TORCHINDUCTOR_CACHE_DIR``: the first fit on a node;
* compiled, warm cache — the same folder again: the next subject, a resumed run, or
  another sweep task on the node (it should start training within a minute).

Per variant: time to the end of the first step (warm-up: process start excluded, model
construction included), the median step time after it, the graphs compiled, and the
``Recompiling function`` lines torch logged. Break-even: the steps after which the
compiled fit has caught up with the eager one, ``(warm-up_c - first_e) / (step_e - step_c)``.

The default nets are tiny (ngf 4, 32 px): compiling the paper networks takes many
minutes on 2 shared cores. ``--paper`` runs ngf 64, 9 blocks at ``--size`` (slow).

    python bench/bench_compile.py [--quick] [--paper --size 128] [--precision bf16-mixed]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def child(args: argparse.Namespace) -> None:
    """One fit; prints a JSON line with its timings (run in a fresh process)."""
    import torch
    from common import trainer_for
    from pytorch_lightning import Callback
    from torch.utils.data import DataLoader

    from sensor_removal.training.compile_warmup import graphs_compiled
    from sensor_removal.training.module import CycleGAN

    class Clock(Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.ends.append(time.perf_counter())

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pairs = [
        {
            k: torch.randint(0, 256, (3, args.size, args.size), generator=g, dtype=torch.uint8)
            for k in ("sensor", "normal")
        }
        for _ in range(args.steps)
    ]
    t0 = time.perf_counter()
    hp = dict(ngf=64, ndf=64, n_blocks=9) if args.paper else dict(ngf=4, ndf=4, n_blocks=1)
    model = CycleGAN(**hp, compile=args.compile, channels_last=args.channels_last)
    clock = Clock()
    trainer_for(args.steps, args.precision, clock).fit(model, DataLoader(pairs, batch_size=1))
    gaps = [b - a for a, b in zip(clock.ends[:-1], clock.ends[1:], strict=True)]
    print("RESULT " + json.dumps({"first_s": clock.ends[0] - t0, "step_s": statistics.median(gaps[1:] or gaps),
                                  "graphs": graphs_compiled()}), flush=True)  # fmt: skip


def run_variant(args: argparse.Namespace, compile_: bool, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--size", str(args.size), "--steps", str(args.steps),
           "--precision", args.precision, *(["--compile"] if compile_ else []), *(["--paper"] if args.paper else []),
           *(["--nchw"] if not args.channels_last else [])]  # fmt: skip
    env = {**os.environ, "TORCH_LOGS": "recompiles", "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"bench_compile child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line[len("RESULT ") :])
    logged = proc.stdout + proc.stderr
    out["recompiles"] = logged.count("Recompiling function")
    lines = logged.splitlines()
    # the guard that failed is on the line after each "triggered by ..." line
    reasons = [
        lines[i + 1].split("[__recompiles]")[-1].strip()
        for i, x in enumerate(lines[:-1])
        if "triggered by the following guard failure" in x
    ]
    out["reasons"] = sorted(set(reasons))[:8]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nchw", dest="channels_last", action="store_false", help="NCHW instead of channels_last")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--paper", action="store_true", help="paper networks (ngf 64, 9 blocks): slow to compile")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="training steps per fit (default 8, 5 with --quick)")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.steps = args.steps or (5 if args.quick else 8)
    if args.child:
        child(args)
        return
    from sensor_removal.core.cpu import cpu_facts, cpu_line

    load = os.getloadavg()[0]
    nets = "paper nets (ngf 64, 9 blocks)" if args.paper else "tiny nets (ngf 4, 1 block)"
    print(
        f"torch.compile warm-up | {cpu_line()} | {nets}, {args.size} px, {args.precision}, "
        f"{args.steps} steps per fit | "
        f"load average {load:.1f} at start",
        flush=True,
    )
    result: dict = {
        **cpu_facts(),
        "load_at_start": load,
        "paper": args.paper,
        "size": args.size,
        "precision": args.precision,
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "inductor"
        runs = {"eager": run_variant(args, False, cache)}
        runs["compiled, cold cache"] = run_variant(args, True, cache)
        runs["compiled, warm cache"] = run_variant(args, True, cache)
    for name, r in runs.items():
        print(f"  {name}: first step done after {r['first_s']:.1f} s, then {r['step_s'] * 1000:.1f} ms/step, "
              f"{r['graphs']} graphs, {r['recompiles']} recompiles", flush=True)  # fmt: skip
        for reason in r["reasons"]:
            print(f"    {reason}")
    e, cold, warm = runs["eager"], runs["compiled, cold cache"], runs["compiled, warm cache"]
    ratio = e["step_s"] / cold["step_s"]
    gain = e["step_s"] - cold["step_s"]

    def breakeven(r: dict) -> str:
        extra = r["first_s"] - e["first_s"]
        return f"{max(0.0, extra) / gain:.0f} steps" if gain > 0 else "never (not faster)"

    native = "" if cpu_facts()["bf16_native"] else " (bf16 not native here)" if "bf16" in args.precision else ""
    rows = [
        (
            f"compiled training step, {nets}, {args.size} px{native}; {cpu_line()}",
            f"{cold['step_s'] * 1000:.1f} ms",
            f"eager {e['step_s'] * 1000:.1f} ms",
            f"{ratio:.2f}x steady state",
        ),
        (
            "  compile warm-up, cold cache (first fit on a node)",
            f"{cold['first_s']:.1f} s to the first step",
            f"eager {e['first_s']:.1f} s",
            f"break-even after {breakeven(cold)}; {cold['recompiles']} recompiles",
        ),
        (
            "  compile warm-up, warm cache (next fit on the node)",
            f"{warm['first_s']:.1f} s",
            f"cold {cold['first_s']:.1f} s",
            f"{cold['first_s'] / warm['first_s']:.1f}x faster start; break-even after {breakeven(warm)}",
        ),
    ]
    result.update(runs=runs, rows=rows, load_at_end=os.getloadavg()[0])
    print(
        f"\n(load average {result['load_at_end']:.1f} at end)\n"
        "| what | ours | baseline | ratio |\n| --- | --- | --- | --- |"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
