"""Download the RAVDESS audio archives (speech, and song if asked for) and extract the requested actors.

Three steps, each usable on its own:

* :func:`download_file` streams a URL into ``dest.part`` with a progress bar,
  resumes with an HTTP ``Range`` request after a dropped connection (or from a
  ``.part`` left by an earlier run), checks the MD5 and only then renames the
  file to ``dest``. A file that fails the check is deleted.
* :func:`extract_ravdess_zips` refuses archives whose sizes no RAVDESS archive
  has (a zip bomb), checks each archive (CRC of every member), finds
  the ``Actor_XX`` folders wherever they sit, skips macOS junk (``__MACOSX/``,
  ``.DS_Store``, ``._*``) and writes ``raw_dir/Actor_XX/<file>`` for the
  requested actors only, from every archive into the same folders (speech and
  song clips side by side), atomically: an interrupted extraction leaves no
  partial ``raw_dir``.
* :func:`prepare_ravdess_from_zips` does the same for zips the user already
  has, after checking their MD5s.

Every problem the user can fix is raised as :class:`PipelineError` with a
one-line message naming the file or URL and saying what to do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from ravdess_ser.atomic import atomic_dir
from ravdess_ser.errors import PipelineError
from ravdess_ser.corpus import Archive, DataConfig, actor_numbers, archive_key
from ravdess_ser.ravdess import ACTORS_WITHOUT_SONG, actor_dirname, actor_from_dirname

PART_SUFFIX = ".part"
RETRY_BACKOFF_SECONDS = 0.5  # doubled after every failed attempt, capped below
MAX_BACKOFF_SECONDS = 10.0
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})



def _offline_alternatives(dest: Path, zip_key: str) -> str:
    return (f"use a local copy of the zip (dvc exp run -S data.source=zip -S {zip_key}=/path/to/{dest.name}, "
            "or the same in params.yaml) or the offline default (data.source=synthetic)")


# Network failures while connecting or reading; disk errors are deliberately not here.
_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    socket.timeout,
    ConnectionError,
)


def file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- download


class _Transient(Exception):
    """A failure worth retrying (with resume): a dropped connection or a 5xx answer."""

    def __init__(self, reason: str, *, before_response: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.before_response = before_response


class _Restart(Exception):
    """The ``.part`` file cannot be resumed; it has been emptied, request again."""


class _PartFile:
    """The ``.part`` file and the running MD5 of exactly the bytes it holds."""

    def __init__(self, path: Path, chunk_size: int):
        self.path = path
        self.digest = hashlib.md5()
        self.size = 0
        if path.is_file():
            with open(path, "rb") as stream:
                while chunk := stream.read(chunk_size):
                    self.digest.update(chunk)
                    self.size += len(chunk)
        self.preexisting = self.size  # bytes that came from an earlier run

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self.digest = hashlib.md5()
        self.size = 0
        self.preexisting = 0

    def append(self, stream, chunk: bytes) -> None:
        stream.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _describe(exc: BaseException) -> str:
    """A short one-line reason for a network error (requests nests them deeply)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, (requests.exceptions.ReadTimeout, socket.timeout)):
        return "no answer before the timeout"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "no data before the timeout"
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and getattr(current, "strerror", None):
            return str(current.strerror)
        if isinstance(current, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead)):
            return "the server closed the connection early"
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes 100-199/1000`` or ``bytes */1000``."""
    if not header:
        return None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header)
    if match is None:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _iter_network(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The body as sent (no content decoding), chunk by chunk.

    Reads ``response.raw`` directly rather than ``iter_content``: when the
    connection drops, ``iter_content`` discards the bytes of the chunk being
    filled, whereas ``raw.read`` first returns them, so a resume starts exactly
    at the number of bytes received.
    """
    while True:
        try:
            chunk = response.raw.read(chunk_size, decode_content=False)
        except _NETWORK_ERRORS as exc:
            raise _Transient(f"connection lost ({_describe(exc)})") from exc
        if not chunk:
            return
        yield chunk


