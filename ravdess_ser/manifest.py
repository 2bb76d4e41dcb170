"""The label manifest: one row per clip, joining labels, audio and embeddings.

Labels come only from the RAVDESS file-name codes (see :mod:`ravdess_ser.ravdess`).
A clip that cannot be labelled with certainty is kept in the table with
``status = excluded`` and a ``reason``, so every left-out file is visible in
one place and nothing is ever silently mislabelled. Files skipped upstream
(the ``skipped.tsv`` reports of resample and embed) appear the same way, and
what resample did to a clip it kept, or found wrong with it (its ``notes.tsv``:
scaled down, samples clipped, a truncated file), is in the ``audio_note`` column.
Song clips (vocal channel 02) are labelled like speech clips and used when
``data.subsets`` has song; otherwise they stay in the table, excluded.

The CSV is written and read with pandas, with fixed column types: integers
(empty when unknown), ``duration_s`` as a float, the rest as text.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
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
_INT_COLUMNS = ("actor", "emotion", "intensity", "statement", "repetition", "modality", "vocal_channel", "num_frames")
# Nullable integers write an unknown value as an empty field, as the float NaN does; everything else is text.
_DTYPES = {column: "Int64" if column in _INT_COLUMNS else "float64" if column == "duration_s" else "str"
           for column in COLUMNS}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _label_row(audio: Path, folder_actor: int, subsets: Sequence[str]) -> ManifestRow:
    """Labels from the file name, or an excluded row saying why there are none or why they are not used."""
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
    if clip.subset not in subsets:
        row.status = EXCLUDED
        row.reason = (f"{clip.subset} clip (vocal channel {clip.vocal_channel:02d}); "
                      f"data.subsets is [{', '.join(subsets)}]")
    elif clip.modality != 3:
        row.status, row.reason = EXCLUDED, f"modality {clip.modality:02d} is not audio-only (03)"
    elif clip.actor != folder_actor:
        row.status = EXCLUDED
        row.reason = f"actor code {clip.actor:02d} disagrees with its folder {actor_dirname(folder_actor)}"
    return row


def build_manifest(audio_root: Path, embedding_root: Path, actors: Sequence[int], root: Path,
                   subsets: Sequence[str] = ("speech",)) -> list[ManifestRow]:
    """One row per clip of ``actors``; clips of ``subsets`` (speech, song) are used. Paths are relative to ``root``."""
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
            row = _label_row(audio, actor, subsets)
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


def _table(rows: Sequence[ManifestRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(row) for row in rows], columns=list(COLUMNS)).astype(_DTYPES)


def validate_manifest(table: pd.DataFrame, manifest_path: Path) -> None:
    """Check the invariants training relies on before anything is written."""
    usable = table[table.status == OK]
    if usable.empty:
        raise PipelineError("no usable clips: every clip was excluded (see the reasons logged above)", manifest_path)
    if usable.clip_id.duplicated().any():
        raise PipelineError("internal error: duplicate clip ids among usable rows", manifest_path)
    no_frames = usable[(usable.embedding_path == "") | ~(usable.num_frames.fillna(0) > 0)]
    if not no_frames.empty:
        raise PipelineError(f"clip {no_frames.clip_id.iloc[0]} has no embedding frames", manifest_path)


def write_manifest(rows: Sequence[ManifestRow], path: Path) -> None:
    table = _table(rows)
    validate_manifest(table, path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def read_manifest(path: Path) -> list[ManifestRow]:
    path = Path(path)
    if not path.is_file():
        raise PipelineError("manifest does not exist (run the label-manifest stage)", path)
    try:
        header = pd.read_csv(path, nrows=0).columns
        missing = set(COLUMNS) - set(header)
        if missing:
            raise PipelineError(f"manifest lacks columns: {', '.join(sorted(missing))}", path)
        # Only an empty field is unknown: a reason or a path that reads "NA" stays text.
        table = pd.read_csv(path, usecols=list(COLUMNS), dtype=_DTYPES, keep_default_na=False,
                            na_values={column: [""] for column, dtype in _DTYPES.items() if dtype != "str"})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PipelineError(f"not a readable manifest ({' '.join(str(error).split())})", path) from None
    return [ManifestRow(**{key: None if isinstance(value, float) and math.isnan(value) else value
                           for key, value in record.items()})
            for record in table[list(COLUMNS)].to_dict("records")]


def summarize_exclusions(rows: Sequence[ManifestRow]) -> list[str]:
    return [f"{row.audio_path or row.clip_id}: {row.reason}" for row in rows if row.status != OK]
