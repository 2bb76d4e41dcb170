"""A synthetic, offline stand-in for the RAVDESS audio: speech, and song when asked for.

The pipeline's offline default: a deterministic source-filter model of
emotional speech and song, written in exactly the layout and format of the
real RAVDESS audio (see :mod:`ravdess_ser.ravdess`), so every later stage
(resampling, wav2vec2 embeddings, classifier) runs unchanged without a
download. This module checks the arguments and writes the files; the model's
tables are in :mod:`ravdess_ser.synthetic_tables`, its signal processing in
:mod:`ravdess_ser.synthetic_dsp`.

Corpus
------
``raw_dir/Actor_XX/03-01-EE-II-SS-RR-AA.wav``: audio-only speech, 48 kHz,
16-bit PCM, mono; 60 clips per actor (neutral: 2 statements x 2 repetitions;
every other emotion: 2 intensities x 2 statements x 2 repetitions). Odd
actors are male, even actors female, as in RAVDESS. With song,
``raw_dir/Actor_XX/03-02-EE-II-SS-RR-AA.wav`` as well: 44 song clips per
actor, emotions 01-06 only, none for actor 18, as in RAVDESS.

Each clip is a synthetic rendering of one of the two RAVDESS statements
("Kids are talking by the door" / "Dogs are sitting by the door", seven
syllables each): leading near-silence (faint room noise, about -70 dBFS),
the utterance, trailing near-silence. The clip length averages ``clip_seconds``
and varies with the emotion's tempo and a little with repetition.

Speech model
------------
* Glottal source: a Rosenberg pulse train (its flow derivative, so lip
  radiation is included) following a continuous F0 contour, with per-cycle
  jitter and shimmer, an open quotient / speed quotient that set breathy
  (long, symmetric opening) versus pressed (short, abrupt closure) voice,
  period-doubling creak, and pulse-synchronous aspiration noise.
* Vocal tract: five formant resonators whose frequencies follow
  vowel-to-vowel trajectories (with consonant loci) that differ between the
  two statements; a time-varying all-pole filter applied by windowed
  overlap-add in the frequency domain, plus a spectral-tilt shelf.
* Consonants: stop closures and bursts, aspiration (VOT), sibilant and
  weak dental frication (spectrally shaped noise), voiced murmur for nasals.
* Prosody: declination, pitch accents on stressed syllables, an
  emotion-specific final rise or fall, slow F0 drift, vocal tremor, and
  syllable-level loudness envelopes.
* Song: each statement is sung to a fixed seven-note melody (minor mode for
  sad and fearful, major for the rest) with held notes, short glides and
  vibrato; consonants are shorter, the clip about a sixth longer (held notes) and louder.

Emotions move the voice away from neutral in F0 level and range, contour
shape (rising for surprised, falling for sad), tempo, loudness, spectral
tilt and voice quality (breathy for sad/calm/fearful, pressed for angry,
jitter and tremor for fearful, creak for disgust); strong intensity roughly
doubles the deviation. Actors differ in base F0 (male 100-130 Hz, female
190-230 Hz), vocal-tract length (formant scale), breathiness, loudness,
tilt, speaking rate, pitch range and how expressive they are, all drawn
deterministically from ``(seed, actor)``: speaker identity matters, but the
emotion differences survive it.

Determinism
-----------
Every random number for a clip comes from generators seeded by
``(seed, actor, ...)`` only, so a clip depends only on ``(seed, actor,
vocal channel, emotion, intensity, statement, repetition, clip_seconds)``:
not on which other actors or clips are generated, nor in which order (so
asking for song leaves every speech clip as it was). The same arguments
give byte-identical files on every CPU class (transcendental functions from
:mod:`ravdess_ser.portable_math`; samples quantised by ``write_audio``, not by
libsndfile) for the pinned numpy, which DVC's per-actor caching relies on.

Usage
-----
::

    from pathlib import Path
    from ravdess_ser.synthetic import generate_corpus

    paths = generate_corpus(Path("data/raw"), actors=list(range(1, 25)), seed=0, clip_seconds=2.0,
                            subsets=("speech", "song"))

:func:`synthesize_clip` returns one clip as an array. Only numpy is needed
(no scipy): the filters run in the frequency domain. The full corpus at
3.5 s per clip takes about 25 s of one CPU core, shared out over the cores.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ravdess_ser.atomic import remove_stale_temporaries
from ravdess_ser.audio import write_audio
from ravdess_ser.errors import PipelineError
from ravdess_ser.process_pool import die_with_parent, sigint_held
from ravdess_ser.ravdess import (
    ACTORS_WITHOUT_SONG,
    ALL_ACTORS,
    EMOTIONS,
    INTENSITIES,
    REPETITIONS,
    SAMPLE_RATE,
    SONG_EMOTIONS,
    STATEMENTS,
    SUBSETS,
    ClipName,
    actor_dirname,
    clip_names,
)
from ravdess_ser.synthetic_dsp import render_clip

MIN_CLIP_SECONDS = 0.25
MAX_CLIP_SECONDS = 60.0


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise PipelineError(f"synthetic corpus seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_clip_seconds(clip_seconds: object) -> float:
    if isinstance(clip_seconds, bool) or not isinstance(clip_seconds, numbers.Real):
        raise PipelineError(f"clip_seconds must be a number, got {clip_seconds!r}")
    value = float(clip_seconds)
    if not math.isfinite(value) or value <= 0:
        raise PipelineError(f"clip_seconds must be a positive number of seconds, got {clip_seconds!r}")
    if not MIN_CLIP_SECONDS <= value <= MAX_CLIP_SECONDS:
        raise PipelineError(
            f"clip_seconds must be between {MIN_CLIP_SECONDS} and {MAX_CLIP_SECONDS} s "
            f"(a seven-syllable sentence), got {value}"
        )
    return value


def _check_actor(actor: object) -> int:
    if isinstance(actor, bool) or not isinstance(actor, numbers.Integral) or actor not in ALL_ACTORS:
        raise PipelineError(
            f"actor must be an integer from {ALL_ACTORS[0]} to {ALL_ACTORS[-1]} (RAVDESS has 24 actors), "
            f"got {actor!r}"
        )
    return int(actor)


def _check_clip(clip: ClipName) -> None:
    if not isinstance(clip, ClipName):
        raise PipelineError(f"expected a ClipName, got {clip!r}")
    _check_actor(clip.actor)
    if clip.modality != 3 or clip.vocal_channel not in (1, 2):
        raise PipelineError(f"{clip.filename}: only audio-only speech or song (03-01-... or 03-02-...) is synthesised")
    if clip.emotion not in EMOTIONS or clip.intensity not in INTENSITIES:
        raise PipelineError(f"{clip.filename}: emotion or intensity code out of range")
    if clip.statement not in STATEMENTS or clip.repetition not in REPETITIONS:
        raise PipelineError(f"{clip.filename}: statement or repetition code out of range")
    if clip.emotion == 1 and clip.intensity == 2:
        raise PipelineError(f"{clip.filename}: neutral (emotion 01) has no strong intensity (02)")
    if clip.vocal_channel == 2 and clip.emotion not in SONG_EMOTIONS:
        raise PipelineError(f"{clip.filename}: song has only the emotions 01-06, as in RAVDESS")
    if clip.vocal_channel == 2 and clip.actor in ACTORS_WITHOUT_SONG:
        raise PipelineError(f"{clip.filename}: actor {clip.actor:02d} has no song clips in RAVDESS")


def _check_subsets(subsets: object) -> tuple[str, ...]:
    if (isinstance(subsets, (str, bytes)) or not isinstance(subsets, Sequence) or not subsets
            or not all(isinstance(subset, str) for subset in subsets)
            or len(set(subsets)) != len(subsets) or not set(subsets) <= set(SUBSETS)):
        raise PipelineError(f"subsets must be a non-empty sequence of {' and '.join(SUBSETS)}, each at most once, "
                            f"got {subsets!r}")
    return tuple(subsets)


def synthesize_clip(
    clip: ClipName, seed: int, clip_seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Render one speech or song clip: float32 mono samples in [-1, 1] at ``sample_rate``.

    Depends only on ``seed``, the clip's codes, ``clip_seconds`` and
    ``sample_rate``; ``clip_seconds`` is the mean length of a speech clip over the corpus.
    """
    _check_clip(clip)
    seed = _check_seed(seed)
    clip_seconds = _check_clip_seconds(clip_seconds)
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, numbers.Integral)
        or not 16_000 <= sample_rate <= 192_000
    ):
        raise PipelineError(f"sample_rate must be an integer from 16000 to 192000 Hz, got {sample_rate!r}")
    return render_clip(clip, seed, clip_seconds, int(sample_rate))


