"""Run a command as if this CPU were a narrower one: every library in it picks an AVX2-only, AVX-512 or SSE CPU's
kernels, ONNX Runtime's and OpenVINO's included, which have no variable that forces them down.

    python benchmarks/cpu_mask.py AVX2 -- python benchmarks/embed_benchmark.py --actors 3 --peers-only
    python benchmarks/cpu_mask.py AVX2 -- dvc repro

``benchmarks/cpu_mask.c`` hides the CPUID feature bits above the mask from the command and its children (its
comment says how). The kernels are the narrower CPU's; the cores, caches and clock stay this one's, so speed
ratios measured this way only hint at the narrower class (the benchmark files them apart, under the class the
kernels saw and the CPU's own family and model). Frames and PCM computed this way are the narrower kernels'
own, which is what tests/test_portable_pcm.py and tests/test_cross_cpu_floats.py need.

Needs a C compiler (``cc``) and CPUID faulting: Intel CPUs since Ivy Bridge, recent AMD ones, and KVM guests.
The library is built in a private temporary folder and removed when the command ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_suffix(".c")
# What each mask leaves, by the name ravdess_ser.cpu gives the class (SSE: no AVX at all, x86-64-v2).
MASKS = ("AVX2", "AVX-512", "SSE")
# glibc picks its own string and math kernels in the dynamic loader, before the preloaded library can hide
# anything: its tunables hide the same features from it.
GLIBC_HIDDEN = {
    "AVX-512": ["AVX512_BF16", "AVX512_FP16", "AMX_BF16", "AMX_TILE", "AMX_INT8"],
    "AVX2": ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512ER", "AVX512PF", "AVX_VNNI"],
    "SSE": ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512ER", "AVX512PF", "AVX_VNNI",
            "AVX", "AVX2", "FMA", "FMA4", "F16C"],
}


class MaskUnavailable(Exception):
    """This machine cannot build or load the mask: the message says why."""


def build_mask_library(directory: Path) -> Path:
    """Compile cpu_mask.c into ``directory``; the shared library's path."""
    compiler = shutil.which("cc")
    if compiler is None:
        raise MaskUnavailable("no C compiler (cc) on PATH; install gcc")
    library = directory / "cpu_mask.so"
    result = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE), "-ldl"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise MaskUnavailable(f"{compiler} cannot build {SOURCE.name}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return library


def masked_environment(mask: str, library: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with the CPU's features above ``mask`` hidden by ``library``."""
    if mask not in MASKS:
        raise ValueError(f"cpu mask {mask!r} is not one of {', '.join(MASKS)}")
    environ = dict(os.environ if environ is None else environ)
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    tunables.append("glibc.cpu.hwcaps=" + ",".join(f"-{name}" for name in GLIBC_HIDDEN[mask]))
    return environ | {"LD_PRELOAD": " ".join(filter(None, [str(library), environ.get("LD_PRELOAD")])),
                      "RAVDESS_SER_CPU_MASK": mask, "GLIBC_TUNABLES": ":".join(tunables)}


def check_mask(library: Path) -> None:
    """Raise :class:`MaskUnavailable` where ``library`` cannot hide this CPU's features (no CPUID faulting)."""
    result = subprocess.run([sys.executable, "-c", "pass"], env=masked_environment("AVX2", library),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise MaskUnavailable(result.stderr.strip() or f"exit status {result.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cpu_mask.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mask", choices=MASKS, help="the widest features the command may see")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run: give it after --")
    with tempfile.TemporaryDirectory(prefix="cpu-mask-") as directory:
        try:
            library = build_mask_library(Path(directory))
        except MaskUnavailable as error:
            raise SystemExit(f"cpu_mask: {error}") from None
        # The library itself stops the command in one line where the CPU cannot trap CPUID.
        return subprocess.run(command, env=masked_environment(args.mask, library)).returncode


if __name__ == "__main__":
    sys.exit(main())
