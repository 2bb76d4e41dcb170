"""A synthetic, offline stand-in for the RAVDESS speech corpus.

The pipeline's offline default: a deterministic source-filter model of
emotional speech, written in exactly the layout and format of the real
RAVDESS speech audio (see :mod:`ravdess_ser.ravdess`), so every later stage
(resampling, wav2vec2 embeddings, classifier) runs unchanged without a
download.

Corpus
------
``raw_dir/Actor_XX/03-01-EE-II-SS-RR-AA.wav``: audio-only speech, 48 kHz,
16-bit PCM, mono; 60 clips per actor (neutral: 2 statements x 2 repetitions;
every other emotion: 2 intensities x 2 statements x 2 repetitions). Odd
actors are male, even actors female, as in RAVDESS.

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
emotion, intensity, statement, repetition, clip_seconds)``: not on which
other actors or clips are generated, nor in which order. The same arguments
give byte-identical files on every CPU class (transcendental functions from
:mod:`ravdess_ser.portable_math`; samples quantised by ``write_audio``, not by
libsndfile) for the pinned numpy, which DVC's per-actor caching relies on.

Usage
-----
::

    from pathlib import Path
    from ravdess_ser.synthetic import generate_corpus

    paths = generate_corpus(Path("data/raw"), actors=range(1, 25), seed=0, clip_seconds=2.0)

:func:`generate_actor` writes one ``Actor_XX`` folder (for per-actor stages);
:func:`synthesize_clip` returns one clip as an array. Only numpy is needed
(no scipy): the filters run in the frequency domain. The full corpus at
3.5 s per clip takes about 25 s of one CPU core.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ravdess_ser import portable_math as pm
from ravdess_ser.atomic import remove_stale_temporaries
from ravdess_ser.audio import write_audio
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import (
    ALL_ACTORS,
    EMOTIONS,
    INTENSITIES,
    REPETITIONS,
    SAMPLE_RATE,
    STATEMENTS,
    ClipName,
    actor_dirname,
    actor_gender,
    speech_clip_names,
)

MIN_CLIP_SECONDS = 0.25
MAX_CLIP_SECONDS = 60.0

# Domain tags that keep the actor-level random streams apart from the clip
# streams (which are seeded by the six clip codes).
_VOICE_TAG = 1_000_001
_STYLE_TAG = 1_000_002

# Active-speech RMS of a neutral clip of an average actor, dBFS.
_REFERENCE_LEVEL_DB = -32.0
_PEAK_LIMIT = 0.95

# The voiced path (glottal source and vocal tract) runs at half the output rate
# (24 kHz for 48 kHz output: formants and harmonics up to 12 kHz) and is
# band-limited-interpolated to the output rate inside the overlap-add filter.
# Hann frames of _FRAME samples every _HOP at the voice rate, transformed with
# _NFFT points (the zero padding absorbs the resonators' ringing).
_FRAME = 1024
_HOP = _FRAME // 2
_NFFT = 4 * _HOP
_FRAMES_PER_CHUNK = 16

# ---------------------------------------------------------------------------
# Phonetics of the two statements.
# ---------------------------------------------------------------------------

# Adult male formant targets F1-F3 (Hz), after Hillenbrand et al. (1995).
_VOWELS = {
    "ih": (427.0, 2034.0, 2684.0),
    "aa": (768.0, 1333.0, 2522.0),
    "ao": (652.0, 997.0, 2538.0),
    "ax": (500.0, 1500.0, 2500.0),
    "er": (474.0, 1379.0, 1710.0),
    "ay": (750.0, 1250.0, 2500.0),
    "iy": (342.0, 2322.0, 3000.0),
}

@dataclass(frozen=True)
class _Consonant:
    """Formant locus, share of the syllable, voicing during it, and its noise (a _NOISE_SHAPES key)."""

    locus: tuple[float, float, float]
    share: float
    voicing: float
    noise: str | None
    aspirated: bool = False


_CONSONANTS = {
    "k": _Consonant((300.0, 2100.0, 2500.0), 0.26, 0.0, "burst", aspirated=True),
    "t": _Consonant((300.0, 1750.0, 2650.0), 0.24, 0.0, "burst", aspirated=True),
    "d": _Consonant((300.0, 1700.0, 2600.0), 0.20, 0.15, "burst"),
    "b": _Consonant((300.0, 900.0, 2300.0), 0.20, 0.15, "burst"),
    "s": _Consonant((350.0, 1750.0, 2650.0), 0.34, 0.0, "sibilant"),
    "dh": _Consonant((350.0, 1500.0, 2500.0), 0.22, 0.35, "dental"),
    "z": _Consonant((350.0, 1750.0, 2650.0), 0.24, 0.25, "sibilant"),
    "ng": _Consonant((260.0, 1100.0, 2300.0), 0.22, 0.40, None),
    "t_": _Consonant((300.0, 1750.0, 2650.0), 0.12, 0.0, None),  # unreleased coda t
}


@dataclass(frozen=True)
class _Syllable:
    onset: str | None
    vowel: tuple[str, str]  # start and end target (a diphthong if they differ)
    coda: str | None
    stress: float
    weight: float  # relative duration


_TAIL = (
    _Syllable("b", ("ay", "iy"), None, 0.5, 1.0),  # by
    _Syllable("dh", ("ax", "ax"), None, 0.0, 0.7),  # the
    _Syllable("d", ("ao", "er"), None, 1.0, 1.6),  # door (phrase-final lengthening)
)
_STATEMENT_SYLLABLES = {
    1: (  # Kids are talking by the door
        _Syllable("k", ("ih", "ih"), "z", 1.0, 1.2),
        _Syllable(None, ("aa", "er"), None, 0.0, 0.8),
        _Syllable("t", ("ao", "ao"), None, 1.0, 1.1),
        _Syllable("k", ("ih", "ih"), "ng", 0.0, 0.9),
        *_TAIL,
    ),
    2: (  # Dogs are sitting by the door
        _Syllable("d", ("aa", "aa"), "z", 1.0, 1.3),
        _Syllable(None, ("aa", "er"), None, 0.0, 0.8),
        _Syllable("s", ("ih", "ih"), "t_", 1.0, 1.1),
        _Syllable("t", ("ih", "ih"), "ng", 0.0, 0.8),
        *_TAIL,
    ),
}
assert set(_STATEMENT_SYLLABLES) == set(STATEMENTS)

# Consonant noises: centre frequency (Hz, for an average male vocal tract) and
# width (octaves) of their log-Gaussian spectra.
_NOISE_SHAPES = {
    "burst": (3000.0, 1.3),
    "sibilant": (6500.0, 0.45),
    "dental": (4000.0, 1.5),
}
_NOISE_KINDS = tuple(_NOISE_SHAPES)

# ---------------------------------------------------------------------------
# Emotion profiles: deviation from neutral at normal intensity.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    f0_st: float = 0.0  # mean F0 shift, semitones
    range_log2: float = 0.0  # pitch-accent range, log2 factor
    slope_st: float = 0.0  # extra declination (<0) or incline over the utterance
    final_st: float = 0.0  # final rise (>0) or fall (<0), semitones
    tempo_log2: float = 0.0  # speaking rate, log2 factor
    level_db: float = 0.0  # loudness
    tilt_db: float = 0.0  # spectral tilt, dB/octave (>0 brighter)
    oq: float = 0.0  # open quotient (>0 breathier, <0 pressed)
    breath: float = 0.0  # aspiration noise
    jitter: float = 0.0  # per-cycle F0 perturbation (fraction)
    shimmer: float = 0.0  # per-cycle amplitude perturbation (fraction)
    tremor_st: float = 0.0  # 4-7 Hz F0 tremor depth, semitones
    creak: float = 0.0  # period-doubling amplitude alternation
    f1_log: float = 0.0  # formant shifts (log factor)
    f2_log: float = 0.0

    def scaled(self, factors: float | np.ndarray) -> _Style:
        """Every deviation multiplied by ``factors`` (one number, or one per field)."""
        values = np.array(self.astuple()) * factors
        return _Style(*(float(v) for v in values))

    def astuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


# A five-formant cascade under-represents 2-5 kHz; this lift (dB/octave above
# 500 Hz) brings the long-term spectrum near that of real speech.
_BASE_TILT_DB = 2.5
_NEUTRAL_SLOPE_ST = -2.5
_NEUTRAL_RANGE_ST = 2.5
_STRONG = 1.8  # strong intensity multiplies the deviation from neutral

_EMOTION_STYLES = {
    1: _Style(),
    2: _Style(  # calm: lower, flatter, slower, softer, slightly breathy
        f0_st=-1.0, range_log2=-0.45, slope_st=-0.5, tempo_log2=-0.15, level_db=-3.0,
        tilt_db=-1.2, oq=0.06, breath=0.05,
    ),
    3: _Style(  # happy: higher, wide bouncy range, faster, brighter, "smiling" formants
        f0_st=3.0, range_log2=0.6, slope_st=0.8, final_st=1.0, tempo_log2=0.12,
        level_db=3.0, tilt_db=1.5, oq=-0.04, f1_log=0.03, f2_log=0.05,
    ),
    4: _Style(  # sad: lower, narrow, falling, slow, quiet, dark and breathy
        f0_st=-1.8, range_log2=-0.7, slope_st=-3.0, final_st=-1.5, tempo_log2=-0.32,
        level_db=-5.0, tilt_db=-3.0, oq=0.12, breath=0.12, jitter=0.006, f1_log=-0.04,
        f2_log=-0.03,
    ),
    5: _Style(  # angry: loud, pressed, bright, raised F1, falling ends
        f0_st=2.2, range_log2=0.35, slope_st=-1.0, final_st=-1.5, tempo_log2=0.08,
        level_db=6.0, tilt_db=4.0, oq=-0.15, breath=-0.02, jitter=0.004, shimmer=0.02,
        f1_log=0.08,
    ),
    6: _Style(  # fearful: high, narrow, fast, breathy, jittery with tremor
        f0_st=4.5, range_log2=-0.25, slope_st=0.5, tempo_log2=0.22, level_db=0.5,
        oq=0.07, breath=0.10, jitter=0.015, shimmer=0.04, tremor_st=0.7,
    ),
    7: _Style(  # disgust: low, slow, creaky, falling, centralised vowels
        f0_st=-2.0, range_log2=0.2, slope_st=-2.0, final_st=-2.0, tempo_log2=-0.22,
        level_db=1.0, tilt_db=0.5, oq=-0.08, jitter=0.010, shimmer=0.05, creak=0.35,
        f2_log=-0.04,
    ),
    8: _Style(  # surprised: high, very wide range, strong final rise
        f0_st=3.5, range_log2=0.9, slope_st=1.0, final_st=6.0, level_db=3.0,
        tilt_db=1.5, oq=-0.02, breath=0.03,
    ),
}
assert set(_EMOTION_STYLES) == set(EMOTIONS)


@dataclass(frozen=True)
class _Voice:
    """One actor's voice, drawn from ``(seed, actor)``."""

    f0: float  # Hz
    vtl_scale: float  # formant scale (>1: shorter vocal tract)
    oq: float
    breath: float
    level_db: float
    tilt_db: float
    tempo_log2: float
    range_factor: float
    jitter: float
    shimmer: float
    bandwidth_factor: float
    expressiveness: float
    noise_floor_db: float
    f4: float
    f5: float


