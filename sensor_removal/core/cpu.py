"""What this machine's CPU offers the fast paths: its kernel generation and native bf16.

Speed-ups measured on one CPU do not carry over to another of the same cloud kind: torch
picks its convolution kernels by the instruction set it finds
(``torch.backends.cpu.get_cpu_capability()``: ``DEFAULT``, ``AVX2``, ``AVX512``, ...), and
bf16 arithmetic is native only with AVX-512 BF16 or AMX; without them oneDNN emulates it
with float32 instructions plus conversions, so ``bf16-mixed`` is *slower* than fp32
there. Benchmarks print :func:`cpu_line` beside every number; training warns once
(:func:`warn_if_bf16_emulated`) when bf16 is asked for on a CPU that would emulate it.
"""

from __future__ import annotations

import os
import warnings


def cpu_capability() -> str:
    """torch's CPU kernel generation here (``ATEN_CPU_CAPABILITY`` can lower it)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def bf16_native() -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX), and torch's
    kernels (capability AVX512 or above) would use it."""
    import torch

    hardware = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()) or bool(
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return (
        hardware
        and cpu_capability().startswith(("AVX512", "AMX"))
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


def cpu_facts() -> dict:
    """Capability, native bf16, core count and torch version: what a speed figure depends on."""
    import torch

    return {
        "cpu_capability": cpu_capability(),
        "bf16_native": bf16_native(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def cpu_line() -> str:
    """:func:`cpu_facts` in one line, e.g. ``CPU AVX2 (bf16 emulated), 2 cores, torch 2.14.1``."""
    f = cpu_facts()
    bf16 = "native bf16" if f["bf16_native"] else "bf16 emulated"
    return f"CPU {f['cpu_capability']} ({bf16}), {f['cpus']} cores, torch {f['torch'].split('+')[0]}"


class Bf16EmulatedWarning(UserWarning):
    """bf16 was asked for on a CPU without native bf16 (it runs, slower than fp32)."""


def warn_if_bf16_emulated(precision: str, device_type: str) -> bool:
    """Warn once (per call site) when ``precision`` is a bf16 one, the device is the CPU
    and the CPU has no native bf16. Returns whether it warned."""
    if "bf16" not in str(precision) or device_type != "cpu" or bf16_native():
        return False
    warnings.warn(
        f"precision {precision} on a CPU without native bf16 (capability {cpu_capability()}, no AVX-512 BF16/AMX): "
        "bf16 is emulated and usually slower than 32-true here; the values are those of bf16 all the same",
        Bf16EmulatedWarning,
        stacklevel=2,
    )
    return True
