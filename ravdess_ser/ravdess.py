"""The RAVDESS corpus: its file-name convention, labels and layout.

The Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone &
Russo, 2018, doi:10.1371/journal.pone.0196391) has 24 professional actors
(12 male, odd numbers; 12 female, even numbers) saying two lexically matched
statements in a neutral North American accent. Its audio comes in two zips
of Zenodo record 1188976, both 16-bit 48 kHz WAV in folders ``Actor_01`` …
``Actor_24``: speech (``Audio_Speech_Actors_01-24.zip``), 1440 clips, 60 per
actor; song (``Audio_Song_Actors_01-24.zip``), 1012 clips, 44 per actor of
23 (actor 18 has no song), with only the emotions neutral to fearful (01-06).

Every file name is seven two-digit codes, ``MM-VV-EE-II-SS-RR-AA.wav``:
modality, vocal channel, emotion, intensity, statement, repetition, actor.
Neutral has no strong intensity, so each actor has 4 neutral clips and 8 of
every other emotion, in speech and in song.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ravdess_ser.errors import PipelineError

ZENODO_RECORD = 1188976
SPEECH_ZIP_NAME = "Audio_Speech_Actors_01-24.zip"
SPEECH_ZIP_URL = f"https://zenodo.org/records/{ZENODO_RECORD}/files/{SPEECH_ZIP_NAME}?download=1"
SPEECH_ZIP_MD5 = "bc696df654c87fed845eb13823edef8a"
SONG_ZIP_NAME = "Audio_Song_Actors_01-24.zip"
SONG_ZIP_URL = f"https://zenodo.org/records/{ZENODO_RECORD}/files/{SONG_ZIP_NAME}?download=1"
# As PaddleSpeech's RAVDESS loader pins it (paddleaudio/datasets/ravdess.py), beside the speech MD5 above.
SONG_ZIP_MD5 = "5411230427d67a21e18aa4d466e6d1b9"
SAMPLE_RATE = 48_000
ALL_ACTORS = tuple(range(1, 25))
ALL_ACTOR_CODES = tuple(f"{actor:02d}" for actor in ALL_ACTORS)

MODALITIES = {1: "full-AV", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
EMOTIONS = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
REPETITIONS = {1: "1st", 2: "2nd"}
EMOTION_NAMES = tuple(EMOTIONS[code] for code in sorted(EMOTIONS))
SUBSETS = tuple(VOCAL_CHANNELS.values())  # the values of data.subsets
SONG_EMOTIONS = (1, 2, 3, 4, 5, 6)  # no disgust or surprised in song
ACTORS_WITHOUT_SONG = frozenset({18})

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")


@dataclass(frozen=True)
class ClipName:
    """The labels encoded in one RAVDESS file name."""

    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def stem(self) -> str:
        codes = (
            self.modality,
            self.vocal_channel,
            self.emotion,
            self.intensity,
            self.statement,
            self.repetition,
            self.actor,
        )
        return "-".join(f"{code:02d}" for code in codes)

    @property
    def filename(self) -> str:
        return self.stem + ".wav"

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def gender(self) -> str:
        return actor_gender(self.actor)

    @property
    def subset(self) -> str:
        """``speech`` or ``song``: the RAVDESS part (and data.subsets value) the clip belongs to."""
        return VOCAL_CHANNELS[self.vocal_channel]


def actor_gender(actor: int) -> str:
    return "male" if actor % 2 == 1 else "female"


def actor_dirname(actor: int) -> str:
    return f"Actor_{actor:02d}"


def actor_from_dirname(name: str) -> int | None:
    match = _ACTOR_DIR.match(name)
    return int(match.group(1)) if match else None


def parse_clip_name(path: str | Path) -> ClipName:
    """Parse a RAVDESS file name; raise :class:`PipelineError` naming the file if it breaks the convention.

    The extension is case-insensitive (``.WAV`` occurs in copies made on other
    systems); everything else must match exactly, so no file is ever guessed
    into a label.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise PipelineError(f"not a .wav file (suffix {path.suffix!r})", path)
    match = _NAME.match(path.stem)
    if match is None:
        raise PipelineError(
            "file name does not follow the RAVDESS convention MM-VV-EE-II-SS-RR-AA.wav "
            "(seven two-digit codes)",
            path,
        )
    clip = ClipName(*(int(code) for code in match.groups()))
    checks = (
        ("modality", clip.modality, MODALITIES),
        ("vocal channel", clip.vocal_channel, VOCAL_CHANNELS),
        ("emotion", clip.emotion, EMOTIONS),
        ("intensity", clip.intensity, INTENSITIES),
        ("statement", clip.statement, STATEMENTS),
        ("repetition", clip.repetition, REPETITIONS),
        ("actor", clip.actor, dict.fromkeys(ALL_ACTORS)),
    )
    for field, code, allowed in checks:
        if code not in allowed:
            raise PipelineError(
                f"{field} code {code:02d} is out of range (allowed: "
                f"{', '.join(f'{c:02d}' for c in allowed)})",
                path,
            )
    if clip.emotion == 1 and clip.intensity == 2:
        raise PipelineError("neutral (emotion 01) has no strong intensity (02) in RAVDESS", path)
    if clip.vocal_channel == 2 and clip.emotion not in SONG_EMOTIONS:
        raise PipelineError(f"song (vocal channel 02) has no {clip.emotion_name} (emotion {clip.emotion:02d}) "
                            "in RAVDESS (song emotions: 01-06)", path)
    return clip


def _audio_clip_names(actor: int, vocal_channel: int, emotions) -> list[ClipName]:
    names = [
        ClipName(3, vocal_channel, emotion, intensity, statement, repetition, actor)
        for emotion in emotions
        for intensity in INTENSITIES
        for statement in STATEMENTS
        for repetition in REPETITIONS
        if not (emotion == 1 and intensity == 2)
    ]
    return sorted(names, key=lambda clip: clip.stem)


def speech_clip_names(actor: int) -> list[ClipName]:
    """The 60 audio-only speech clips RAVDESS has for one actor, in sorted order."""
    return _audio_clip_names(actor, 1, EMOTIONS)


def song_clip_names(actor: int) -> list[ClipName]:
    """The 44 audio-only song clips RAVDESS has for one actor (none for actor 18), in sorted order."""
    return [] if actor in ACTORS_WITHOUT_SONG else _audio_clip_names(actor, 2, SONG_EMOTIONS)


def clip_names(actor: int, subsets=("speech",)) -> list[ClipName]:
    """The audio-only clips RAVDESS has for one actor in ``subsets`` (names from :data:`SUBSETS`), sorted."""
    by_subset = {"speech": speech_clip_names, "song": song_clip_names}
    return sorted((clip for subset in subsets for clip in by_subset[subset](actor)), key=lambda clip: clip.stem)