def _attempt(
    session: requests.Session,
    url: str,
    dest: Path,
    part: _PartFile,
    *,
    progress: bool,
    timeout: float,
    chunk_size: int,
    zip_key: str,
) -> None:
    """One request; returns when ``part`` holds the whole file (as far as the server says)."""
    offset = part.size
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise _Transient(_describe(exc), before_response=True) from exc

    with response:
        status = response.status_code
        if status == 416:  # Range not satisfiable: the part is complete, or bigger than the file
            _, total = _content_range(response.headers.get("Content-Range"))
            if total is None or total == offset:
                return  # the MD5 check decides
            _say(f"{dest.name}: {part.path.name} has {offset} bytes but the file has {total}; starting over")
            part.reset()
            raise _Restart
        if status in RETRY_STATUSES:
            raise _Transient(f"HTTP {status} {response.reason}")
        if status not in (200, 206):
            raise PipelineError(
                f"cannot download {url}: the server answered HTTP {status} {response.reason}; "
                f"check the URL, or {_offline_alternatives(dest, zip_key)}",
                dest,
            )

        start, total = _content_range(response.headers.get("Content-Range"))
        if status == 200 and offset:
            _say(f"{dest.name}: the server ignored the Range request; starting over from byte 0")
            part.reset()
        elif status == 206 and start != offset:
            _say(f"{dest.name}: the server sent bytes from {start} instead of {offset}; starting over")
            part.reset()
            raise _Restart
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        if total is None and expected is not None:
            total = part.size + expected

        received = 0
        bar = tqdm(
            total=total,
            initial=part.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
            file=sys.stderr,
        )
        try:
            with bar, open(part.path, "ab") as stream:
                for chunk in _iter_network(response, chunk_size):
                    part.append(stream, chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as exc:
            raise PipelineError(f"cannot write the download: {exc.strerror or exc}", part.path) from exc
        if expected is not None and received < expected:
            raise _Transient(f"connection closed after {received} of {expected} bytes")


def download_file(
    url: str,
    dest: Path,
    md5: str,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    max_retries: int = 5,
    chunk_size: int = 1 << 20,
    md5_key: str = "data.md5",
    zip_key: str = "data.zip_path",
) -> Path:
    """Download ``url`` to ``dest`` and check its MD5; resume after dropped connections.

    Returns at once if ``dest`` already has the right MD5. Otherwise the bytes go
    to ``dest.part`` (resumed with ``Range: bytes=N-`` if it exists) and are
    renamed to ``dest`` only after the MD5 matches. ``md5_key`` and ``zip_key``
    are the params the error messages tell the user to change.
    """
    dest = Path(dest)
    expected_md5 = md5.strip().lower()
    if dest.is_file():
        if file_md5(dest) == expected_md5:
            return dest
        _say(f"{dest}: MD5 does not match {expected_md5}; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)

    part = _PartFile(dest.with_name(dest.name + PART_SUFFIX), chunk_size)
    if part.size:
        _say(f"{dest.name}: resuming {part.path} at byte {part.size}")
    failures = 0
    restarted_after_mismatch = False
    answered = False  # has the server answered anything during this call?
    alternatives = _offline_alternatives(dest, zip_key)
    with requests.Session() as session:
        while True:
            try:
                _attempt(
                    session, url, dest, part, progress=progress, timeout=timeout, chunk_size=chunk_size,
                    zip_key=zip_key,
                )
            except _Transient as exc:
                if exc.before_response and not answered:
                    raise PipelineError(
                        f"cannot reach {url} ({exc.reason}); check the network connection, or {alternatives}",
                        dest,
                    ) from exc
                answered = True
                failures += 1
                if failures > max_retries:
                    kept = (
                        f"the {part.size} bytes received so far are kept in {part.path}; run again to resume"
                        if part.size
                        else "run again later"
                    )
                    raise PipelineError(
                        f"download of {url} failed after {max_retries} retries ({exc.reason}); {kept}; "
                        f"or {alternatives}",
                        dest,
                    ) from exc
                delay = min(RETRY_BACKOFF_SECONDS * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
                _say(
                    f"{dest.name}: {exc.reason}; retry {failures}/{max_retries} in {delay:g} s, "
                    f"resuming at byte {part.size}"
                )
                time.sleep(delay)
                continue
            except _Restart:
                answered = True
                failures += 1
                if failures > max_retries:
                    raise PipelineError(
                        f"download of {url} failed: the server keeps answering range requests inconsistently",
                        dest,
                    ) from None
                continue
            answered = True

            actual_md5 = part.digest.hexdigest()
            if actual_md5 == expected_md5:
                os.replace(part.path, dest)
                return dest
            if part.preexisting and not restarted_after_mismatch:
                # The old .part may come from another version of the file: try once from scratch.
                _say(f"{dest.name}: MD5 {actual_md5} does not match after resuming an old {part.path.name}; starting over")
                restarted_after_mismatch = True
                part.reset()
                continue
            part.reset()
            raise PipelineError(
                f"MD5 mismatch for the file downloaded from {url}: expected {expected_md5}, got {actual_md5}; "
                "the bad file was deleted. Run again to retry; if the archive changed on purpose, "
                f"set {md5_key} to {actual_md5}",
                dest,
            )


# --------------------------------------------------------------------------- extraction

_JUNK_FILE_NAMES = frozenset({"Thumbs.db", "desktop.ini"})

# What a RAVDESS archive can hold, with a wide margin, so that a zip bomb is refused before anything is inflated or
# written. The speech corpus is 1440 WAVs of a few seconds (under 1 MiB each, about 0.6 GiB in all), the song
# corpus 1012 a little longer; audio hardly compresses, so a member that inflates a hundredfold is no recording.
MAX_MEMBER_BYTES = 64 << 20  # 11 minutes of 48 kHz 16-bit mono
MAX_TOTAL_BYTES = 4 << 30
MAX_COMPRESSION_RATIO = 100  # checked for members above RATIO_CHECK_BYTES: a short silent clip may compress more
RATIO_CHECK_BYTES = 1 << 20


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return f"{count} bytes"


def _refuse_bomb(zip_path: Path, member: str, what: str, limit: str) -> PipelineError:
    return PipelineError(f"member {member!r} {what}, beyond the {limit}; refusing to extract "
                         "(not a RAVDESS archive, or a zip bomb)", zip_path)


def _check_sizes(zip_path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse, from the sizes the archive declares, members and totals no RAVDESS archive has."""
    total = 0
    for info in archive.infolist():
        size = info.file_size
        if size > MAX_MEMBER_BYTES:
            raise _refuse_bomb(zip_path, info.filename, f"inflates to {_size(size)}",
                               f"{_size(MAX_MEMBER_BYTES)} limit for one file")
        if size > RATIO_CHECK_BYTES and size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise _refuse_bomb(zip_path, info.filename, f"inflates {size // max(info.compress_size, 1)}-fold "
                               f"({_size(info.compress_size)} to {_size(size)})",
                               f"{MAX_COMPRESSION_RATIO}-fold limit for audio")
        total += size
        if total > MAX_TOTAL_BYTES:
            raise _refuse_bomb(zip_path, info.filename, f"takes the archive to {_size(total)} uncompressed",
                               f"{_size(MAX_TOTAL_BYTES)} limit for the whole archive")


class _BoundedReader:
    """A member's stream that refuses to yield more than the member declared (its headers could lie)."""

    def __init__(self, stream, zip_path: Path, info: zipfile.ZipInfo):
        self.stream, self.zip_path, self.info = stream, zip_path, info
        self.left = min(info.file_size, MAX_MEMBER_BYTES)

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.left -= len(chunk)
        if self.left < 0:
            raise _refuse_bomb(self.zip_path, self.info.filename, "inflates to more than it declares",
                               f"{_size(min(self.info.file_size, MAX_MEMBER_BYTES))} it declared")
        return chunk


def _require_file(path: Path, what: str, zip_key: str) -> None:
    if not path.exists():
        raise PipelineError(
            f"{what} not found; check {zip_key}, or use data.source=ravdess to download it "
            "or data.source=synthetic to run offline",
            path,
        )
    if not path.is_file():
        raise PipelineError(f"{what} is not a file", path)


def _member_parts(zip_path: Path, name: str) -> list[str]:
    """The path components of a member; raise for absolute paths and ``..``."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise PipelineError(f"unsafe member {name!r} (absolute path) in the zip archive; refusing to extract", zip_path)
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PipelineError(f"unsafe member {name!r} ('..' in the path) in the zip archive; refusing to extract", zip_path)
    return parts


def _is_junk(parts: Sequence[str]) -> bool:
    """macOS resource forks and Finder files, other dotfiles, Windows thumbnails."""
    return any(p == "__MACOSX" or p.startswith(".") for p in parts) or parts[-1] in _JUNK_FILE_NAMES


def _check_archive(zip_path: Path, archive: zipfile.ZipFile) -> None:
    try:
        bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise PipelineError(
            f"truncated or corrupt zip archive ({_describe(exc)}); delete it and download again", zip_path
        ) from exc
    except NotImplementedError as exc:
        raise PipelineError(
            f"the zip archive uses a compression method Python cannot read ({exc}); re-create it with plain zip (deflate)",
            zip_path,
        ) from exc
    except RuntimeError as exc:  # encrypted members
        raise PipelineError(f"cannot read the zip archive ({exc}); use an unencrypted copy", zip_path) from exc
    if bad is not None:
        raise PipelineError(
            f"truncated or corrupt zip archive (CRC check failed for {bad!r}); delete it and download again",
            zip_path,
        )


def _plan(zip_path: Path, archive: zipfile.ZipFile) -> dict[int, list[tuple[zipfile.ZipInfo, str]]]:
    """Map actor -> [(member, file name)] after checking the RAVDESS layout."""
    by_prefix: dict[tuple[str, ...], dict[int, list[tuple[zipfile.ZipInfo, str]]]] = {}
    top_level: set[str] = set()
    for info in archive.infolist():
        parts = _member_parts(zip_path, info.filename)
        if info.is_dir() or not parts or _is_junk(parts):
            continue
        top_level.add(parts[0] + ("/" if len(parts) > 1 else ""))
        for index, part in enumerate(parts[:-1]):
            actor = actor_from_dirname(part)
            if actor is not None:
                prefix = tuple(parts[:index])
                by_prefix.setdefault(prefix, {}).setdefault(actor, []).append((info, parts[-1]))
                break

    expected = "folders Actor_01 … Actor_24 holding the WAV files, at the top level or all inside one folder"
    if not by_prefix:
        found = ", ".join(repr(name) for name in sorted(top_level)[:5]) or "no files"
        more = f" and {len(top_level) - 5} more" if len(top_level) > 5 else ""
        raise PipelineError(
            f"not a RAVDESS archive: expected {expected}; found {found}{more} at the top level", zip_path
        )
    if len(by_prefix) > 1:
        found = "; ".join(
            f"{'/'.join(prefix) + '/' if prefix else '(top level)'}: "
            + ", ".join(actor_dirname(a) for a in sorted(actors))
            for prefix, actors in sorted(by_prefix.items())
        )
        raise PipelineError(
            f"not a RAVDESS layout: expected {expected}, but the Actor_XX folders sit under different parents ({found})",
            zip_path,
        )
    (plan,) = by_prefix.values()
    for actor, members in plan.items():
        names: dict[str, str] = {}
        for info, name in members:
            if name in names:
                raise PipelineError(
                    f"members {names[name]!r} and {info.filename!r} would both be extracted to "
                    f"{actor_dirname(actor)}/{name}",
                    zip_path,
                )
            names[name] = info.filename
    return plan


def _open_checked(zip_path: Path, stack: ExitStack) -> zipfile.ZipFile:
    """The archive, open (closed with ``stack``), after its sizes and every member's CRC passed."""
    try:
        archive = stack.enter_context(zipfile.ZipFile(zip_path))
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise PipelineError(
            f"truncated or corrupt zip archive ({_describe(exc)}); delete it and download again", zip_path
        ) from exc
    _check_sizes(zip_path, archive)
    _check_archive(zip_path, archive)
    return archive


def extract_ravdess_zips(archives: Mapping[str, Path], raw_dir: Path, actors: Sequence[int]) -> list[Path]:
    """Extract the requested actors of RAVDESS zips (subset -> zip path) to ``raw_dir/Actor_XX/<file>``.

    Every archive is checked first (sizes, CRCs, layout, the requested actors present; the song zip has no actor
    18). The clips of all archives go into the same ``Actor_XX`` folders. ``raw_dir`` is built in a temporary
    folder next to it and replaces any existing ``raw_dir`` only when complete. Returns the extracted files, sorted.
    """
    raw_dir = Path(raw_dir)
    wanted = sorted(set(int(a) for a in actors))
    with ExitStack() as stack:
        plans = []
        for subset, zip_path in archives.items():
            zip_path = Path(zip_path)
            _require_file(zip_path, "zip archive", archive_key(subset, "zip_path"))
            archive = _open_checked(zip_path, stack)
            plan = _plan(zip_path, archive)
            absent = ACTORS_WITHOUT_SONG if subset == "song" else frozenset()
            missing = [a for a in wanted if a not in plan and a not in absent]
            if missing:
                raise PipelineError(
                    f"requested actors missing from the zip archive: {', '.join(actor_dirname(a) for a in missing)} "
                    f"(it has {', '.join(actor_dirname(a) for a in sorted(plan))}); "
                    f"use the complete RAVDESS {subset} archive or request fewer actors",
                    zip_path,
                )
            plans.append((zip_path, archive, plan))
        written: dict[Path, tuple[Path, str]] = {}  # extracted file -> (zip, member) it came from
        with atomic_dir(raw_dir) as tmp:
            for actor in wanted:
                folder = actor_dirname(actor)
                (tmp / folder).mkdir()
                for zip_path, archive, plan in plans:
                    for info, name in plan.get(actor, ()):
                        target = raw_dir / folder / name
                        if target in written:
                            first_zip, first_member = written[target]
                            raise PipelineError(f"member {info.filename!r} would overwrite {folder}/{name}, "
                                                f"already extracted from {first_member!r} of {first_zip}", zip_path)
                        written[target] = (zip_path, info.filename)
                        try:
                            with archive.open(info) as src, open(tmp / folder / name, "wb") as dst:
                                shutil.copyfileobj(_BoundedReader(src, zip_path, info), dst, 1 << 20)
                        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                            raise PipelineError(
                                f"truncated or corrupt zip archive ({_describe(exc)} in {info.filename!r}); "
                                "delete it and download again",
                                zip_path,
                            ) from exc
    return sorted(written)


def prepare_ravdess_from_zips(archives: Sequence[Archive], raw_dir: Path, actors: Sequence[int]) -> list[Path]:
    """Check local RAVDESS zips against their MD5s, then extract ``actors`` of all of them into ``raw_dir``."""
    for archive in archives:
        _require_file(archive.path, "zip archive", archive.key("zip_path"))
        expected_md5 = archive.md5.strip().lower()
        actual_md5 = file_md5(archive.path)
        if actual_md5 != expected_md5:
            key = archive.key("md5")
            raise PipelineError(
                f"MD5 is {actual_md5}, expected {expected_md5}: the archive is not the RAVDESS {archive.subset} zip "
                "or is damaged; download it again, or if this archive is intentionally different, "
                f"set {key} to {actual_md5} (dvc exp run -S {key}={actual_md5}, or in params.yaml)",
                archive.path,
            )
    return extract_ravdess_zips({archive.subset: archive.path for archive in archives}, raw_dir, actors)


def prepare_corpus(config: DataConfig, raw_dir: Path, progress: bool = True) -> None:
    """Fill ``raw_dir/Actor_XX`` for the configured actors from the configured source."""
    from ravdess_ser.synthetic import generate_corpus

    actors = actor_numbers(config.actors)
    if config.source == "synthetic":
        with atomic_dir(raw_dir) as tmp:
            generate_corpus(tmp, actors, config.synthetic_seed, config.synthetic_clip_seconds, progress=progress,
                            subsets=config.subsets)
    else:  # ravdess or zip: DataConfig allows nothing else
        archives = config.archives()
        if config.source == "ravdess":
            for archive in archives:
                download_file(archive.url, archive.path, archive.md5, progress=progress,
                              md5_key=archive.key("md5"), zip_key=archive.key("zip_path"))
        prepare_ravdess_from_zips(archives, raw_dir, actors)
