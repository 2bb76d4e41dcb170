"""What the CPU has: its model name, its flags and its family and model numbers, from ``/proc/cpuinfo``; and its
class, as the programs on it see it."""

from __future__ import annotations

from pathlib import Path

# Widest first: the CPU class that decides the speed of the matmul kernels here (docs/performance.md), by the
# /proc/cpuinfo flag that marks it. AVX512-BF16 and AMX have native bfloat16; AVX-512 and AVX2 do not.
CPU_CLASSES = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16", "avx512f": "AVX-512", "avx2": "AVX2"}
NATIVE_BFLOAT16 = ("AMX", "AVX512-BF16")


def first_processor(cpuinfo: str | None = None) -> dict[str, str]:
    """The first processor's fields in ``cpuinfo`` (default: /proc/cpuinfo; nothing where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if not key and fields:
            break  # the blank line that ends the first processor
        fields.setdefault(key, value)
    return fields


def cpu_flags() -> tuple[str | None, set[str]]:
    """The CPU's model name and flags, from /proc/cpuinfo (None and nothing where there is none)."""
    fields = first_processor()
    return fields.get("model name"), set(fields.get("flags", "").split())


def cpu_signature(fields: dict[str, str] | None = None) -> str | None:
    """The vendor, family and model numbers in ``fields`` (default: this CPU's), e.g. ``AuthenticAMD family 26
    model 2``; None where they are missing. Virtual machines often hide the model name ("AMD EPYC" for Zen 3, 4
    and 5 alike), and CPUs of one class differ: the benchmark's exact stage ran 12.1 s audio/s on one AVX512-BF16
    EPYC and 26.6 on a family 26 one."""
    if fields is None:
        fields = first_processor()
    if not {"vendor_id", "cpu family", "model"} <= fields.keys():
        return None
    return f"{fields['vendor_id']} family {fields['cpu family']} model {fields['model']}"


def visible_flags() -> set[str]:
    """The flags of :data:`CPU_CLASSES` that programs here see: those CPUID reports and the OS supports, as numpy
    asked them at import. They are /proc/cpuinfo's, unless CPUID hides some from this process (as
    benchmarks/cpu_mask.py does, to run the kernels of a narrower CPU). numpy does not look for AMX: it counts
    where /proc/cpuinfo has it and AVX512-BF16, which every AMX CPU has, is visible."""
    from numpy._core._multiarray_umath import __cpu_features__ as seen

    flags = {flag for flag, feature in (("avx2", "AVX2"), ("avx512f", "AVX512F"), ("avx512_bf16", "AVX512BF16"))
             if seen.get(feature)}
    if "avx512_bf16" in flags:
        flags |= {"amx_bf16"} & cpu_flags()[1]
    return flags


def cpu_class(flags: set[str] | None = None) -> str:
    """AMX, AVX512-BF16, AVX-512, AVX2 or other: the widest class whose flag is in ``flags`` (default: the flags
    programs here see, :func:`visible_flags`)."""
    if flags is None:
        flags = visible_flags()
    return next((name for flag, name in CPU_CLASSES.items() if flag in flags), "other")
