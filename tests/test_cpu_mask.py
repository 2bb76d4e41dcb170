"""benchmarks/cpu_mask.py: a process whose CPU's wider features are hidden picks a narrower CPU's kernels in every
library, and behaves otherwise as without the mask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from ravdess_ser.cpu import cpu_class

pytestmark = pytest.mark.slow  # subprocesses that import torch
SEEN = ("import numpy, torch; from numpy._core._multiarray_umath import __cpu_features__ as f; "
        "from ravdess_ser.cpu import cpu_class; "
        "print(cpu_class(), torch.backends.cpu.get_cpu_capability(), f['AVX512F'], f['AVX2'], f['FMA3'])")


def _python(code: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          **kwargs)


@pytest.mark.parametrize("mask, seen", [("AVX2", "AVX2 AVX2 False True True"),
                                        ("SSE", "other DEFAULT False False False")])
def test_numpy_torch_and_the_cpu_class_see_the_narrower_cpu(mask, seen, cpu_mask):
    assert _python(SEEN, cpu_mask(mask), check=True).stdout.split() == seen.split()


@pytest.mark.skipif(cpu_class() in ("AVX2", "other"), reason="this CPU has nothing above AVX2 to hide")
def test_onnxruntime_and_numpy_run_other_kernels_under_the_mask(cpu_mask, tmp_path):
    """The mask reaches the libraries that have no variable to force them down: their results change bits."""
    # ONNX Runtime's softmax adds its exponentials 16 or 8 lanes at a time (its GEMMs add in the same order on
    # both); numpy's float64 exp has an AVX-512 kernel of its own.
    code = ("import sys, numpy as np, onnxruntime as ort, torch; "
            "x = np.random.default_rng(0).standard_normal((64, 384), dtype=np.float32); "
            "torch.onnx.export(torch.nn.Softmax(-1), torch.from_numpy(x), sys.argv[1], dynamo=False); "
            "session = ort.InferenceSession(sys.argv[1]); "
            "y = session.run(None, {session.get_inputs()[0].name: x})[0]; "
            "np.savez(sys.argv[2], onnxruntime=y, exp=np.exp(np.linspace(-20, 20, 100_001)))")
    results = {}
    for name, env in (("native", None), ("AVX2", cpu_mask("AVX2"))):
        out = tmp_path / f"{name}.npz"
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "linear.onnx"), str(out)], env=env, check=True,
                       capture_output=True)
        results[name] = np.load(out)
    for output in ("onnxruntime", "exp"):
        native, narrower = results["native"][output], results["AVX2"][output]
        assert not np.array_equal(native, narrower), output
        np.testing.assert_allclose(narrower, native, rtol=1e-5, err_msg=output)


def test_a_crash_under_the_mask_still_reaches_the_programs_own_handler(cpu_mask):
    """Python's faulthandler installs its SIGSEGV handler after the mask's: it still prints the traceback."""
    result = _python("import faulthandler, ctypes; faulthandler.enable(); ctypes.string_at(0)", cpu_mask("AVX2"))
    assert result.returncode == -11
    assert "Fatal Python error: Segmentation fault" in result.stderr


def test_an_unknown_mask_stops_the_program_in_one_line(cpu_mask):
    result = _python("print('ran')", cpu_mask("AVX2") | {"RAVDESS_SER_CPU_MASK": "AVX3"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "cpu_mask: RAVDESS_SER_CPU_MASK=AVX3 is not a mask (allowed: AVX2, AVX-512, SSE)\n"


def test_the_command_line_runs_a_command_masked_and_returns_its_status(cpu_mask, tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/cpu_mask.py", "AVX2", "--", sys.executable, "-c",
         "import sys; from ravdess_ser.cpu import cpu_class; print(cpu_class()); sys.exit(3)"],
        cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}, capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (3, "AVX2\n"), result.stderr
    assert list(tmp_path.iterdir()) == []  # the library's build folder is gone
