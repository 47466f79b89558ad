"""channels_last vs NCHW for the paper networks' training step, per CPU kernel generation.

The layout that oneDNN convolves fastest differs between CPUs: this machine's own
kernels, and those of an AVX2-only CPU emulated here (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``: torch and oneDNN then pick the kernels such a CPU runs;
the time is that of this machine's cores running them, so compare ratios, not seconds).
Each cell is a fresh process (``bench_compile.py``'s child: the CycleGAN module, eager
fp32, batch 1); the variants are interleaved over ``--rounds`` rounds and the fastest
round counts (the machine is shared).

    python bench/bench_layout.py [--size 128] [--steps 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ISAS = {"native": {}, "avx2 (emulated)": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def step_s(size: int, steps: int, channels_last: bool, env: dict) -> float:
    cmd = [
        sys.executable,
        str(HERE / "bench_compile.py"),
        "--child",
        "--paper",
        "--size",
        str(size),
        "--steps",
        str(steps),
    ]
    if not channels_last:
        cmd.append("--nchw")
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"bench_layout child failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])["step_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from sensor_removal.core.cpu import cpu_facts, cpu_line

    print(
        f"Layout of the paper networks, training step {args.size} px fp32 | {cpu_line()} | "
        f"load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    best: dict[tuple[str, bool], float] = {}
    for r in range(args.rounds):
        for isa, env in ISAS.items():
            for cl in (True, False):
                s = step_s(args.size, args.steps, cl, env)
                best[(isa, cl)] = min(best.get((isa, cl), s), s)
        print(
            f"  round {r + 1}: " + ", ".join(f"{i} {'CL' if c else 'NCHW'} {s:.2f} s" for (i, c), s in best.items()),
            flush=True,
        )
    rows = [
        (
            f"training step {args.size} px, kernels {isa}, channels_last vs NCHW; {cpu_line()}",
            f"{best[(isa, True)]:.2f} s",
            f"NCHW {best[(isa, False)]:.2f} s",
            f"{best[(isa, False)] / best[(isa, True)]:.2f}x",
        )
        for isa in ISAS
    ]
    print(
        f"\n(load average {os.getloadavg()[0]:.1f} at end)\n"
        "| what | channels_last | baseline | ratio |\n| --- | --- | --- | --- |"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    **cpu_facts(),
                    "rows": rows,
                    "best_s": {f"{i} {'cl' if c else 'nchw'}": s for (i, c), s in best.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