# A process of the pool pays its start-up (numpy and this package, about 0.3 s) once: worth it from one actor's clips on.
CLIPS_PER_PROCESS = 60


def _write_clip(path: Path, clip: ClipName, seed: int, clip_seconds: float) -> Path:
    write_audio(path, synthesize_clip(clip, seed, clip_seconds), SAMPLE_RATE, "PCM_16")
    return path


def _write_clip_job(job: tuple[Path, ClipName, int, float]) -> Path:
    return _write_clip(*job)


def generation_processes(clips: int) -> int:
    """One process per available core, each with at least :data:`CLIPS_PER_PROCESS` clips; 1 runs in this one."""
    return max(1, min(len(os.sched_getaffinity(0)), clips // CLIPS_PER_PROCESS))


def generate_corpus(
    raw_dir: Path,
    actors: Sequence[int],
    seed: int,
    clip_seconds: float,
    progress: bool = True,
    subsets: Sequence[str] = ("speech",),
    processes: int | None = None,
) -> list[Path]:
    """Write ``raw_dir/Actor_XX/*.wav`` for ``actors``, the clips of ``subsets`` (speech, song); return their paths.

    Shows a tqdm progress bar over clips unless ``progress`` is false. The clips are rendered in ``processes``
    processes (default: :func:`generation_processes`); each clip's bytes depend on its own codes only, so not on
    how many. Each file is written atomically; other files in the actor folders are left alone.
    """
    if isinstance(actors, (str, bytes)) or not isinstance(actors, Sequence):
        raise PipelineError(f"actors must be a sequence of actor numbers, got {actors!r}")
    actor_list = [_check_actor(actor) for actor in actors]
    if not actor_list:
        raise PipelineError("no actors to generate (actors is empty)")
    duplicates = sorted({a for a in actor_list if actor_list.count(a) > 1})
    if duplicates:
        raise PipelineError(f"actors listed more than once: {duplicates}")
    seed = _check_seed(seed)
    clip_seconds = _check_clip_seconds(clip_seconds)
    subsets = _check_subsets(subsets)
    raw_dir = Path(raw_dir)
    jobs = []
    for actor in actor_list:
        actor_dir = raw_dir / actor_dirname(actor)
        actor_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(actor_dir)
        jobs += [(actor_dir / clip.filename, clip, seed, clip_seconds) for clip in clip_names(actor, subsets)]
    if processes is None:
        processes = generation_processes(len(jobs))
    paths: list[Path] = []
    with tqdm(total=len(jobs), desc="synthesising clips", unit="clip", disable=not progress) as bar:
        if processes <= 1:
            for job in jobs:
                paths.append(_write_clip(*job))
                bar.update(1)
            return paths
        # spawn, not fork: the caller may have started torch's thread pools, and a forked child of those can hang.
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
        try:
            with sigint_held():  # the pool starts its processes as the clips are submitted
                written = pool.map(_write_clip_job, jobs, chunksize=max(1, len(jobs) // (8 * processes)))
            for path in written:
                paths.append(path)
                bar.update(1)
        finally:
            pool.shutdown(cancel_futures=True)
    return paths
