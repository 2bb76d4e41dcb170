"""The warm stage worker, used for real: separate processes over a Unix socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, tone, write_wav
from ravdess_ser.atomic import TEMP_PREFIX
from ravdess_ser.audio import ResampleConfig, resample_actor_job
from ravdess_ser.embed import EmbedConfig, embed_actor_job
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import speech_clip_names
from ravdess_ser.worker import run_task, socket_path


@pytest.fixture
def worker_env(monkeypatch):
    """A private socket folder (short path: Unix socket names are limited to ~100 bytes), a short idle time."""
    runtime = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("RAVDESS_SER_WORKER", "1")
    monkeypatch.setenv("RAVDESS_SER_WORKER_IDLE", "20")
    yield runtime
    path = socket_path()
    if path.exists():  # stop the worker: a SIGTERM ends serve() and removes the socket
        for pid in _worker_pids(path):
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(runtime, ignore_errors=True)


def _worker_pids(path: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"ravdess_ser.worker {path}"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _actor(root: Path, clips: int, seconds: float = 0.5) -> Path:
    folder = root / "Actor_01"
    for index, clip in enumerate(speech_clip_names(1)[:clips]):
        write_wav(folder / clip.filename, tone(seconds, 16_000, 150.0 + 7 * index), 16_000)
    return folder


def _embed_config(tiny_model) -> dict:
    return asdict(EmbedConfig(model=str(tiny_model)))


def test_worker_output_is_byte_identical_to_in_process(tmp_path, tiny_model, worker_env, monkeypatch):
    audio = _actor(tmp_path, clips=4)
    assert run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "w"), config=_embed_config(tiny_model)) == 4
    assert socket_path().exists() and len(_worker_pids(socket_path())) == 1
    monkeypatch.setenv("RAVDESS_SER_WORKER", "0")
    run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "p"), config=_embed_config(tiny_model))
    for path in sorted(p for p in (tmp_path / "p").rglob("*") if p.is_file()):
        assert (tmp_path / "w" / path.relative_to(tmp_path / "p")).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "GLIBC_TUNABLES", "RAVDESS_SER_CPU_MASK", "ATEN_CPU_CAPABILITY",
                                      "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES"])
def test_a_stage_that_picks_other_cpu_kernels_gets_a_worker_of_its_own(variable, monkeypatch):
    """A warm worker started without benchmarks/cpu_mask.py (or an ISA variable) would compute another CPU's bits."""
    before = socket_path()
    monkeypatch.setenv(variable, os.environ.get(variable, "") + "AVX2")
    assert socket_path() != before


def test_worker_is_reused_and_relays_one_line_errors(tmp_path, tiny_model, worker_env):
    audio = _actor(tmp_path, clips=2)
    raw = tmp_path / "raw" / "Actor_01"
    write_wav(raw / "03-01-01-01-01-01-01.wav", tone(0.3, 48_000))
    run_task(resample_actor_job, raw_dir=str(raw), out_dir=str(tmp_path / "16k"), config=asdict(ResampleConfig()))
    first = _worker_pids(socket_path())
    run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "e"), config=_embed_config(tiny_model))
    assert _worker_pids(socket_path()) == first
    bad = _embed_config(tiny_model) | {"layer": 17}
    with pytest.raises(PipelineError, match="embed.layer=17 is out of range"):
        run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "x"), config=bad)
    with pytest.raises(PipelineError, match="audio folder does not exist"):
        run_task(embed_actor_job, audio_dir=str(tmp_path / "nowhere"), out_dir=str(tmp_path / "x"), config=_embed_config(tiny_model))
    assert _worker_pids(socket_path()) == first  # errors do not kill the worker


def test_a_killed_stage_leaves_no_partial_file_and_the_worker_serves_on(tmp_path, tiny_model, worker_env, monkeypatch):
    audio = _actor(tmp_path, clips=60, seconds=3.0)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"embed": params["embed"] | {"model": str(tiny_model)}}))
    out = tmp_path / "emb"
    stage = subprocess.Popen([sys.executable, "-m", "stages.embed", str(audio), str(out)],
                             cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.npy"))) < 3:
        time.sleep(0.02)
    stage.kill()
    stage.wait()
    log = socket_path().with_suffix(".log")
    deadline = time.monotonic() + 60  # the worker notices at its next progress write
    while time.monotonic() < deadline and "client went away; abandoned ravdess_ser.embed:embed_actor_job" not in log.read_text():
        time.sleep(0.05)
    assert "client went away; abandoned ravdess_ser.embed:embed_actor_job" in log.read_text()
    done = sorted(out.glob("*.npy"))
    assert 3 <= len(done) < 60, "the stage was not killed partway through"
    assert not list(out.glob(TEMP_PREFIX + "*"))
    for path in done:
        assert np.load(path).shape[1] == 64  # every file that looks complete is complete
    # The worker still serves, and a rerun gives the same bytes as an uninterrupted in-process run.
    run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(out), config=_embed_config(tiny_model))
    monkeypatch.setenv("RAVDESS_SER_WORKER", "0")
    run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "ref"), config=_embed_config(tiny_model))
    reference = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*") if p.is_file())
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == reference
    for path in reference:
        assert (out / path).read_bytes() == (tmp_path / "ref" / path).read_bytes()


def test_an_idle_worker_exits_and_removes_its_socket(tmp_path, tiny_model, worker_env, monkeypatch):
    monkeypatch.setenv("RAVDESS_SER_WORKER_IDLE", "1")
    raw = tmp_path / "raw"
    write_wav(raw / "03-01-01-01-01-01-01.wav", tone(0.2, 48_000))
    run_task(resample_actor_job, raw_dir=str(raw), out_dir=str(tmp_path / "16k"), config=asdict(ResampleConfig()))
    path = socket_path()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (path.exists() or _worker_pids(path)):
        time.sleep(0.1)
    assert not path.exists() and not _worker_pids(path)
    assert path.with_suffix(".log").read_text().endswith("stopped after 1 s without a job\n")