def _actor_voice(seed: int, actor: int) -> _Voice:
    rng = np.random.default_rng([seed, actor, _VOICE_TAG])
    u = rng.uniform
    male = actor_gender(actor) == "male"
    vtl = u(0.94, 1.04) if male else u(1.10, 1.20)
    return _Voice(
        f0=u(100.0, 130.0) if male else u(190.0, 230.0),
        vtl_scale=vtl,
        oq=u(0.55, 0.68),
        breath=u(0.03, 0.12),
        level_db=u(-3.0, 3.0),
        tilt_db=u(-1.5, 1.5),
        tempo_log2=u(-0.12, 0.12),
        range_factor=u(0.75, 1.3),
        jitter=u(0.003, 0.008),
        shimmer=u(0.02, 0.05),
        bandwidth_factor=u(0.9, 1.25),
        expressiveness=u(0.75, 1.2),
        noise_floor_db=u(-76.0, -68.0),
        f4=3500.0 * vtl * u(0.97, 1.03),
        f5=4500.0 * vtl * u(0.97, 1.03),
    )


def _actor_style(seed: int, actor: int, emotion: int) -> _Style:
    """The actor's own take on an emotion: each cue scaled by 0.7-1.3."""
    rng = np.random.default_rng([seed, actor, emotion, _STYLE_TAG])
    base = _EMOTION_STYLES[emotion]
    return base.scaled(rng.uniform(0.7, 1.3, size=len(base.astuple())))


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------


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
    if (clip.modality, clip.vocal_channel) != (3, 1):
        raise PipelineError(f"{clip.filename}: only audio-only speech (03-01-...) is synthesised")
    if clip.emotion not in EMOTIONS or clip.intensity not in INTENSITIES:
        raise PipelineError(f"{clip.filename}: emotion or intensity code out of range")
    if clip.statement not in STATEMENTS or clip.repetition not in REPETITIONS:
        raise PipelineError(f"{clip.filename}: statement or repetition code out of range")
    if clip.emotion == 1 and clip.intensity == 2:
        raise PipelineError(f"{clip.filename}: neutral (emotion 01) has no strong intensity (02)")


