"""The warm worker on a shared server: another local user (``nobody``) cannot hijack it.

Each attack from the issue, with two real uids: this test runs as root (as CI does) and plays the other user with
``nobody``, whose side runs Debian's /usr/bin/python3 (the venv's interpreter lives under /root, which nobody cannot
enter). Every attack must fail, the victim's job must still be done (in-process where the worker is refused), and
a normal run must still go through the worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from conftest import tone, write_wav
from ravdess_ser.audio import ResampleConfig, resample_actor_job
from ravdess_ser.worker import code_fingerprint, run_task, runtime_dir, socket_path

pytestmark = pytest.mark.skipif(os.getuid() != 0 or shutil.which("runuser") is None,
                                reason="needs root, to act as a second user (nobody)")
OTHER_PYTHON = "/usr/bin/python3"


@pytest.fixture
def shared_tmp(monkeypatch, tmp_path):  # tmp_path first: it must not live in the stand-in /tmp
    """A fresh world-writable, sticky folder standing in for /tmp, with no XDG_RUNTIME_DIR (as under cron or CI)."""
    base = Path(tempfile.mkdtemp(prefix="rs-sec-", dir="/tmp"))
    base.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("RAVDESS_SER_WORKER", "1")
    monkeypatch.setenv("RAVDESS_SER_WORKER_IDLE", "20")
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield base
    _stop_workers(base)
    tempfile.tempdir = None
    shutil.rmtree(base, ignore_errors=True)


def _stop_workers(base: Path) -> None:
    found = subprocess.run(["pgrep", "-f", f"ravdess_ser.worker {base}"], capture_output=True, text=True).stdout
    for pid in found.split():
        os.kill(int(pid), signal.SIGTERM)


def as_other_user(code: str, *args: str, wait: bool = True):
    command = ["runuser", "-u", "nobody", "--", OTHER_PYTHON, "-c", code, *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _job(tmp_path: Path) -> dict:
    raw = tmp_path / "raw"
    write_wav(raw / "03-01-01-01-01-01-01.wav", tone(0.2, 48_000))
    return {"raw_dir": str(raw), "out_dir": str(tmp_path / "16k"), "config": asdict(ResampleConfig())}


def _expected_folder(base: Path) -> Path:
    return base / f"ravdess-ser-{os.getuid()}"


# A fake worker, as the other user: listens on the path it is given, records what it receives, answers success.
FAKE_WORKER = """
import os, socket, sys
path, record = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path); os.chmod(path, 0o777); server.listen(4); server.settimeout(20)
open(record, "w").close()
try:
    while True:
        conn, _ = server.accept()
        data = conn.recv(65536)
        with open(record, "ab") as handle: handle.write(data)
        try: conn.sendall(b'{"stderr": "\\x1b]0;pwned\\x07"}\\n{"result": 999}\\n')
        except OSError: pass
        conn.close()
except socket.timeout:
    pass
"""


def test_a_folder_another_user_created_is_refused_and_the_job_runs_in_process(shared_tmp, tmp_path, capfd):
    folder = _expected_folder(shared_tmp)
    assert as_other_user(f"import os; os.mkdir({str(folder)!r}); os.chmod({str(folder)!r}, 0o777)").returncode == 0
    record = shared_tmp / "record"
    fake = as_other_user(FAKE_WORKER, str(folder / f"worker-{code_fingerprint()}.sock"), str(record), wait=False)
    time.sleep(1.0)
    try:
        assert run_task(resample_actor_job, **_job(tmp_path)) == 1
    finally:
        fake.kill()
    err = capfd.readouterr().err
    assert f"not using the stage worker: {folder} is owned by uid 65534" in err and "running in-process" in err
    assert record.read_bytes() == b"", "the job reached the other user's socket"
    assert (tmp_path / "16k" / "03-01-01-01-01-01-01.wav").exists()
    assert "pwned" not in err


def test_a_symlink_at_the_lock_path_is_not_followed(shared_tmp, tmp_path, capfd):
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    lock = socket_path().with_suffix(".lock")  # creates the private folder
    lock.symlink_to(victim)
    assert run_task(resample_actor_job, **_job(tmp_path)) == 1
    assert victim.read_text() == "precious\n"
    assert "is a symlink; running in-process" in capfd.readouterr().err


def test_a_socket_served_by_another_user_is_refused_before_the_job_is_sent(shared_tmp, tmp_path, capfd):
    theirs = Path(tempfile.mkdtemp(dir=shared_tmp))
    theirs.chmod(0o777)
    record = theirs / "record"
    fake = as_other_user(FAKE_WORKER, str(theirs / "fake.sock"), str(record), wait=False)
    deadline = time.monotonic() + 20
    while not (theirs / "fake.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The other user's socket at the expected name (planted here with root's help, as no one else could).
    socket_path().symlink_to(theirs / "fake.sock")
    try:
        assert run_task(resample_actor_job, **_job(tmp_path)) == 1
    finally:
        fake.kill()
    err = capfd.readouterr().err
    assert "is served by uid 65534, not by you" in err and "running in-process" in err
    assert record.read_bytes() == b"" and "pwned" not in err
    assert (tmp_path / "16k" / "03-01-01-01-01-01-01.wav").exists()


def test_with_umask_000_another_user_cannot_run_jobs_in_the_victims_worker(shared_tmp, tmp_path):
    previous = os.umask(0)
    try:
        assert run_task(resample_actor_job, **_job(tmp_path)) == 1  # starts the worker
    finally:
        os.umask(previous)
    path = socket_path()
    assert (runtime_dir().stat().st_mode & 0o777) == 0o700
    assert (path.stat().st_mode & 0o777) == 0o600
    # Give the other user a way to the socket (a hard link in a public folder), and let it send a job that would
    # read the victim's private folder.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    write_wav(private / "03-01-01-01-01-01-01.wav", tone(0.2, 48_000))
    public = shared_tmp / "public"
    public.mkdir()
    public.chmod(0o777)
    os.link(path, public / "worker.sock")
    (public / "worker.sock").chmod(0o777)
    job = ('{"task": "ravdess_ser.audio:resample_actor_job", "kwargs": {"raw_dir": "%s", "out_dir": "%s", '
           '"config": {}}, "cwd": "/", "workspace": "x", "code": "x"}' % (private, public / "stolen"))
    attack = as_other_user(
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
        "try:\n    s.sendall(sys.argv[2].encode() + b'\\n')\n    print(repr(s.recv(65536)))\n"
        "except OSError:\n    print(repr(b''))", str(public / "worker.sock"), job)
    assert attack.returncode == 0, attack.stderr
    assert attack.stdout.strip() == "b''", "the worker answered another user"
    assert not (public / "stolen").exists()
    log = path.with_suffix(".log").read_text()
    assert "refused a connection from uid 65534" in log


def test_a_normal_run_still_uses_the_worker(shared_tmp, tmp_path):
    assert run_task(resample_actor_job, **_job(tmp_path)) == 1
    path = socket_path()
    assert path.is_socket() and _expected_folder(shared_tmp) == path.parent
    server = socket.socket(socket.AF_UNIX)
    server.connect(str(path))
    server.close()