def test_a_worker_start_removes_the_files_of_ended_workers_and_no_others(tmp_path, worker_env, monkeypatch):
    """Each code version has a worker of its own; the files of those that ended an hour ago go at the next start."""
    raw = tmp_path / "raw"
    write_wav(raw / "03-01-01-01-01-01-01.wav", tone(0.2, 48_000))

    def worker_for(version: str) -> Path:  # HF_HUB_OFFLINE is in the fingerprint: each value is another worker
        monkeypatch.setenv("HF_HUB_OFFLINE", version)
        run_task(resample_actor_job, raw_dir=str(raw), out_dir=str(tmp_path / version), config=asdict(ResampleConfig()))
        return socket_path()

    def files(sock: Path) -> list[Path]:
        return [path for path in (sock, sock.with_suffix(".lock"), sock.with_suffix(".log")) if path.exists()]

    hour_ago = time.time() - 3700
    killed = worker_for("killed")
    (pid,) = _worker_pids(killed)
    os.kill(pid, signal.SIGKILL)  # leaves its socket file behind
    while Path(f"/proc/{pid}").exists() and subprocess.run(["ps", "-o", "stat=", str(pid)], capture_output=True,
                                                           text=True).stdout.strip() not in ("", "Z"):
        time.sleep(0.05)
    running = worker_for("running")
    folder = running.parent
    orphan = folder / "worker-orphan.lock"  # a client that died before it started the worker: no log
    orphan.touch(mode=0o600)
    recent = folder / "worker-recent.sock"  # ended, but its log was written within the hour
    starting = folder / "worker-starting.sock"  # a client holds its lock while the worker starts
    for sock in (recent, starting):
        sock.with_suffix(".lock").touch(mode=0o600)
        sock.with_suffix(".log").touch(mode=0o600)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; lock = open(sys.argv[1], 'a'); "
                               "fcntl.flock(lock, fcntl.LOCK_EX); print(flush=True); time.sleep(60)",
                               str(starting.with_suffix(".lock"))], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        for sock in (killed, running, starting):
            os.utime(sock.with_suffix(".log"), (hour_ago, hour_ago))
        assert len(files(killed)) == 3
        worker_for("next")
        assert files(killed) == [] and not orphan.exists()
        assert len(files(running)) == 3 and len(files(recent)) == 2 and len(files(starting)) == 2
        first = _worker_pids(running)
        assert worker_for("running") == running and _worker_pids(running) == first
    finally:
        holder.kill()
        subprocess.run(["pkill", "-f", f"ravdess_ser.worker {folder}"])


def test_a_worker_killed_mid_job_leaves_no_temporary_behind(tmp_path, tiny_model, worker_env):
    audio = _actor(tmp_path, clips=60, seconds=3.0)
    out = tmp_path / "emb"
    outcome = {}

    def stage():
        try:
            run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(out), config=_embed_config(tiny_model))
        except PipelineError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=stage)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.npy"))) < 3:
        time.sleep(0.02)
    (out / f"{TEMP_PREFIX}being-written.npy").write_bytes(b"half")  # what the worker was writing when it died
    for pid in _worker_pids(socket_path()):
        os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert "the stage worker ended before finishing the job" in outcome["error"]
    assert not list(out.rglob(TEMP_PREFIX + "*"))


def test_an_unexpected_error_in_the_worker_is_one_line_pointing_at_its_log(tmp_path, tiny_model, worker_env):
    audio = _actor(tmp_path, clips=1)
    with pytest.raises(PipelineError) as raised:
        run_task(embed_actor_job, audio_dir=str(audio), out_dir=str(tmp_path / "e"),
                 config=_embed_config(tiny_model) | {"no_such_field": 1})
    message = str(raised.value)
    log = socket_path().with_suffix(".log")
    assert message.startswith("the stage worker failed: TypeError: ") and f"(details in {log})" in message
    assert "\n" not in message and "Traceback" in log.read_text()


def test_a_workspace_removed_and_made_again_at_its_path_gets_a_worker_of_its_own(tmp_path, worker_env):
    """rm -rf clone && git clone ... clone, then a stage within the old worker's idle time: the old worker, whose
    folder is gone, declines the job and exits, and the stage runs in a worker started in the new folder."""
    project = tmp_path / "project"

    def lay_out():
        for package in ("ravdess_ser", "stages"):
            shutil.copytree(REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("params.yaml", "requirements.txt"):
            shutil.copy(REPO_ROOT / name, project)
        write_wav(project / "raw" / "Actor_01" / "03-01-01-01-01-01-01.wav", tone(0.2, 48_000))

    def resample():
        return subprocess.run([sys.executable, "-m", "stages.resample", "raw/Actor_01", "16k/Actor_01"],
                              cwd=project, capture_output=True, text=True, timeout=300)

    try:
        lay_out()
        assert resample().returncode == 0
        (old,) = subprocess.run(["pgrep", "-f", f"ravdess_ser.worker {worker_env}"], capture_output=True,
                                text=True).stdout.split()
        shutil.rmtree(project)
        lay_out()
        again = resample()
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
        assert (project / "16k" / "Actor_01" / "03-01-01-01-01-01-01.wav").is_file()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{old}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{old}").exists(), "the old workspace's worker is still running"
    finally:
        subprocess.run(["pkill", "-f", f"ravdess_ser.worker {worker_env}"])
