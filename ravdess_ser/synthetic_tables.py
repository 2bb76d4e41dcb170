"""The synthetic corpus's tables: what is said, how each emotion sounds, how each song goes, and each actor's voice.

The phonetics of the two RAVDESS statements (vowel targets, consonants, syllables), the emotion profiles
(deviations from neutral at normal intensity), the melodies the song clips are sung to, and the per-actor voice
and per-actor-and-emotion style, drawn from ``(seed, actor)``. :mod:`ravdess_ser.synthetic_dsp` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ravdess_ser.ravdess import EMOTIONS, SONG_EMOTIONS, STATEMENTS, actor_gender

# Domain tags that keep the actor-level random streams apart from the clip
# streams (which are seeded by the six clip codes), and the song clips'
# streams (the six codes and SONG_TAG) apart from the speech clips'.
_VOICE_TAG = 1_000_001
_STYLE_TAG = 1_000_002
SONG_TAG = 1_000_003

# ---------------------------------------------------------------------------
# Phonetics of the two statements.
# ---------------------------------------------------------------------------

# Adult male formant targets F1-F3 (Hz), after Hillenbrand et al. (1995).
VOWELS = {
    "ih": (427.0, 2034.0, 2684.0),
    "aa": (768.0, 1333.0, 2522.0),
    "ao": (652.0, 997.0, 2538.0),
    "ax": (500.0, 1500.0, 2500.0),
    "er": (474.0, 1379.0, 1710.0),
    "ay": (750.0, 1250.0, 2500.0),
    "iy": (342.0, 2322.0, 3000.0),
}


@dataclass(frozen=True)
class Consonant:
    """Formant locus, share of the syllable, voicing during it, and its noise (a NOISE_SHAPES key)."""

    locus: tuple[float, float, float]
    share: float
    voicing: float
    noise: str | None
    aspirated: bool = False


CONSONANTS = {
    "k": Consonant((300.0, 2100.0, 2500.0), 0.26, 0.0, "burst", aspirated=True),
    "t": Consonant((300.0, 1750.0, 2650.0), 0.24, 0.0, "burst", aspirated=True),
    "d": Consonant((300.0, 1700.0, 2600.0), 0.20, 0.15, "burst"),
    "b": Consonant((300.0, 900.0, 2300.0), 0.20, 0.15, "burst"),
    "s": Consonant((350.0, 1750.0, 2650.0), 0.34, 0.0, "sibilant"),
    "dh": Consonant((350.0, 1500.0, 2500.0), 0.22, 0.35, "dental"),
    "z": Consonant((350.0, 1750.0, 2650.0), 0.24, 0.25, "sibilant"),
    "ng": Consonant((260.0, 1100.0, 2300.0), 0.22, 0.40, None),
    "t_": Consonant((300.0, 1750.0, 2650.0), 0.12, 0.0, None),  # unreleased coda t
}


@dataclass(frozen=True)
class Syllable:
    onset: str | None
    vowel: tuple[str, str]  # start and end target (a diphthong if they differ)
    coda: str | None
    stress: float
    weight: float  # relative duration


_TAIL = (
    Syllable("b", ("ay", "iy"), None, 0.5, 1.0),  # by
    Syllable("dh", ("ax", "ax"), None, 0.0, 0.7),  # the
    Syllable("d", ("ao", "er"), None, 1.0, 1.6),  # door (phrase-final lengthening)
)
STATEMENT_SYLLABLES = {
    1: (  # Kids are talking by the door
        Syllable("k", ("ih", "ih"), "z", 1.0, 1.2),
        Syllable(None, ("aa", "er"), None, 0.0, 0.8),
        Syllable("t", ("ao", "ao"), None, 1.0, 1.1),
        Syllable("k", ("ih", "ih"), "ng", 0.0, 0.9),
        *_TAIL,
    ),
    2: (  # Dogs are sitting by the door
        Syllable("d", ("aa", "aa"), "z", 1.0, 1.3),
        Syllable(None, ("aa", "er"), None, 0.0, 0.8),
        Syllable("s", ("ih", "ih"), "t_", 1.0, 1.1),
        Syllable("t", ("ih", "ih"), "ng", 0.0, 0.8),
        *_TAIL,
    ),
}
assert set(STATEMENT_SYLLABLES) == set(STATEMENTS)

# Consonant noises: centre frequency (Hz, for an average male vocal tract) and
# width (octaves) of their log-Gaussian spectra.
NOISE_SHAPES = {
    "burst": (3000.0, 1.3),
    "sibilant": (6500.0, 0.45),
    "dental": (4000.0, 1.5),
}
NOISE_KINDS = tuple(NOISE_SHAPES)

# ---------------------------------------------------------------------------
# Emotion profiles: deviation from neutral at normal intensity.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
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

    def scaled(self, factors: float | np.ndarray) -> Style:
        """Every deviation multiplied by ``factors`` (one number, or one per field)."""
        values = np.array(self.astuple()) * factors
        return Style(*(float(v) for v in values))

    def astuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


# A five-formant cascade under-represents 2-5 kHz; this lift (dB/octave above
# 500 Hz) brings the long-term spectrum near that of real speech.
BASE_TILT_DB = 2.5
NEUTRAL_SLOPE_ST = -2.5
NEUTRAL_RANGE_ST = 2.5
STRONG = 1.8  # strong intensity multiplies the deviation from neutral

EMOTION_STYLES = {
    1: Style(),
    2: Style(  # calm: lower, flatter, slower, softer, slightly breathy
        f0_st=-1.0, range_log2=-0.45, slope_st=-0.5, tempo_log2=-0.15, level_db=-3.0,
        tilt_db=-1.2, oq=0.06, breath=0.05,
    ),
    3: Style(  # happy: higher, wide bouncy range, faster, brighter, "smiling" formants
        f0_st=3.0, range_log2=0.6, slope_st=0.8, final_st=1.0, tempo_log2=0.12,
        level_db=3.0, tilt_db=1.5, oq=-0.04, f1_log=0.03, f2_log=0.05,
    ),
    4: Style(  # sad: lower, narrow, falling, slow, quiet, dark and breathy
        f0_st=-1.8, range_log2=-0.7, slope_st=-3.0, final_st=-1.5, tempo_log2=-0.32,
        level_db=-5.0, tilt_db=-3.0, oq=0.12, breath=0.12, jitter=0.006, f1_log=-0.04,
        f2_log=-0.03,
    ),
    5: Style(  # angry: loud, pressed, bright, raised F1, falling ends
        f0_st=2.2, range_log2=0.35, slope_st=-1.0, final_st=-1.5, tempo_log2=0.08,
        level_db=6.0, tilt_db=4.0, oq=-0.15, breath=-0.02, jitter=0.004, shimmer=0.02,
        f1_log=0.08,
    ),
    6: Style(  # fearful: high, narrow, fast, breathy, jittery with tremor
        f0_st=4.5, range_log2=-0.25, slope_st=0.5, tempo_log2=0.22, level_db=0.5,
        oq=0.07, breath=0.10, jitter=0.015, shimmer=0.04, tremor_st=0.7,
    ),
    7: Style(  # disgust: low, slow, creaky, falling, centralised vowels
        f0_st=-2.0, range_log2=0.2, slope_st=-2.0, final_st=-2.0, tempo_log2=-0.22,
        level_db=1.0, tilt_db=0.5, oq=-0.08, jitter=0.010, shimmer=0.05, creak=0.35,
        f2_log=-0.04,
    ),
    8: Style(  # surprised: high, very wide range, strong final rise
        f0_st=3.5, range_log2=0.9, slope_st=1.0, final_st=6.0, level_db=3.0,
        tilt_db=1.5, oq=-0.02, breath=0.03,
    ),
}
assert set(EMOTION_STYLES) == set(EMOTIONS)


@dataclass(frozen=True)
class Voice:
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


def actor_voice(seed: int, actor: int) -> Voice:
    rng = np.random.default_rng([seed, actor, _VOICE_TAG])
    u = rng.uniform
    male = actor_gender(actor) == "male"
    vtl = u(0.94, 1.04) if male else u(1.10, 1.20)
    return Voice(
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


def actor_style(seed: int, actor: int, emotion: int) -> Style:
    """The actor's own take on an emotion: each cue scaled by 0.7-1.3."""
    rng = np.random.default_rng([seed, actor, emotion, _STYLE_TAG])
    base = EMOTION_STYLES[emotion]
    return base.scaled(rng.uniform(0.7, 1.3, size=len(base.astuple())))


