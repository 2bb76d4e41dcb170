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
syllables each): leading near-silence (a faint pink-ish room noise), the
utterance, trailing near-silence. The clip length averages ``clip_seconds``
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
give byte-identical files (samples are quantised here, not by libsndfile),
which DVC's per-actor caching relies on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ravdess_ser.atomic import atomic_path, remove_stale_temporaries
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

#: Bump when the model changes, so cached corpora are known to be stale.
SYNTHETIC_VERSION = 1

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

# Consonants: formant locus, share of the syllable, voicing during the
# consonant, and which noise it makes ("burst", "sibilant", "dental", None).
@dataclass(frozen=True)
class _Consonant:
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

    def scaled(self, factors: np.ndarray) -> _Style:
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
        noise_floor_db=u(-72.0, -64.0),
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
    flow[rising] = 0.5 * (1.0 - np.cos(np.pi * p[rising] / t_open))
    derivative[rising] = (0.5 * np.pi / t_open) * np.sin(np.pi * p[rising] / t_open)
    fall = 0.5 * np.pi * (p[closing] - t_open) / t_close
    flow[closing] = np.cos(fall)
    derivative[closing] = -(0.5 * np.pi / t_close) * np.sin(fall)
    return flow, derivative


def _log_gaussian(freqs: np.ndarray, centre: float, octaves: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        distance = np.log2(np.maximum(freqs, 1.0) / centre)
    return np.exp(-0.5 * (distance / octaves) ** 2)


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
    window = np.hanning(_FRAME + 1)[:-1]  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP][:n_frames] * window

    # Denominator polynomial of the resonator cascade, one row per frame.
    radius = np.exp(-np.pi * bandwidths / rate)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * formants / rate)
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


