"""A warm worker process for the per-actor stages.

DVC runs every stage as its own process. Importing torch and transformers and
loading wav2vec2 costs seconds, which 24 resample and 24 embed stages would
each pay again. So those stage scripts are thin clients: they hand their job
to one long-lived worker that keeps torch imported and the model loaded,
relay its progress bars and log lines, and exit with its result or its
one-line error. DVC still sees one stage per actor, with its own deps, outs
and cache entries, and the outputs are byte-identical to an in-process run
(the same library function runs either way).

A worker serves one interpreter and one version of this package's code (both
are hashed into its socket's name, with the environment variables that change
results), runs one job at a time, and exits after ``RAVDESS_SER_WORKER_IDLE``
seconds (default 60) without one. A client that dies (Ctrl-C, SIGTERM,
SIGKILL) closes its socket; the worker notices at its next progress write and
abandons the job, whose temporaries are removed as in any interrupted run.

``RAVDESS_SER_WORKER=0`` runs the stages in-process instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ravdess_ser.errors import PipelineError

PACKAGE_DIR = Path(__file__).resolve().parent
# Environment variables that change what a job computes or where it finds models.
FINGERPRINT_ENV = ("CUDA_VISIBLE_DEVICES", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT",
                   "OMP_NUM_THREADS", "MKL_NUM_THREADS")
START_TIMEOUT_SECONDS = 120.0


class ClientGone(BaseException):
    """The stage process went away; like KeyboardInterrupt, this unwinds the job and removes its temporaries."""


# ----------------------------------------------------------------------------- tasks


def _resample_actor(raw_dir: str, out_dir: str, config: dict) -> int:
    from ravdess_ser.audio import ResampleConfig, resample_actor

    return len(resample_actor(Path(raw_dir), Path(out_dir), ResampleConfig(**config)))


_embedders: dict[tuple, Any] = {}


def _model_state(model: str) -> tuple:
    """What identifies a local model folder's contents cheaply: its files' paths, sizes and mtimes."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return ()
    return tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))


def _embed_actor(audio_dir: str, out_dir: str, config: dict) -> int:
    from ravdess_ser.embed import EmbedConfig, Wav2Vec2Embedder, embed_actor

    embed_config = EmbedConfig(**config)
    key = (embed_config, _model_state(embed_config.model))
    if key not in _embedders:
        _embedders.clear()  # one model at a time keeps the worker's memory bounded
        _embedders[key] = Wav2Vec2Embedder(embed_config)
    return len(embed_actor(_embedders[key], Path(audio_dir), Path(out_dir)))


TASKS: dict[str, Callable[..., Any]] = {"resample_actor": _resample_actor, "embed_actor": _embed_actor}


# ----------------------------------------------------------------------------- client


def code_fingerprint() -> str:
    digest = hashlib.sha256(sys.executable.encode())
    for source in sorted(PACKAGE_DIR.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    for name in FINGERPRINT_ENV:
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    return digest.hexdigest()[:16]


def socket_path() -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"ravdess-ser-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    return base / f"worker-{code_fingerprint()}.sock"


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _connect_or_start(path: Path) -> socket.socket:
    sock = _connect(path)
    if sock is not None:
        return sock
    # One client starts the worker; others wait on the lock and then connect to it.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)
        if sock is not None:
            return sock
        log_path = path.with_suffix(".log")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "ravdess_ser.worker", str(path)],
                cwd=PACKAGE_DIR.parent, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock is not None:
                return sock
            if process.poll() is not None:
                break
            time.sleep(0.05)
    raise PipelineError(f"the stage worker did not start (see {log_path}); set RAVDESS_SER_WORKER=0 to run in-process")


def run_task(task: str, **kwargs: Any) -> Any:
    """Run a task in the warm worker (started on first use), or in-process with RAVDESS_SER_WORKER=0."""
    if os.environ.get("RAVDESS_SER_WORKER", "1") == "0":
        return TASKS[task](**kwargs)
    with _connect_or_start(socket_path()) as sock:
        request = {"task": task, "kwargs": kwargs, "cwd": os.getcwd()}
        sock.sendall(json.dumps(request).encode() + b"\n")
        for line in sock.makefile("r", encoding="utf-8"):
            message = json.loads(line)
            if "stderr" in message:
                sys.stderr.write(message["stderr"])
                sys.stderr.flush()
            elif "result" in message:
                return message["result"]
            elif "error" in message:
                raise PipelineError(message["error"])
            elif "crash" in message:
                raise RuntimeError(f"the stage worker failed:\n{message['crash']}")
    raise PipelineError("the stage worker ended before finishing the job; run again, or set RAVDESS_SER_WORKER=0")


# ----------------------------------------------------------------------------- worker


class _ClientStream(io.TextIOBase):
    """stderr for the duration of a job: every write goes to the client, or raises ClientGone."""

    def __init__(self, conn: socket.socket):
        self.conn = conn

    def send(self, message: dict) -> None:
        try:
            self.conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            raise ClientGone from None

    def write(self, text: str) -> int:
        if text:
            self.send({"stderr": text})
        return len(text)

    def isatty(self) -> bool:
        return False


class _CurrentStderrHandler(logging.StreamHandler):
    """Logs to whatever sys.stderr is now, so each job's log lines reach its own client."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _handle(conn: socket.socket) -> None:
    request = json.loads(conn.makefile("r", encoding="utf-8").readline())
    stream = _ClientStream(conn)
    previous_cwd = os.getcwd()
    try:
        os.chdir(request["cwd"])
        with contextlib.redirect_stderr(stream):
            result = TASKS[request["task"]](**request["kwargs"])
        stream.send({"result": result})
    except PipelineError as error:
        stream.send({"error": str(error)})
    except ClientGone:
        print(f"client went away; abandoned {request['task']} {request['kwargs']}", flush=True)
    except Exception:
        stream.send({"crash": traceback.format_exc()})
    finally:
        os.chdir(previous_cwd)


def serve(path: Path, idle_seconds: float) -> None:
    # Import the heavy libraries before listening, so the first client's wait is the only one.
    import torch  # noqa: F401
    import torchaudio.functional  # noqa: F401
    from transformers import Wav2Vec2Model  # noqa: F401

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        handlers=[_CurrentStderrHandler()])
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(staging))
    server.listen(8)
    os.replace(staging, path)  # clients see the socket only once it accepts connections
    inode = path.stat().st_ino
    server.settimeout(idle_seconds)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            _serve_connection(conn)
        # Idle: stop advertising the socket first, then serve anyone who connected meanwhile.
        _unlink_if_ours(path, inode)
        server.setblocking(False)
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                break
            _serve_connection(conn)
    finally:
        _unlink_if_ours(path, inode)
        server.close()


def _serve_connection(conn: socket.socket) -> None:
    with conn:
        conn.setblocking(True)
        _handle(conn)


def _unlink_if_ours(path: Path, inode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_ino == inode:
            path.unlink()


def main() -> None:
    serve(Path(sys.argv[1]), float(os.environ.get("RAVDESS_SER_WORKER_IDLE", "60")))


if __name__ == "__main__":
    main()
