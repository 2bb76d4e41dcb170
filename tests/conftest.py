"""Shared fixtures: the repository root, the committed miniature model, and WAV writing; the test markers.

Markers (registered in pyproject.toml; ``make test-fast`` runs the tests with none of them, ``make test`` all):

- ``dvc``: the test builds a DVC project (tests/dvc_project.py) and runs real ``dvc`` on it. Every test of a
  module that imports dvc_project gets it.
- ``server``: the test starts a server: the HTTP file server (tests/http_server.py), sshd (tests/sshd.py), the
  warm stage worker, or one as a second user. Every test that uses one of SERVER_FIXTURES gets it.
- ``slow``: set by hand on the other tests that take 3 s or more here (subprocesses under other CPU kernels,
  process pools, trainings).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from filelock import FileLock

from dvc_project import dvc, git, make_project

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks' helpers: cpu_mask, the benchmark itself
# The fixtures that start a server: test_download's HTTP server, test_remote's sshd, test_worker's warm worker,
# test_worker_security's workers and second user.
SERVER_FIXTURES = {"server", "sshd", "worker_env", "shared_tmp"}
TINY_MODEL = REPO_ROOT / "models" / "wav2vec2-tiny-random"
# The embed stage's ONNX exports (ravdess_ser/cpu_runtimes.py) go to the session's own cache, not the user's; the
# stages the tests' DVC projects run inherit it. Removed when the session ends.
_ONNX_CACHE = tempfile.TemporaryDirectory(prefix="ravdess-ser-test-cache-")
os.environ["RAVDESS_SER_CACHE"] = _ONNX_CACHE.name


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY_MODEL


@dataclass(frozen=True)
class ReproducedProject:
    path: Path  # never changed by a test: start from a copy (dvc_project.copy_project)
    repro_stdout: str  # what its first `dvc repro` printed
    # Where that repro's stages recorded what they imported and read. The per-actor stages' jobs ran in the warm
    # worker (which imports every module), so their records hold the stage client's side only.
    audit: Path


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory, worker_id) -> ReproducedProject:
    """The tiny project (tests/dvc_project.py) after its first `dvc repro`, committed.

    Its pipeline runs once a session: test_pipeline_dvc checks that run, and the modules that need a reproduced
    project (test_remote, test_experiments, test_upstreams_dvc) each start from a copy instead of running it again.
    The xdist workers share it: the first to ask builds it under a lock in the session's shared temporary folder
    (pytest's own, private to this user), and the others wait for it rather than each reproduce it on a core.
    """
    if worker_id == "master":  # no xdist
        return _reproduce(tmp_path_factory.mktemp("reproduced"))
    root = tmp_path_factory.getbasetemp().parent / "reproduced"
    with FileLock(f"{root}.lock"):
        if not (root / "done").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _reproduce(root)
            (root / "done").touch()
    return ReproducedProject(root / "project", (root / "repro.stdout").read_text(), root / "audit")


def _reproduce(root: Path) -> ReproducedProject:
    audit = root / "audit"
    audit.mkdir()
    project = make_project(root / "project")
    result = dvc(project, "repro", env={"RAVDESS_SER_AUDIT_DIR": str(audit)})
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "repro")
    (root / "repro.stdout").write_text(result.stdout)
    return ReproducedProject(project, result.stdout, audit)


@pytest.fixture(scope="session")
def cpu_mask(tmp_path_factory) -> Callable[[str], dict[str, str]]:
    """The environment in which a subprocess sees this CPU narrowed to a class (AVX2, AVX-512 or SSE) and picks
    that class's kernels in every library (benchmarks/cpu_mask.py); skips where the CPU cannot trap CPUID."""
    from cpu_mask import MaskUnavailable, build_mask_library, check_mask, masked_environment

    try:
        library = build_mask_library(tmp_path_factory.mktemp("cpu-mask"))
        check_mask(library)
    except MaskUnavailable as error:
        pytest.skip(f"cannot hide this CPU's features: {error}")
    return lambda mask: masked_environment(mask, library)


def tone(seconds: float, sample_rate: int, frequency: float = 220.0, channels: int = 1) -> np.ndarray:
    """A decaying harmonic tone, (samples,) or (samples, channels), peak 0.5."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 6)) * np.exp(-t)
    wave = (0.5 * wave / np.abs(wave).max()).astype(np.float32)
    return np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 48_000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype, format="WAV")
    return path


def _uses_dvc_projects(module) -> bool:
    return any(getattr(value, "__module__", None) == "dvc_project" for value in vars(module).values())


# `make test`'s pytest-xdist (--dist loadscope --no-loadscope-reorder) hands whole modules to its two workers in
# collection order, each the next as it runs short: these first, longest first (`pytest --durations=0`, 2 cores),
# so that no worker is left alone with a long module at the end. test_pipeline_dvc builds reproduced_project,
# and test_protocols_dvc, which builds a project of its own, keeps the other worker busy meanwhile.
LONGEST_MODULES = ("test_pipeline_dvc", "test_protocols_dvc", "test_remote", "test_experiments", "test_worker",
                   "test_interruption", "test_upstreams_dvc", "test_layer_summary", "test_crossval")


def pytest_collection_modifyitems(config, items):
    # A stable sort: each module's tests keep their order, which the DVC modules' tests rely on.
    items.sort(key=lambda item: LONGEST_MODULES.index(item.path.stem) if item.path.stem in LONGEST_MODULES
               else len(LONGEST_MODULES))
    for item in items:
        if _uses_dvc_projects(item.module) and not item.get_closest_marker("dvc"):
            item.add_marker(pytest.mark.dvc)
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("server"):
            item.add_marker(pytest.mark.server)