# ---------------------------------------------------------------------------
# Song: the melodies the statements are sung to.
# ---------------------------------------------------------------------------

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # semitones above the singer's tonic (their speaking F0)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
MINOR_EMOTIONS = frozenset({4, 6})  # sad and fearful are sung in the minor mode, the rest in the major
# (scale degree, beats) per syllable: one note each, the last one held.
SONG_MELODIES = {
    1: ((0, 1.0), (2, 1.0), (4, 1.0), (4, 1.0), (3, 1.0), (1, 1.0), (0, 2.0)),  # Kids are talking by the door
    2: ((4, 1.0), (3, 1.0), (2, 1.0), (4, 1.0), (1, 1.0), (1, 1.0), (0, 2.0)),  # Dogs are sitting by the door
}
assert all(len(SONG_MELODIES[s]) == len(STATEMENT_SYLLABLES[s]) for s in STATEMENTS)
assert MINOR_EMOTIONS <= set(SONG_EMOTIONS)
SONG_LENGTH_FACTOR = 1.3  # sung syllables are held: the utterance lasts longer than spoken
SONG_CONSONANT_SCALE = 0.5  # singers shorten consonants to hold the vowels
SONG_GLIDE_S = 0.04  # portamento between notes
SONG_LEVEL_DB = 2.0  # singing is louder than speaking
