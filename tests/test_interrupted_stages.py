"""Stages killed or interrupted at any point: no temporary outlives the next run, and Ctrl-C is one line.

Real stage processes and real signals: SIGKILL during the download stage's synthetic generation, SIGINT while a
stage imports torch, and SIGINT to the whole process group (what Ctrl-C in a terminal does) while the layer
sweep's pool processes start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from dvc_project import update_params
from ravdess_ser.atomic import TEMP_PREFIX, atomic_dir
from ravdess_ser.errors import INTERRUPTED
from ravdess_ser.training_pool import PROCESSES_ENV



def _start(cwd: Path, script: str, *args: str, params: dict, env: dict | None = None, **popen) -> subprocess.Popen:
    """``python -m stages.<script>`` in ``cwd``, with the repo's params.yaml changed by ``params`` and the
    environment by ``env``."""
    shutil.copy(REPO_ROOT / "params.yaml", cwd)
    update_params(cwd, params)
    return subprocess.Popen([sys.executable, "-m", f"stages.{script.removesuffix('.py')}", *args], cwd=cwd,
                            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)} | (env or {}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# ----------------------------------------------------------------------------- kill -9 leaves temporaries


def _stale_dirs(data: Path) -> list[Path]:
    return sorted(data.glob(TEMP_PREFIX + "raw-*"))


def _killed_synthetic_generation(tmp_path: Path) -> Path:
    """A download stage SIGKILLed while it writes the synthetic corpus: its temporary folder stays behind."""
    stage = _start(tmp_path, "download.py", "data/raw", params={"data": {"source": "synthetic"}})  # 24 actors
    data = tmp_path / "data"
    _wait_for(lambda: any(any(d.glob("Actor_*/*.wav")) for d in _stale_dirs(data)), "the first synthetic clips")
    stage.kill()
    stage.communicate(timeout=60)  # its pool's processes die with it, and with them its stdout and stderr
    assert stage.returncode == -signal.SIGKILL
    (stale,) = _stale_dirs(data)
    assert any(stale.glob("Actor_*/*.wav")) and not (data / "raw").exists()  # the pool writes actors in parallel
    return stale


def test_the_next_synthetic_run_removes_what_a_killed_one_left(tmp_path):
    _killed_synthetic_generation(tmp_path)
    rerun = _start(tmp_path, "download.py", "data/raw",
                   params={"data": {"source": "synthetic", "actors": ["01"], "synthetic_clip_seconds": 0.3}})
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert _stale_dirs(tmp_path / "data") == []
    assert [p.name for p in (tmp_path / "data/raw").iterdir()] == ["Actor_01"]


def test_an_extraction_from_a_zip_removes_what_a_killed_run_left(tmp_path):
    from test_download import file_md5, ravdess_members, write_zip

    _killed_synthetic_generation(tmp_path)
    zip_path = write_zip(tmp_path / "corpus.zip", ravdess_members(actors=(1,)))
    rerun = _start(tmp_path, "download.py", "data/raw",
                   params={"data": {"source": "zip", "zip_path": "corpus.zip", "md5": file_md5(zip_path),
                                    "actors": ["01"]}})
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert _stale_dirs(tmp_path / "data") == [] and (tmp_path / "data/raw/Actor_01").is_dir()


def test_a_live_runs_temporary_folder_is_left_alone(tmp_path):
    with atomic_dir(tmp_path / "data" / "raw") as live:
        (live / "Actor_01").mkdir()
        concurrent = _start(tmp_path, "download.py", "data/raw",
                            params={"data": {"source": "synthetic", "actors": ["02"], "synthetic_clip_seconds": 0.3}})
        _, stderr = concurrent.communicate(timeout=300)
        assert concurrent.returncode == 0, stderr
        assert (live / "Actor_01").is_dir()  # still being filled by this (live) run
        assert _stale_dirs(tmp_path / "data") == [live]
    assert [p.name for p in (tmp_path / "data/raw").iterdir()] == ["Actor_01"]
    assert _stale_dirs(tmp_path / "data") == []


# ----------------------------------------------------------------------------- Ctrl-C is one line


def test_ctrl_c_while_a_stage_imports_torch_is_the_one_interrupted_line(tmp_path):
    stage = _start(tmp_path, "train.py", "manifest.csv", "m.safetensors", "train",
                   params={"train": {}})
    _wait_for(lambda: "libtorch_cpu" in _maps(stage.pid), "the stage to load torch")  # then 1 s of torch's imports
    stage.send_signal(signal.SIGINT)
    _, stderr = stage.communicate(timeout=60)
    assert (stage.returncode, stderr.splitlines()) == (130, [INTERRUPTED]), stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the layer sweep runs in a pool only with 2 cores")
def test_ctrl_c_while_the_layer_sweeps_pool_starts_is_the_one_interrupted_line(tmp_path):
    from test_train import FAST, _embedded_corpus
    from ravdess_ser.manifest import write_manifest

    rows = _embedded_corpus(tmp_path, range(1, 7))
    write_manifest(rows, tmp_path / "manifest.csv")
    folds = {"1": [1, 2], "2": [3, 4], "3": [5, 6]}
    train = {key: value for key, value in FAST.items() if key not in ("folds", "fold")} | {"folds": folds, "fold": "1"}
    stage = _start(tmp_path, "layer_sweep.py", "manifest.csv", "sweep", params={"train": train},
                   start_new_session=True,  # its own process group, as a terminal's foreground job
                   env={PROCESSES_ENV: "2"})  # a pool, however small
    workers: list[int] = []

    def pool_imports_torch() -> bool:
        workers[:] = _children(stage.pid)
        return any("libtorch_cpu" in _maps(pid) for pid in workers)

    _wait_for(pool_imports_torch, "the pool's processes to load torch")
    os.killpg(stage.pid, signal.SIGINT)  # Ctrl-C: the parent and every pool process get it
    _, stderr = stage.communicate(timeout=120)
    assert stage.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == INTERRUPTED and stderr.count("interrupted") == 1, stderr
    _wait_for(lambda: not any(_alive(pid) for pid in workers), "the pool's processes to end", timeout=30)
    assert not (tmp_path / "sweep").exists()
