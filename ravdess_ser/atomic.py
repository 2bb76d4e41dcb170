"""Write files so that an interrupted run never leaves a half-written file behind.

Everything is written to a hidden temporary file in the destination folder and
renamed into place; ``os.replace`` is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, rename it to ``path``.

    The temporary name keeps the suffix, so libraries that infer the format from
    the extension (soundfile, numpy) still work. On any exception, including
    KeyboardInterrupt, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path``.

    The temporary directory, ``.tmp-<name>-XXXX``, is locked (flock) while it is filled. A process killed with
    SIGKILL leaves it behind unlocked (the kernel drops a dead process's locks), so each call first removes
    those, and leaves alone the ones a live run is filling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = TEMP_PREFIX + path.name + "-"
    _remove_abandoned_dirs(path.parent, prefix)
    tmp_path, lock = _locked_temp_dir(path.parent, prefix)
    try:
        yield tmp_path
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def _try_lock(fd: int, blocking: bool = False) -> bool | None:
    """Lock ``fd``: True if locked, False if another process holds it, None if this filesystem cannot lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as error:
        return False if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    return True


def _locked_temp_dir(parent: Path, prefix: str) -> tuple[Path, int]:
    while True:
        tmp_path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        lock = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        # Another run's cleanup may have taken the folder between mkdtemp and the lock: then make another.
        locked = _try_lock(lock, blocking=True)
        with contextlib.suppress(FileNotFoundError):
            if locked is None or os.stat(tmp_path).st_ino == os.fstat(lock).st_ino:
                return tmp_path, lock
        os.close(lock)


def _remove_abandoned_dirs(parent: Path, prefix: str) -> None:
    """Remove the ``prefix*`` folders no live process holds locked: what killed runs left."""
    for stale in parent.glob(glob.escape(prefix) + "*"):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or not a folder
        try:
            if _try_lock(fd):
                shutil.rmtree(stale, ignore_errors=True)
        finally:
            os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv_atomic(path: str | Path, records: Sequence[dict]) -> None:
    """A CSV with a header row; the columns are the first record's keys."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def remove_stale_temporaries(folder: str | Path, recursive: bool = False) -> None:
    """Delete temporaries left by a process that was killed (SIGKILL skips cleanup), in subfolders too if asked."""
    folder = Path(folder)
    if folder.is_dir():
        for stale in (folder.rglob if recursive else folder.glob)(TEMP_PREFIX + "*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
