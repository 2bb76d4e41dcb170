"""The integer outputs (synthetic 48 kHz corpus, 16 kHz audio) are bit-identical on every CPU class.

The committed checksums in tests/data/pcm_checksums.json are what every machine must produce. This machine
cannot become another CPU, but it can hide its wider features from a process (benchmarks/cpu_mask.py), so that
numpy, OpenBLAS, torch, oneDNN, MKL and glibc pick the kernels of an AVX2-only CPU (as an AVX2-only EPYC does) or
of a plain SSE one. Before the portable maths and the exact resampler, the AVX2 kernels changed the synthetic clips
and every resampled file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pcm_digest import pcm_digests

COMMITTED = Path(__file__).parent / "data" / "pcm_checksums.json"
OTHER_CPUS = ("AVX2", "SSE")


def test_this_machine_writes_the_committed_pcm():
    assert pcm_digests() == json.loads(COMMITTED.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("cpu", OTHER_CPUS)
def test_other_cpu_kernels_write_the_same_pcm(cpu, cpu_mask):
    result = subprocess.run([sys.executable, str(Path(__file__).parent / "pcm_digest.py")],
                            env=cpu_mask(cpu), capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == json.loads(COMMITTED.read_text())
