"""The integer outputs (synthetic 48 kHz corpus, 16 kHz audio) are bit-identical on every CPU class.

The committed checksums in tests/data/pcm_checksums.json are what every machine must produce. This machine
cannot become another CPU, but numpy, torch, oneDNN, MKL and OpenBLAS all let a process run the kernels they
would pick on an older CPU: the AVX2 one (as on an AVX2-only EPYC) and the plain SSE one. Before the portable
maths and the exact resampler, the AVX2 setting changed the synthetic clips and every resampled file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcm_digest import pcm_digests

COMMITTED = Path(__file__).parent / "data" / "pcm_checksums.json"
AVX2 = {"NPY_DISABLE_CPU_FEATURES": "X86_V4", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
SSE = {"NPY_DISABLE_CPU_FEATURES": "X86_V4", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
       "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem"}


def test_this_machine_writes_the_committed_pcm():
    assert pcm_digests() == json.loads(COMMITTED.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("kernels", [AVX2, SSE], ids=["avx2-kernels", "sse-kernels"])
def test_other_cpu_kernels_write_the_same_pcm(kernels):
    result = subprocess.run([sys.executable, str(Path(__file__).parent / "pcm_digest.py")],
                            env=os.environ | kernels, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == json.loads(COMMITTED.read_text())
