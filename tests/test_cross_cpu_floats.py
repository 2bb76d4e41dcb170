"""Float outputs differ between CPU classes, by this much: exact-mode frames against a committed reference.

tests/data/embedding_reference.npz holds the exact-mode frames of four clips from the miniature model, as an AMX
Xeon computed them in torch. Other CPU classes add in another order (AVX2 and AVX-512 kernels, 8 or 16 lanes), so
their frames differ in the last bits. Here they are computed on this machine and, with its wider features hidden
(benchmarks/cpu_mask.py), with the kernels an AVX2-only and an SSE CPU would pick, in torch and in the runtime
exact mode picks (ONNX Runtime): all within TOLERANCE of the reference. docs/reproducibility.md has the figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedding_reference import reference_frames
from test_portable_pcm import OTHER_CPUS

REFERENCE = Path(__file__).parent / "data" / "embedding_reference.npz"
TOLERANCE = 1e-4  # absolute, per frame value: about 10 times the largest difference measured


def _assert_close_to_reference(frames) -> None:
    reference = np.load(REFERENCE)
    assert sorted(frames) == sorted(reference.files)
    for name in reference.files:
        assert frames[name].shape == reference[name].shape
        np.testing.assert_allclose(frames[name], reference[name], rtol=0, atol=TOLERANCE, err_msg=name)


@pytest.mark.parametrize("runtime", ["auto", "torch"])  # auto: ONNX Runtime
def test_this_machine_is_within_the_tolerance_of_the_reference(runtime):
    _assert_close_to_reference(reference_frames(runtime))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["auto", "torch"])
@pytest.mark.parametrize("cpu", OTHER_CPUS)
def test_other_cpu_kernels_are_within_the_tolerance(cpu, runtime, cpu_mask, tmp_path):
    out = tmp_path / "frames.npz"
    subprocess.run([sys.executable, str(Path(__file__).parent / "embedding_reference.py"), str(out),
                    "--runtime", runtime], env=cpu_mask(cpu), check=True, capture_output=True)
    _assert_close_to_reference(dict(np.load(out)))
