"""The label manifest: one row per clip, joining labels, audio and embeddings.

Labels come only from the RAVDESS file-name codes (see :mod:`ravdess_ser.ravdess`).
A clip that cannot be labelled with certainty is kept in the table with
``status = excluded`` and a ``reason``, so every left-out file is visible in
one place and nothing is ever silently mislabelled. Files skipped upstream
(the ``skipped.tsv`` reports of resample and embed) appear the same way, and
what resample did to a clip it kept, or found wrong with it (its ``notes.tsv``:
scaled down, samples clipped, a truncated file), is in the ``audio_note`` column.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf

from ravdess_ser.atomic import atomic_path
from ravdess_ser.audio import is_wav, read_notes_report, read_skip_report
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import actor_dirname, parse_clip_name
log = logging.getLogger(__name__)

OK = "ok"
EXCLUDED = "excluded"


@dataclass
class ManifestRow:
    clip_id: str
    actor: int | None = None
    gender: str = ""
    emotion: int | None = None
    emotion_name: str = ""
    intensity: int | None = None
    statement: int | None = None
    repetition: int | None = None
    modality: int | None = None
    vocal_channel: int | None = None
    audio_path: str = ""
    embedding_path: str = ""
    duration_s: float | None = None
    num_frames: int | None = None
    status: str = OK
    reason: str = ""
    audio_note: str = ""  # resample's note on a clip it kept: scaled down, samples clipped, truncated file


COLUMNS = tuple(field.name for field in fields(ManifestRow))
_INT_COLUMNS = {"actor", "emotion", "intensity", "statement", "repetition", "modality", "vocal_channel", "num_frames"}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _label_row(audio: Path, folder_actor: int) -> ManifestRow:
    """Labels from the file name, or an excluded row saying why there are none."""
    row = ManifestRow(clip_id=audio.stem)
    try:
        clip = parse_clip_name(audio)
    except PipelineError as error:
        row.status, row.reason = EXCLUDED, error.reason
        return row
    row.actor, row.gender = clip.actor, clip.gender
    row.emotion, row.emotion_name = clip.emotion, clip.emotion_name
    row.intensity, row.statement, row.repetition = clip.intensity, clip.statement, clip.repetition
    row.modality, row.vocal_channel = clip.modality, clip.vocal_channel
    if not clip.is_speech:
        row.status, row.reason = EXCLUDED, "song clip (vocal channel 02); this pipeline uses speech only"
    elif clip.modality != 3:
        row.status, row.reason = EXCLUDED, f"modality {clip.modality:02d} is not audio-only (03)"
    elif clip.actor != folder_actor:
        row.status = EXCLUDED
        row.reason = f"actor code {clip.actor:02d} disagrees with its folder {actor_dirname(folder_actor)}"
    return row


def build_manifest(audio_root: Path, embedding_root: Path, actors: Sequence[int], root: Path) -> list[ManifestRow]:
    """One row per clip of ``actors``; paths are written relative to ``root`` (the project)."""
    rows: list[ManifestRow] = []
    first_by_id: dict[str, ManifestRow] = {}
    first_by_content: dict[str, ManifestRow] = {}
    for actor in actors:
        audio_dir = Path(audio_root) / actor_dirname(actor)
        embed_dir = Path(embedding_root) / actor_dirname(actor)
        if not audio_dir.is_dir():
            raise PipelineError("16 kHz audio folder is missing (did the resample stage run?)", audio_dir)
        for name, reason in read_skip_report(audio_dir):
            rows.append(ManifestRow(clip_id=Path(name).stem, actor=actor, status=EXCLUDED, reason=f"resample: {reason}"))
        embed_skips = dict(read_skip_report(embed_dir))
        audio_notes = read_notes_report(audio_dir)
        for audio in sorted(path for path in audio_dir.iterdir() if is_wav(path)):
            row = _label_row(audio, actor)
            row.audio_path = _relative(audio, root)
            row.audio_note = audio_notes.get(audio.name, "")
            info = sf.info(audio)
            row.duration_s = round(info.frames / info.samplerate, 4)
            embedding = embed_dir / (audio.stem + ".npy")
            if embedding.exists():
                row.embedding_path = _relative(embedding, root)
                row.num_frames = int(np.load(embedding, mmap_mode="r").shape[0])
            elif row.status == OK:
                row.status = EXCLUDED
                row.reason = f"embed: {embed_skips.get(audio.name, 'no embedding file')}"
            if row.status == OK:
                digest = hashlib.sha256(audio.read_bytes()).hexdigest()
                if row.clip_id in first_by_id:
                    row.status, row.reason = EXCLUDED, f"duplicate clip id; first seen at {first_by_id[row.clip_id].audio_path}"
                elif digest in first_by_content:
                    row.status = EXCLUDED
                    row.reason = f"identical audio to {first_by_content[digest].audio_path}"
                else:
                    first_by_id[row.clip_id], first_by_content[digest] = row, row
            rows.append(row)
    return rows


def validate_manifest(rows: Sequence[ManifestRow], manifest_path: Path) -> None:
    """Check the invariants training relies on before anything is written."""
    usable = [row for row in rows if row.status == OK]
    if not usable:
        raise PipelineError("no usable clips: every clip was excluded (see the reasons logged above)", manifest_path)
    ids = [row.clip_id for row in usable]
    if len(ids) != len(set(ids)):
        raise PipelineError("internal error: duplicate clip ids among usable rows", manifest_path)
    for row in usable:
        if not row.embedding_path or not row.num_frames:
            raise PipelineError(f"clip {row.clip_id} has no embedding frames", manifest_path)


def write_manifest(rows: Sequence[ManifestRow], path: Path) -> None:
    validate_manifest(rows, path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in asdict(row).items()})


def read_manifest(path: Path) -> list[ManifestRow]:
    path = Path(path)
    if not path.is_file():
        raise PipelineError("manifest does not exist (run the label-manifest stage)", path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise PipelineError(f"manifest lacks columns: {', '.join(sorted(missing))}", path)
        rows = []
        for record in reader:
            values: dict = {}
            for key in COLUMNS:
                raw = record[key]
                if key in _INT_COLUMNS:
                    values[key] = int(raw) if raw else None
                elif key == "duration_s":
                    values[key] = float(raw) if raw else None
                else:
                    values[key] = raw
            rows.append(ManifestRow(**values))
    return rows


def summarize_exclusions(rows: Sequence[ManifestRow]) -> list[str]:
    return [f"{row.audio_path or row.clip_id}: {row.reason}" for row in rows if row.status != OK]
