"""What the CPU has: its model name, its flags and its class, from ``/proc/cpuinfo``."""

from __future__ import annotations

from pathlib import Path

# Widest first: the CPU class that decides the speed of the matmul kernels here (docs/performance.md), by the
# /proc/cpuinfo flag that marks it. AVX512-BF16 and AMX have native bfloat16; AVX-512 and AVX2 do not.
CPU_CLASSES = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16", "avx512f": "AVX-512", "avx2": "AVX2"}
NATIVE_BFLOAT16 = ("AMX", "AVX512-BF16")


def cpu_flags() -> tuple[str | None, set[str]]:
    """The CPU's model name and flags, from /proc/cpuinfo (None and nothing where there is none)."""
    cpu, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and cpu is None:
                cpu = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return cpu, flags


def cpu_class(flags: set[str] | None = None) -> str:
    """AMX, AVX512-BF16, AVX-512, AVX2 or other: the widest class whose flag is in ``flags`` (default: this CPU's)."""
    if flags is None:
        flags = cpu_flags()[1]
    return next((name for flag, name in CPU_CLASSES.items() if flag in flags), "other")