def synthesize_clip(
    clip: ClipName, seed: int, clip_seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Render one clip: float32 mono samples in [-1, 1] at ``sample_rate``.

    Depends only on ``seed``, the clip's codes and ``clip_seconds`` (and
    ``sample_rate``).
    """
    _check_clip(clip)
    _keep_large_arrays_in_heap()
    seed = _check_seed(seed)
    clip_seconds = _check_clip_seconds(clip_seconds)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate < 16_000:
        raise PipelineError(f"sample_rate must be an integer of at least 16000 Hz, got {sample_rate!r}")
    sr = int(sample_rate)

    voice = _actor_voice(seed, clip.actor)
    strength = (1.0 if clip.intensity == 1 else _STRONG) * voice.expressiveness
    base_style = _actor_style(seed, clip.actor, clip.emotion)
    style = base_style.scaled(np.full(len(base_style.astuple()), strength))
    rng = np.random.default_rng(
        [seed, clip.actor, clip.emotion, clip.intensity, clip.statement, clip.repetition]
    )

    # --- timing --------------------------------------------------------------
    tempo = 2.0 ** (style.tempo_log2 + voice.tempo_log2 + rng.normal(0.0, 0.03))
    repetition_factor = 1.03 if clip.repetition == 1 else 0.97
    speech_s = 0.7 * clip_seconds * repetition_factor / tempo
    silence_s = 0.3 * clip_seconds * rng.uniform(0.85, 1.15)
    lead_s = silence_s * rng.uniform(0.45, 0.6)
    n = int(round((speech_s + silence_s) * sr))
    t0 = lead_s
    syllables = _STATEMENT_SYLLABLES[clip.statement]
    weights = np.array([s.weight for s in syllables]) * rng.uniform(0.88, 1.12, len(syllables))
    bounds = t0 + speech_s * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    t1 = bounds[-1]

    # --- segment breakpoints: formants, voicing, noises ------------------------
    ramp = min(0.015, 0.1 * speech_s / len(syllables))
    f_times: list[float] = []
    f_values: list[tuple[float, float, float]] = []
    voicing: list[tuple[float, float]] = [(0.0, 0.0)]
    aspiration: list[tuple[float, float]] = [(0.0, 0.0)]
    noise_env: dict[str, list[tuple[float, float]]] = {
        "burst": [(0.0, 0.0)],
        "sibilant": [(0.0, 0.0)],
        "dental": [(0.0, 0.0)],
    }
    accents: list[tuple[float, float, float]] = []  # centre, width, height
    for index, syl in enumerate(syllables):
        start, end = bounds[index], bounds[index + 1]
        dur = end - start
        loud = 10.0 ** ((2.0 * syl.stress - 1.5 + rng.normal(0.0, 0.5)) / 20.0)
        if index == len(syllables) - 1:
            loud *= 0.8
        onset = _CONSONANTS[syl.onset] if syl.onset else None
        coda = _CONSONANTS[syl.coda] if syl.coda else None
        v0 = start + (onset.share * dur if onset else 0.0)
        v1 = end - (coda.share * dur if coda else 0.0)
        if onset:
            f_times.append(start)
            f_values.append(onset.locus)
            voicing += [(start + ramp, onset.voicing * loud), (v0 - ramp, onset.voicing * loud)]
            if onset.noise == "burst":
                release = start + 0.6 * (v0 - start)
                burst_len = min(0.012, 0.3 * (v0 - release))
                noise_env["burst"] += [(release - 1e-4, 0.0), (release, 0.9 * loud),
                                       (release + burst_len, 0.0)]
                if onset.aspirated:
                    aspiration += [(release + burst_len, 0.0),
                                   (release + 2 * burst_len, 0.5 * loud), (v0, 0.2 * loud),
                                   (v0 + ramp, 0.0)]
            elif onset.noise is not None:
                level = 0.55 if onset.noise == "sibilant" else 0.12
                noise_env[onset.noise] += [(start, 0.0), (start + ramp, level * loud),
                                           (v0 - ramp, level * loud), (v0, 0.0)]
        else:
            voicing.append((start, 0.0))
        first, last = _VOWELS[syl.vowel[0]], _VOWELS[syl.vowel[1]]
        f_times += [v0 + 0.15 * (v1 - v0), v1 - 0.15 * (v1 - v0)]
        f_values += [first, last]
        voicing += [(v0 + ramp, loud), (v1 - ramp, loud * 0.85)]
        if coda:
            f_times.append(end)
            f_values.append(coda.locus)
            voicing += [(v1 + ramp, coda.voicing * loud), (end - ramp, coda.voicing * loud * 0.5)]
            if coda.noise is not None:
                noise_env[coda.noise] += [(v1, 0.0), (v1 + ramp, 0.4 * loud),
                                          (end - ramp, 0.3 * loud), (end, 0.0)]
        voicing.append((end, 0.0 if coda or index == len(syllables) - 1 else 0.3 * loud))
        accents.append((0.5 * (v0 + v1), 0.35 * dur, syl.stress))

    t_end = n / sr
    for env in (voicing, aspiration, *noise_env.values()):
        env.append((t_end, 0.0))

    def envelope(points: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
        points = sorted(points, key=lambda p: p[0])
        return np.interp(times, [p[0] for p in points], [p[1] for p in points])

    t = np.arange(n) / sr
    upsample = 2 if sr % 2 == 0 and sr >= 32_000 else 1
    vr = sr // upsample  # voice rate
    n_voice = -(-n // upsample)
    tv = np.arange(n_voice) / vr

    # --- F0 contour (semitones re the actor's base), on a 2.5 ms grid --------
    grid = np.arange(0.0, t_end + 0.0025, 0.0025)
    u = np.clip((grid - t0) / (t1 - t0), 0.0, 1.0)
    semitones = (
        style.f0_st
        + rng.normal(0.0, 0.4)
        + (_NEUTRAL_SLOPE_ST + style.slope_st) * (u - 0.5)
    )
    range_st = _NEUTRAL_RANGE_ST * voice.range_factor * 2.0**style.range_log2
    for centre, width, height in accents:
        semitones = semitones + range_st * height * rng.uniform(0.8, 1.2) * np.exp(
            -0.5 * ((grid - centre) / width) ** 2
        )
    final_start = bounds[-2]
    final = np.clip((grid - final_start) / (t1 - final_start), 0.0, 1.0)
    semitones = semitones + style.final_st * final**2
    for _ in range(3):
        semitones = semitones + 0.25 * np.sin(
            2 * np.pi * rng.uniform(0.7, 2.5) * grid + rng.uniform(0, 2 * np.pi)
        )
    if style.tremor_st > 0:
        semitones = semitones + style.tremor_st * np.sin(
            2 * np.pi * rng.uniform(4.5, 7.0) * grid + rng.uniform(0, 2 * np.pi)
        )
    f0 = np.interp(tv, grid, np.clip(voice.f0 * 2.0 ** (semitones / 12.0), 50.0, 600.0))

    # --- glottal source: Rosenberg flow derivative with jitter/shimmer -----------
    phase = np.cumsum(f0) / vr
    n_cycles = int(phase[-1]) + 2
    jitter = max(voice.jitter + style.jitter, 0.0)
    shimmer = max(voice.shimmer + style.shimmer, 0.0)
    cycle_jitter = rng.normal(0.0, jitter, n_cycles)
    phase = np.cumsum(f0 * (1.0 + cycle_jitter[phase.astype(np.int64)])) / vr
    cycle = phase.astype(np.int64)
    n_cycles = int(cycle[-1]) + 1
    cycle_amp = np.exp(rng.normal(0.0, shimmer, n_cycles))
    if style.creak > 0:
        creak_weight = style.creak * (0.3 + 0.7 * np.clip((np.arange(n_cycles) / n_cycles), 0, 1))
        cycle_amp *= 1.0 - np.minimum(creak_weight, 0.8) * (np.arange(n_cycles) % 2)
    oq = float(np.clip(voice.oq + style.oq, 0.3, 0.9))
    speed = float(np.clip(2.0 + 5.0 * (0.62 - oq), 1.2, 4.5))
    flow_table, derivative_table = _rosenberg_tables(oq, speed)
    position = ((phase - cycle) * _PULSE_TABLE_SIZE).astype(np.intp)
    flow = flow_table[position]
    derivative = derivative_table[position]
    voicing_env = envelope(voicing, tv)
    voiced = derivative * cycle_amp[cycle] * voicing_env
    active = voicing_env > 0.2
    source_rms = np.sqrt(np.mean(voiced[active] ** 2)) if active.any() else 1.0
    breath = max(voice.breath + style.breath, 0.005)
    white = rng.standard_normal(n_voice)
    source = voiced + source_rms * white * (
        breath * (0.35 + 0.65 * flow) * voicing_env + 0.6 * envelope(aspiration, tv)
    )

    # --- vocal tract ----------------------------------------------------------
    frame_times = np.arange(-(-n_voice // _HOP) + 1) * _HOP / vr
    f_order = np.argsort(f_times, kind="stable")
    key_times = np.asarray(f_times)[f_order]
    key_values = np.asarray(f_values)[f_order]
    scale = voice.vtl_scale * np.array([np.exp(style.f1_log), np.exp(style.f2_log), 1.0])
    formants = np.empty((frame_times.size, 5))
    for k in range(3):
        formants[:, k] = np.interp(frame_times, key_times, key_values[:, k]) * scale[k]
    formants[:, 3] = voice.f4
    formants[:, 4] = voice.f5
    formants = np.minimum(formants, 0.45 * vr)
    bandwidths = np.array([70.0, 100.0, 140.0, 220.0, 300.0]) * voice.bandwidth_factor
    bandwidths = np.broadcast_to(bandwidths, formants.shape).copy()
    bandwidths[:, 0] += 120.0 * breath  # glottal losses widen F1
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / vr)
    tilt = _BASE_TILT_DB + voice.tilt_db + style.tilt_db
    shelf = 10.0 ** (tilt * 0.5 * np.log2(1.0 + (freqs / 500.0) ** 2) / 20.0)
    speech = _formant_filter(source, formants, bandwidths, shelf, vr, upsample)
    speech_rms = np.sqrt(np.mean(speech[::upsample][active] ** 2)) if active.any() else 1.0
    speech = speech[:n]

    # --- frication and bursts: shaped noise, made only where it sounds ---------------
    fric_scale = voice.vtl_scale**0.5
    noise_shapes = {
        "burst": lambda f: _log_gaussian(f, 3000.0 * fric_scale, 1.3),
        "sibilant": lambda f: _log_gaussian(f, 6500.0 * fric_scale, 0.45),
        "dental": lambda f: _log_gaussian(f, 4000.0 * fric_scale, 1.5),
    }
    for kind, shape in noise_shapes.items():
        env = envelope(noise_env[kind], t)
        sounding = np.flatnonzero(env > 0.0)
        if sounding.size:
            noise = _shaped_noise(rng, sounding.size, sr, shape)
            speech[sounding] += speech_rms * env[sounding] * noise

    # --- loudness, room noise, headroom -------------------------------------------
    level_db = _REFERENCE_LEVEL_DB + voice.level_db + style.level_db + rng.normal(0.0, 0.7)
    in_speech = (t >= t0) & (t <= t1)
    rms = np.sqrt(np.mean(speech[in_speech] ** 2))
    audio = speech * (10.0 ** (level_db / 20.0) / rms)
    # Room noise: white at the voice rate, held for ``upsample`` samples (so it tilts down).
    room = np.repeat(rng.standard_normal(n_voice), upsample)[:n]
    audio += 10.0 ** (voice.noise_floor_db / 20.0) * room
    peak = np.max(np.abs(audio))
    if peak > _PEAK_LIMIT:
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


def _write_clip(path: Path, audio: np.ndarray) -> None:
    # Quantise here rather than in libsndfile, so bytes do not depend on its version.
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _generate_actor(actor_dir: Path, actor: int, seed: int, clip_seconds: float, bar) -> list[Path]:
    actor_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(actor_dir)
    paths = []
    for clip in speech_clip_names(actor):
        path = actor_dir / clip.filename
        _write_clip(path, synthesize_clip(clip, seed, clip_seconds))
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
