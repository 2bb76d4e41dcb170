"""A warm worker process for the per-actor stages, private to one user and one workspace's code.

DVC runs every stage as its own process. Importing torch and transformers and
loading wav2vec2 costs seconds, which 24 resample and 24 embed stages would
each pay again. So those stage scripts are thin clients: they hand their job
to one long-lived worker that keeps torch imported and the model loaded,
relay its progress bars and log lines, and exit with its result or its
one-line error. DVC still sees one stage per actor, with its own deps, outs
and cache entries, and the outputs are byte-identical to an in-process run
(the same library function runs either way).

What a worker runs is what DVC recorded. A worker belongs to one workspace
(the folder this package was imported from: a clone, or a queued or ``--temp``
experiment's copy), one version of its code (every module's bytes), one
interpreter and the environment variables that change results; all of them
are hashed into its socket's name. It imports every module of the package
before it serves, checks that the code it loaded still has that hash, and
refuses a job from another workspace or another version of the code.

It is private to its user, the way OpenSSH's agent and tmux keep theirs: the
socket lives in ``$XDG_RUNTIME_DIR/ravdess-ser`` or ``/tmp/ravdess-ser-<uid>``,
which must be a real folder owned by the user with mode 0700 (else the stage
says so in one line and runs in-process); files in it are opened without
following symlinks; and both ends check the other's uid with ``SO_PEERCRED``.
Jobs name a task from :data:`TASKS` and carry JSON, never code.

A workspace removed and made again at the same path (``rm -rf clone && git clone ... clone``, or a benchmark's
scratch project) has the same name and code: its old worker, which holds the removed folder, declines the job and
exits, and the client starts a worker in the new folder.

It runs one job at a time and exits after ``RAVDESS_SER_WORKER_IDLE`` seconds (default 60) without one; the next
worker to start removes its socket, lock and log an hour after that. A client that dies (Ctrl-C, SIGTERM, SIGKILL)
closes its socket; the worker notices at its next progress write and abandons the job, whose temporaries are
removed as in any interrupted run.
``RAVDESS_SER_WORKER=0`` runs the stages in-process instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib
import io
import json
import logging
import os
import pkgutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ravdess_ser.atomic import remove_stale_temporaries
from ravdess_ser.errors import PipelineError

PACKAGE_DIR = Path(__file__).resolve().parent
WORKSPACE = PACKAGE_DIR.parent
# Environment variables that change what a job computes or where it finds models: among them those that pick
# narrower CPU kernels, which change the frames' last bits (benchmarks/cpu_mask.py sets the last three).
FINGERPRINT_ENV = ("CUDA_VISIBLE_DEVICES", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT",
                   "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                   "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE",
                   "LD_PRELOAD", "GLIBC_TUNABLES", "RAVDESS_SER_CPU_MASK")
# The jobs a worker runs, by name: "module:function" of a function taking and returning JSON values.
TASKS = ("ravdess_ser.audio:resample_actor_job", "ravdess_ser.embed:embed_actor_job")
START_TIMEOUT_SECONDS = 120.0
# How long an ended worker's files stay: its log is where a failed job's one-line error points.
ENDED_WORKER_LOG_SECONDS = 3600.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

log = logging.getLogger(__name__)


class ClientGone(BaseException):
    """The stage process went away; like KeyboardInterrupt, this unwinds the job and removes its temporaries."""


class NotPrivate(Exception):
    """The socket folder or the peer is not the user's own; the stage runs in-process instead."""


# ----------------------------------------------------------------------------- identity and the private folder


