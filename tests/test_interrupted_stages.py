"""Stages killed at any point: no temporary outlives the next run.

Real stage processes and real signals: SIGKILL during the download stage's synthetic generation.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO_ROOT
from ravdess_ser.atomic import TEMP_PREFIX, atomic_dir


def _start(cwd: Path, script: str, *args: str, params: dict, **popen) -> subprocess.Popen:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "stages" / script), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# ----------------------------------------------------------------------------- kill -9 leaves temporaries


def _stale_dirs(data: Path) -> list[Path]:
    return sorted(data.glob(TEMP_PREFIX + "raw-*"))


def _killed_synthetic_generation(tmp_path: Path) -> Path:
    """A download stage SIGKILLed while it writes the synthetic corpus: its temporary folder stays behind."""
    stage = _start(tmp_path, "download.py", "data/raw", params={"data": {"source": "synthetic"}})  # 24 actors
    data = tmp_path / "data"
    _wait_for(lambda: any(any(d.glob("Actor_*/*.wav")) for d in _stale_dirs(data)), "the first synthetic clips")
    stage.kill()
    stage.communicate()
    assert stage.returncode == -signal.SIGKILL
    (stale,) = _stale_dirs(data)
    assert any(stale.glob("Actor_01/*.wav")) and not (data / "raw").exists()
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