# ---------------------------------------------------------------------------
# Signal processing.
# ---------------------------------------------------------------------------


def _fast_length(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n (FFT sizes that pocketfft handles fast)."""
    best = 1 << max(n - 1, 0).bit_length()
    power3 = 1
    while power3 < best:
        power35 = power3
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 5
        power3 *= 3
    return best


def _shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, shape) -> np.ndarray:
    """Gaussian noise of ``n`` samples, unit RMS, whose magnitude spectrum is ``shape(freq_hz)``."""
    size = _fast_length(n)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    spectrum = rng.standard_normal((freqs.size, 2)).view(np.complex128)[:, 0] * shape(freqs)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, size)[:n]
    rms = np.sqrt(np.mean(noise**2))
    return noise / rms if rms > 0 else noise


_PULSE_TABLE_SIZE = 8192


def _rosenberg_tables(open_quotient: float, speed_quotient: float) -> tuple[np.ndarray, np.ndarray]:
    """One period of the Rosenberg (1971) glottal flow and its derivative, tabulated.

    The flow rises as a half cosine for ``open_quotient * sq / (1 + sq)`` of the
    period, falls as a quarter cosine for ``open_quotient / (1 + sq)`` and is
    zero (closed glottis) for the rest. A small open quotient with a large
    speed quotient gives the abrupt closure of pressed voice (strong high
    harmonics); a large one the gradual, symmetric pulse of breathy voice.
    """
    t_open = open_quotient * speed_quotient / (1.0 + speed_quotient)
    t_close = open_quotient / (1.0 + speed_quotient)
    p = np.arange(_PULSE_TABLE_SIZE) / _PULSE_TABLE_SIZE
    rising = p < t_open
    closing = ~rising & (p < t_open + t_close)
    flow = np.zeros_like(p)
    derivative = np.zeros_like(p)
    flow[rising] = 0.5 * (1.0 - pm.cos(np.pi * p[rising] / t_open))
    derivative[rising] = (0.5 * np.pi / t_open) * pm.sin(np.pi * p[rising] / t_open)
    fall = 0.5 * np.pi * (p[closing] - t_open) / t_close
    flow[closing] = pm.cos(fall)
    derivative[closing] = -(0.5 * np.pi / t_close) * pm.sin(fall)
    return flow, derivative


def _log_gaussian(freqs: np.ndarray, centre: float, octaves: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        distance = pm.log2(np.maximum(freqs, 1.0) / centre)
    return pm.exp(-0.5 * (distance / octaves) ** 2)


def _formant_filter(
    source: np.ndarray,
    formants: np.ndarray,
    bandwidths: np.ndarray,
    shelf: np.ndarray,
    rate: int,
    upsample: int,
) -> np.ndarray:
    """Filter ``source`` (at ``rate``) through a cascade of time-varying two-pole resonators.

    ``formants``/``bandwidths`` (Hz) have one row per overlap-add frame (frame
    ``i`` is centred on sample ``i * _HOP``); each row's all-pole response, unit
    gain at DC and times the fixed ``shelf``, is applied to a Hann-windowed
    frame in the frequency domain, and the frames are overlap-added (Hann at
    50 % overlap sums to one). The inverse transforms are ``upsample`` times
    longer, so the output comes out band-limited-interpolated to
    ``rate * upsample``, ``source.size * upsample`` samples long.
    """
    n = source.size
    n_frames = formants.shape[0]
    padded = np.zeros((n_frames + 1) * _HOP + _FRAME)
    padded[_HOP : _HOP + n] = source
    window = 0.5 - 0.5 * pm.cos(2.0 * np.pi * np.arange(_FRAME) / _FRAME)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP][:n_frames] * window

    # Denominator polynomial of the resonator cascade, one row per frame.
    radius = pm.exp(-np.pi * bandwidths / rate)
    a1 = -2.0 * radius * pm.cos(2.0 * np.pi * formants / rate)
    a2 = radius**2
    poly = np.ones((n_frames, 1))
    for k in range(formants.shape[1]):
        grown = np.zeros((n_frames, poly.shape[1] + 2))
        grown[:, :-2] += poly
        grown[:, 1:-1] += poly * a1[:, k : k + 1]
        grown[:, 2:] += poly * a2[:, k : k + 1]
        poly = grown
    gain = shelf * upsample  # irfft's 1/n normalisation grows with the upsampled length
    gain[-1] = 0.0  # no energy at the voice rate's Nyquist frequency
    hop = _HOP * upsample
    blocks = _NFFT // _HOP
    summed = np.zeros((n_frames + blocks, hop))
    # A few frames at a time: small temporaries stay in cache and in the heap.
    for first in range(0, n_frames, _FRAMES_PER_CHUNK):
        last = min(first + _FRAMES_PER_CHUNK, n_frames)
        chunk_poly = poly[first:last]
        spectrum = np.fft.rfft(frames[first:last], _NFFT) / np.fft.rfft(chunk_poly, _NFFT)
        spectrum *= chunk_poly.sum(axis=1, keepdims=True) * gain
        # irfft zero-pads the spectrum up to the longer length: band-limited upsampling.
        out = np.fft.irfft(spectrum, _NFFT * upsample)
        for j in range(blocks):
            summed[first + j : last + j] += out[:, j * hop : (j + 1) * hop]
    return summed.reshape(-1)[hop : hop + n * upsample]


@dataclass
class _Plan:
    """Where things happen in one utterance: breakpoints (seconds, value) of every track."""

    formant_times: list[float]
    formant_values: list[tuple[float, float, float]]
    voicing: list[tuple[float, float]]
    aspiration: list[tuple[float, float]]
    noise: dict[str, list[tuple[float, float]]]
    accents: list[tuple[float, float, float]]  # centre, width (s), stress


def _plan_utterance(syllables, bounds: np.ndarray, speech_s: float, rng: np.random.Generator) -> _Plan:
    """Lay the syllables out in time: onset consonant, vowel nucleus, coda."""
    ramp = min(0.015, 0.1 * speech_s / len(syllables))
    silent = [(0.0, 0.0), (float(bounds[0]), 0.0)]  # nothing before the utterance starts
    plan = _Plan([], [], list(silent), list(silent), {kind: list(silent) for kind in _NOISE_KINDS}, [])
    for index, syl in enumerate(syllables):
        start, end = bounds[index], bounds[index + 1]
        dur = end - start
        loud = float(pm.exp10((2.0 * syl.stress - 1.5 + rng.normal(0.0, 0.5)) / 20.0))
        if index == len(syllables) - 1:
            loud *= 0.8
        onset = _CONSONANTS[syl.onset] if syl.onset else None
        coda = _CONSONANTS[syl.coda] if syl.coda else None
        v0 = start + (onset.share * dur if onset else 0.0)
        v1 = end - (coda.share * dur if coda else 0.0)
        if onset:
            plan.formant_times.append(start)
            plan.formant_values.append(onset.locus)
            plan.voicing += [(start + ramp, onset.voicing * loud), (v0 - ramp, onset.voicing * loud)]
            if onset.noise == "burst":  # closure, release burst, then aspiration (VOT)
                release = start + 0.6 * (v0 - start)
                burst = min(0.012, 0.3 * (v0 - release))
                plan.noise["burst"] += [(release - 1e-4, 0.0), (release, 0.9 * loud), (release + burst, 0.0)]
                if onset.aspirated:
                    plan.aspiration += [
                        (release + burst, 0.0),
                        (release + 2 * burst, 0.5 * loud),
                        (v0, 0.2 * loud),
                        (v0 + ramp, 0.0),
                    ]
            elif onset.noise is not None:
                level = (0.55 if onset.noise == "sibilant" else 0.12) * loud
                plan.noise[onset.noise] += [(start, 0.0), (start + ramp, level), (v0 - ramp, level), (v0, 0.0)]
        else:
            plan.voicing.append((start, 0.0))
        plan.formant_times += [v0 + 0.15 * (v1 - v0), v1 - 0.15 * (v1 - v0)]
        plan.formant_values += [_VOWELS[syl.vowel[0]], _VOWELS[syl.vowel[1]]]
        plan.voicing += [(v0 + ramp, loud), (v1 - ramp, loud * 0.85)]
        if coda:
            plan.formant_times.append(end)
            plan.formant_values.append(coda.locus)
            plan.voicing += [(v1 + ramp, coda.voicing * loud), (end - ramp, coda.voicing * loud * 0.5)]
            if coda.noise is not None:
                plan.noise[coda.noise] += [(v1, 0.0), (v1 + ramp, 0.4 * loud), (end - ramp, 0.3 * loud), (end, 0.0)]
        plan.voicing.append((end, 0.0 if coda or index == len(syllables) - 1 else 0.3 * loud))
        plan.accents.append((0.5 * (v0 + v1), 0.35 * dur, syl.stress))
    return plan


def _envelope(points: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """Piecewise-linear track through breakpoints (in any order), zero after the last."""
    points = sorted(points, key=lambda p: p[0])
    return np.interp(times, [p[0] for p in points], [p[1] for p in points], right=0.0)


def _f0_track(
    voice: _Voice,
    style: _Style,
    plan: _Plan,
    bounds: np.ndarray,
    duration: float,
    times: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """F0 in Hz at ``times``: level, declination, accents, final rise/fall, drift, tremor."""
    grid = np.arange(0.0, duration + 0.0025, 0.0025)  # built at 400 Hz, then interpolated
    t0, t1 = bounds[0], bounds[-1]
    progress = np.clip((grid - t0) / (t1 - t0), 0.0, 1.0)
    semitones = style.f0_st + rng.normal(0.0, 0.4) + (_NEUTRAL_SLOPE_ST + style.slope_st) * (progress - 0.5)
    range_st = _NEUTRAL_RANGE_ST * voice.range_factor * float(pm.exp2(style.range_log2))
    for centre, width, stress in plan.accents:
        bump = pm.exp(-0.5 * ((grid - centre) / width) ** 2)
        semitones = semitones + range_st * stress * rng.uniform(0.8, 1.2) * bump
    final = np.clip((grid - bounds[-2]) / (t1 - bounds[-2]), 0.0, 1.0)
    semitones = semitones + style.final_st * final**2
    for _ in range(3):  # slow wander
        semitones = semitones + 0.25 * pm.sin(2 * np.pi * rng.uniform(0.7, 2.5) * grid + rng.uniform(0, 2 * np.pi))
    if style.tremor_st > 0:
        tremor = pm.sin(2 * np.pi * rng.uniform(4.5, 7.0) * grid + rng.uniform(0, 2 * np.pi))
        semitones = semitones + style.tremor_st * tremor
    return np.interp(times, grid, np.clip(voice.f0 * pm.exp2(semitones / 12.0), 50.0, 600.0))


def _glottal_source(
    f0: np.ndarray,
    rate: int,
    voice: _Voice,
    style: _Style,
    plan: _Plan,
    times: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Excitation at ``rate``: jittered, shimmered Rosenberg pulses plus aspiration.

    Returns the source, the mask of clearly voiced samples and the breathiness.
    """
    # Jitter: each glottal cycle gets its own small F0 perturbation.
    phase = np.cumsum(f0) / rate
    jitter = max(voice.jitter + style.jitter, 0.0)
    cycle_jitter = rng.normal(0.0, jitter, int(phase[-1]) + 2)
    phase = np.cumsum(f0 * (1.0 + cycle_jitter[phase.astype(np.int64)])) / rate
    cycle = phase.astype(np.int64)
    n_cycles = int(cycle[-1]) + 1
    # Shimmer, and creak (alternate cycles weakened, increasingly towards the end).
    cycle_amp = pm.exp(rng.normal(0.0, max(voice.shimmer + style.shimmer, 0.0), n_cycles))
    if style.creak > 0:
        creak = np.minimum(style.creak * (0.3 + 0.7 * np.arange(n_cycles) / n_cycles), 0.8)
        cycle_amp *= 1.0 - creak * (np.arange(n_cycles) % 2)
    # Pulse shape: breathy voice opens longer and closes gently, pressed voice the reverse.
    oq = float(np.clip(voice.oq + style.oq, 0.3, 0.9))
    speed = float(np.clip(2.0 + 5.0 * (0.62 - oq), 1.2, 4.5))
    flow_table, derivative_table = _rosenberg_tables(oq, speed)
    position = ((phase - cycle) * _PULSE_TABLE_SIZE).astype(np.intp)
    voicing = _envelope(plan.voicing, times)
    voiced = derivative_table[position] * cycle_amp[cycle] * voicing
    active = voicing > 0.2
    source_rms = np.sqrt(np.mean(voiced[active] ** 2)) if active.any() else 1.0
    # Aspiration: turbulence modulated by the glottal flow, and the VOT of aspirated stops.
    breath = max(voice.breath + style.breath, 0.005)
    noise = rng.standard_normal(times.size)
    aspiration = breath * (0.35 + 0.65 * flow_table[position]) * voicing + 0.6 * _envelope(plan.aspiration, times)
    return voiced + source_rms * noise * aspiration, active, breath


def _vocal_tract(
    source: np.ndarray,
    rate: int,
    upsample: int,
    voice: _Voice,
    style: _Style,
    plan: _Plan,
    breath: float,
) -> np.ndarray:
    """Formant trajectories from the plan, scaled to the actor's vocal tract; filter and upsample."""
    frame_times = np.arange(-(-source.size // _HOP) + 1) * _HOP / rate
    order = np.argsort(plan.formant_times, kind="stable")
    key_times = np.asarray(plan.formant_times)[order]
    key_values = np.asarray(plan.formant_values)[order]
    scale = voice.vtl_scale * np.array([pm.exp(style.f1_log), pm.exp(style.f2_log), 1.0])
    formants = np.empty((frame_times.size, 5))
    for k in range(3):
        formants[:, k] = np.interp(frame_times, key_times, key_values[:, k]) * scale[k]
    formants[:, 3] = voice.f4
    formants[:, 4] = voice.f5
    formants = np.minimum(formants, 0.45 * rate)
    bandwidths = np.array([70.0, 100.0, 140.0, 220.0, 300.0]) * voice.bandwidth_factor
    bandwidths = np.broadcast_to(bandwidths, formants.shape).copy()
    bandwidths[:, 0] += 120.0 * breath  # glottal losses widen F1
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / rate)
    tilt = _BASE_TILT_DB + voice.tilt_db + style.tilt_db
    shelf = pm.exp10(tilt * 0.5 * pm.log2(1.0 + (freqs / 500.0) ** 2) / 20.0)
    return _formant_filter(source, formants, bandwidths, shelf, rate, upsample)


def synthesize_clip(
    clip: ClipName, seed: int, clip_seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Render one clip: float32 mono samples in [-1, 1] at ``sample_rate``.

    Depends only on ``seed``, the clip's codes, ``clip_seconds`` and
    ``sample_rate``; ``clip_seconds`` is the mean length over the corpus.
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
    sr = int(sample_rate)
    _keep_large_arrays_in_heap()

    voice = _actor_voice(seed, clip.actor)
    strength = (1.0 if clip.intensity == 1 else _STRONG) * voice.expressiveness
    style = _actor_style(seed, clip.actor, clip.emotion).scaled(strength)
    rng = np.random.default_rng([seed, clip.actor, clip.emotion, clip.intensity, clip.statement, clip.repetition])

    # Timing: tempo sets the speech length; near-silence before and after.
    tempo = float(pm.exp2(style.tempo_log2 + voice.tempo_log2 + rng.normal(0.0, 0.03)))
    repetition_factor = 1.03 if clip.repetition == 1 else 0.97
    # Speech takes ~2/3 of the clip; the coefficients make the corpus mean ~clip_seconds.
    speech_s = 0.64 * clip_seconds * repetition_factor / tempo
    silence_s = 0.32 * clip_seconds * rng.uniform(0.85, 1.15)
    lead_s = silence_s * rng.uniform(0.45, 0.6)
    n = int(round((speech_s + silence_s) * sr))
    duration = n / sr
    syllables = _STATEMENT_SYLLABLES[clip.statement]
    weights = np.array([s.weight for s in syllables]) * rng.uniform(0.88, 1.12, len(syllables))
    bounds = lead_s + speech_s * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    plan = _plan_utterance(syllables, bounds, speech_s, rng)

    # Voiced path at the voice rate (half the output rate when that is >= 32 kHz).
    upsample = 2 if sr % 2 == 0 and sr >= 32_000 else 1
    rate = sr // upsample
    voice_times = np.arange(-(-n // upsample)) / rate
    f0 = _f0_track(voice, style, plan, bounds, duration, voice_times, rng)
    source, active, breath = _glottal_source(f0, rate, voice, style, plan, voice_times, rng)
    speech = _vocal_tract(source, rate, upsample, voice, style, plan, breath)
    speech_rms = np.sqrt(np.mean(speech[::upsample][active] ** 2)) if active.any() else 1.0
    speech = speech[:n]

    # Frication and bursts: shaped noise at the output rate, made only where it sounds.
    times = np.arange(n) / sr
    centre_scale = math.sqrt(voice.vtl_scale)
    for kind in _NOISE_KINDS:
        env = _envelope(plan.noise[kind], times)
        sounding = np.flatnonzero(env > 0.0)
        if sounding.size:
            centre, octaves = _NOISE_SHAPES[kind]
            noise = _shaped_noise(
                rng, sounding.size, sr, lambda f, c=centre * centre_scale, w=octaves: _log_gaussian(f, c, w)
            )
            speech[sounding] += speech_rms * env[sounding] * noise

    # Loudness (RMS over the utterance), room noise, headroom.
    level_db = _REFERENCE_LEVEL_DB + voice.level_db + style.level_db + rng.normal(0.0, 0.7)
    in_speech = (times >= bounds[0]) & (times <= bounds[-1])
    audio = speech * (float(pm.exp10(level_db / 20.0)) / np.sqrt(np.mean(speech[in_speech] ** 2)))
    # Room noise: white at the voice rate, held for ``upsample`` samples (so it tilts down).
    room = np.repeat(rng.standard_normal(voice_times.size), upsample)[:n]
    audio += float(pm.exp10(voice.noise_floor_db / 20.0)) * room
    peak = np.max(np.abs(audio))
    if peak > _PEAK_LIMIT:  # rare: the loudest strong-anger clips
        audio *= _PEAK_LIMIT / peak
    return audio.astype(np.float32)


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------


_heap_warmed = False


def _keep_large_arrays_in_heap() -> None:
    """Make glibc keep this module's few-megabyte temporaries in the heap.

    glibc serves large allocations with mmap and unmaps them on free, until a
    large mmapped block is freed: then it raises its mmap threshold (up to 32
    MiB) and trim threshold to match. Without that, every clip pays page
    faults for fresh memory again (expensive in VMs; ~40 % of the run time).
    Freeing one 31 MiB block raises the thresholds once per process, the
    same thing glibc does on its own in a long-running program. No effect
    on other allocators.
    """
    global _heap_warmed
    if not _heap_warmed:
        block = np.empty(31 * 2**20 // 8)
        del block
        _heap_warmed = True


def _generate_actor(actor_dir: Path, actor: int, seed: int, clip_seconds: float, bar) -> list[Path]:
    actor_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(actor_dir)
    paths = []
    for clip in speech_clip_names(actor):
        path = actor_dir / clip.filename
        write_audio(path, synthesize_clip(clip, seed, clip_seconds), SAMPLE_RATE, "PCM_16")
        paths.append(path)
        if bar is not None:
            bar.update(1)
    return paths


def generate_actor(actor_dir: Path, actor: int, seed: int, clip_seconds: float) -> list[Path]:
    """Write the 60 speech clips of one actor into ``actor_dir``; return their paths (sorted).

    ``actor_dir`` is normally ``raw_dir / actor_dirname(actor)``. Each file is
    written atomically; other files in the folder are left alone.
    """
    actor = _check_actor(actor)
    seed = _check_seed(seed)
    clip_seconds = _check_clip_seconds(clip_seconds)
    return _generate_actor(Path(actor_dir), actor, seed, clip_seconds, None)


def generate_corpus(
    raw_dir: Path,
    actors: Sequence[int],
    seed: int,
    clip_seconds: float,
    progress: bool = True,
) -> list[Path]:
    """Write ``raw_dir/Actor_XX/*.wav`` for ``actors``; return all clip paths.

    Shows a tqdm progress bar over clips unless ``progress`` is false.
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
    raw_dir = Path(raw_dir)
    total = sum(len(speech_clip_names(actor)) for actor in actor_list)
    paths: list[Path] = []
    with tqdm(total=total, desc="synthesising clips", unit="clip", disable=not progress) as bar:
        for actor in actor_list:
            paths += _generate_actor(raw_dir / actor_dirname(actor), actor, seed, clip_seconds, bar)
    return paths