def code_fingerprint() -> str:
    """Workspace, interpreter, every module's bytes and the result-changing environment, hashed."""
    digest = hashlib.sha256(f"{WORKSPACE}\0{sys.executable}\0".encode())
    for source in sorted(PACKAGE_DIR.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for name in FINGERPRINT_ENV:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()[:24]


def _is_private_folder(path: Path) -> str | None:
    """None if ``path`` is a real folder owned by this user with no group or other access; else what is wrong."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    if info.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def runtime_dir() -> Path:
    """The user's private socket folder, created if missing; raises NotPrivate if it is not private."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _is_private_folder(Path(xdg)) is None:
        folder = Path(xdg) / "ravdess-ser"
    else:
        folder = Path(tempfile.gettempdir()) / f"ravdess-ser-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    problem = _is_private_folder(folder)
    if problem:
        raise NotPrivate(f"{folder} {problem}")
    return folder


def socket_path() -> Path:
    return runtime_dir() / f"worker-{code_fingerprint()}.sock"


def _open_private(path: Path, flags: int) -> int:
    """Open (creating, mode 0600) a file in the private folder: never through a symlink, never another's file."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotPrivate(f"{path} is a symlink") from None
        raise
    if os.fstat(fd).st_uid != os.getuid():
        os.close(fd)
        raise NotPrivate(f"{path} is not yours")
    return fd


def peer_uid(sock: socket.socket) -> int:
    return _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))[1]


# ----------------------------------------------------------------------------- client


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    uid = peer_uid(sock)
    if uid != os.getuid():
        sock.close()
        raise NotPrivate(f"the worker socket {path} is served by uid {uid}, not by you")
    return sock


def _lock_worker(lock_path: Path, flags: int = fcntl.LOCK_EX) -> int | None:
    """An open, locked ``lock_path`` (None if ``LOCK_NB`` is in ``flags`` and another process holds it).

    Lock files of ended workers are removed by :func:`_remove_ended_workers`, which holds the lock as it unlinks: a
    lock taken on a file that is no longer at its path locks nothing, so it is taken again on the new file.
    """
    while True:
        fd = _open_private(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return None
        held = os.fstat(fd)
        with contextlib.suppress(FileNotFoundError):
            current = os.lstat(lock_path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return fd
        os.close(fd)


def _remove_ended_workers(folder: Path, keep: Path) -> None:
    """Remove the socket, lock and log of every other worker in ``folder`` that has ended, once its log has been
    quiet for :data:`ENDED_WORKER_LOG_SECONDS` (a failed job's one-line error points at that log).

    Each code version has its own worker, so without this the folder keeps dozens after a day of edits and tests.
    A worker holds a shared lock on its log for as long as it runs (its stdout is that open file), and a client
    starting one holds its lock file: a worker is ended when both locks can be taken.
    """
    for lock_path in folder.glob("worker-*.lock"):
        if lock_path == keep.with_suffix(".lock"):
            continue
        log_path, sock_path = lock_path.with_suffix(".log"), lock_path.with_suffix(".sock")
        try:
            with contextlib.suppress(FileNotFoundError):  # no log: its client died before starting it
                if time.time() - os.lstat(log_path).st_mtime < ENDED_WORKER_LOG_SECONDS:
                    continue
            lock = _lock_worker(lock_path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (OSError, NotPrivate):
            continue
        if lock is None:
            continue
        try:
            log_fd = _open_private(log_path, os.O_RDONLY)
            try:
                fcntl.flock(log_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(log_fd)
            for stale in (sock_path, log_path, lock_path):  # the lock last: it guards the other two
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        except (OSError, NotPrivate):  # BlockingIOError: the worker runs
            pass
        finally:
            os.close(lock)


def _connect_or_start(path: Path) -> socket.socket:
    sock = _connect(path)
    if sock is not None:
        return sock
    # One client starts the worker; others wait on the lock and then connect to it.
    lock = _lock_worker(path.with_suffix(".lock"))
    try:
        sock = _connect(path)
        if sock is not None:
            return sock
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a killed worker's socket: nobody answers it, and we hold the lock
        _remove_ended_workers(path.parent, keep=path)
        log_path = path.with_suffix(".log")
        log_fd = _open_private(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            # Held by the worker's stdout until it ends: while it is, _remove_ended_workers leaves its files alone.
            fcntl.flock(log_fd, fcntl.LOCK_SH)
            process = subprocess.Popen(
                [sys.executable, "-m", "ravdess_ser.worker", str(path)],
                cwd=WORKSPACE, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, start_new_session=True,
                env=worker_environment(),
            )
        finally:
            os.close(log_fd)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock is not None:
                return sock
            if process.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        os.close(lock)
    raise PipelineError(f"the stage worker did not start (see {log_path}); set RAVDESS_SER_WORKER=0 to run in-process")


def worker_environment() -> dict[str, str]:
    """This process's environment, with OpenMP's idle threads sleeping at once (unless OMP_WAIT_POLICY is set).

    GNU OpenMP's threads spin for a while after each parallel region, waiting for the next. On a machine whose cores
    another process wants, that spinning takes the core from the thread doing the work: with other jobs on the 2 cores
    here, one actor's embed stage took 38 s instead of 8 s, with the same bytes out.
    """
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def task_name(function: Callable) -> str:
    name = f"{function.__module__}:{function.__name__}"
    if name not in TASKS:
        raise ValueError(f"{name} is not a worker task ({', '.join(TASKS)})")
    return name


def run_task(function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function(**kwargs)`` in the warm worker (started on first use), or in-process.

    In-process with ``RAVDESS_SER_WORKER=0``, or when the socket folder is not private (said in one line).
    """
    name = task_name(function)
    if os.environ.get("RAVDESS_SER_WORKER", "1") == "0":
        return function(**kwargs)
    try:
        sock = _connect_or_start(socket_path())
    except NotPrivate as problem:
        print(f"warning: not using the stage worker: {problem}; running in-process", file=sys.stderr)
        return function(**kwargs)
    request = {"task": name, "kwargs": kwargs, "cwd": os.getcwd(), "workspace": str(WORKSPACE),
               "code": code_fingerprint()}
    outcome = _relay(sock, request)
    if outcome is _DECLINED:  # a worker of a removed workspace at this path: it has gone, start another
        outcome = _relay(_connect_or_start(socket_path()), request)
    if outcome is not _ENDED and outcome is not _DECLINED:
        return outcome
    # The worker died mid-job (killed, out of memory): what it was writing would outlive it.
    if "out_dir" in kwargs:
        remove_stale_temporaries(kwargs["out_dir"], recursive=True)
    raise PipelineError("the stage worker ended before finishing the job (its partial files were removed); "
                        "run again, or set RAVDESS_SER_WORKER=0")


_DECLINED, _ENDED = object(), object()


def _relay(sock: socket.socket, request: dict) -> Any:
    """Send ``request`` on ``sock`` and relay the worker's stderr: the job's result, or :data:`_DECLINED` if the
    worker declined it, or :data:`_ENDED` if the worker went away without a result."""
    with sock:
        try:
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
                elif "declined" in message:
                    return _DECLINED
        except ConnectionError:  # reset or broken pipe: the worker died
            pass
    return _ENDED


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


def _checked_request(request: dict, fingerprint: str) -> Callable[..., Any]:
    if request.get("workspace") != str(WORKSPACE) or request.get("code") != fingerprint:
        raise PipelineError(f"this stage worker serves {WORKSPACE} at code {fingerprint}, not "
                            f"{request.get('workspace')} at {request.get('code')}; run the stage again")
    if request.get("task") not in TASKS:
        raise PipelineError(f"the stage worker runs {', '.join(TASKS)} only, not {request.get('task')!r}")
    module, function = request["task"].split(":")
    return getattr(importlib.import_module(module), function)


def _handle(conn: socket.socket, fingerprint: str, log_path: Path) -> None:
    stream = _ClientStream(conn)
    request: dict = {}
    previous_cwd = os.getcwd()
    try:
        request = json.loads(conn.makefile("r", encoding="utf-8").readline())
        function = _checked_request(request, fingerprint)
        os.chdir(request["cwd"])
        with contextlib.redirect_stderr(stream):
            result = function(**request["kwargs"])
        stream.send({"result": result})
    except PipelineError as error:
        stream.send({"error": str(error)})
    except ClientGone:
        print(f"client went away; abandoned {request.get('task')} {request.get('kwargs')}", flush=True)
    except Exception as error:
        # The details go to the worker's log; the stage prints one line that points there.
        print(f"job {request.get('task')} {request.get('kwargs')} failed:\n{traceback.format_exc()}", flush=True)
        stream.send({"error": f"the stage worker failed: {type(error).__name__}: {error} (details in {log_path})"})
    finally:
        os.chdir(previous_cwd)


def _import_package() -> None:
    """Every module, before the code is fingerprinted: a job never imports code newer than the socket's name."""
    for module in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        importlib.import_module(f"ravdess_ser.{module.name}")


def serve(path: Path, idle_seconds: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        handlers=[_CurrentStderrHandler()])
    # The heavy libraries before listening, so the first client's wait is the only one.
    import torch  # noqa: F401
    import torchaudio.transforms  # noqa: F401
    from transformers import Wav2Vec2Model  # noqa: F401

    _import_package()
    fingerprint = code_fingerprint()
    if path.name != f"worker-{fingerprint}.sock":
        print(f"the code changed while the worker started ({fingerprint}); not serving {path}", flush=True)
        return
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous_umask = os.umask(0o177)  # the socket file is the user's alone (the folder is too)
    try:
        server.bind(str(path))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return  # another worker already serves this code
        raise
    finally:
        os.umask(previous_umask)
    server.listen(8)
    inode = path.stat().st_ino
    server.settimeout(idle_seconds)
    workspace = os.open(WORKSPACE, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            if _workspace_replaced(workspace):
                _decline_all(server, conn, path, inode)
                return
            _serve_connection(conn, fingerprint, path.with_suffix(".log"))
        # Idle: stop advertising the socket first, then serve anyone who connected meanwhile.
        _unlink_if_ours(path, inode)
        server.setblocking(False)
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                break
            _serve_connection(conn, fingerprint, path.with_suffix(".log"))
    finally:
        os.close(workspace)
        _unlink_if_ours(path, inode)
        server.close()
    print(f"stopped after {idle_seconds:g} s without a job", flush=True)  # dates the log: see _remove_ended_workers


def _decline_all(server: socket.socket, conn: socket.socket, path: Path, inode: int) -> None:
    """Stop advertising the socket, then decline ``conn`` and every client already waiting: each one's next try
    starts a worker in the workspace now at this path."""
    _unlink_if_ours(path, inode)
    server.setblocking(False)
    declined = 0
    while True:
        with conn, contextlib.suppress(OSError):
            if peer_uid(conn) == os.getuid():  # another user's connection gets nothing, as in _serve_connection
                conn.settimeout(10)
                # Read the request first: a Unix socket closed with unread data resets the client's end.
                conn.makefile("r", encoding="utf-8").readline()
                conn.sendall(json.dumps({"declined": f"{WORKSPACE} was removed or replaced"}).encode() + b"\n")
                declined += 1
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            break
    print(f"{WORKSPACE} was removed or replaced: declined {declined} job(s) and stopped", flush=True)


def _workspace_replaced(workspace: int) -> bool:
    """Whether the folder this worker serves (open as ``workspace``) was removed, or its path now names another."""
    held = os.fstat(workspace)
    try:
        current = os.stat(WORKSPACE)
    except FileNotFoundError:
        return True
    return held.st_nlink == 0 or (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino)


def _serve_connection(conn: socket.socket, fingerprint: str, log_path: Path) -> None:
    with conn:
        conn.setblocking(True)
        uid = peer_uid(conn)
        if uid != os.getuid():
            print(f"refused a connection from uid {uid}", flush=True)
            return
        _handle(conn, fingerprint, log_path)


def _unlink_if_ours(path: Path, inode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_ino == inode:
            path.unlink()


def main() -> None:
    serve(Path(sys.argv[1]), float(os.environ.get("RAVDESS_SER_WORKER_IDLE", "60")))


if __name__ == "__main__":
    main()
