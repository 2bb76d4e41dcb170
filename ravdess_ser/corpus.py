"""Where the raw corpus comes from: RAVDESS from Zenodo, local copies of its zips, or the synthetic stand-in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ravdess_ser.params import check_choice, check_param, convert_params, param, positive
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import (
    ALL_ACTOR_CODES,
    ALL_ACTORS,
    SONG_ZIP_MD5,
    SONG_ZIP_NAME,
    SONG_ZIP_URL,
    SPEECH_ZIP_MD5,
    SPEECH_ZIP_NAME,
    SPEECH_ZIP_URL,
    SUBSETS,
)

SOURCES = ("synthetic", "ravdess", "zip")


def archive_key(subset: str, name: str) -> str:
    """The params.yaml key of a subset's zip ``url``, ``md5`` or ``zip_path`` (song's have a ``song_`` prefix)."""
    return f"data.{'' if subset == 'speech' else subset + '_'}{name}"


@dataclass(frozen=True)
class Archive:
    """One RAVDESS zip: the subset it holds, where it is downloaded from, its MD5 and its local path."""

    subset: str
    url: str
    md5: str
    path: Path

    def key(self, name: str) -> str:
        return archive_key(self.subset, name)


@dataclass(frozen=True)
class DataConfig:
    source: str = param("synthetic", "synthetic (offline default), ravdess (download from Zenodo) or zip (local copies)")
    actors: tuple[str, ...] = param(ALL_ACTOR_CODES, "two-digit actor codes to use, 01..24")
    subsets: tuple[str, ...] = param(("speech",), "RAVDESS parts to use: [speech] or [speech, song] (song: 44 clips "
                                     "per actor of emotions 01-06, none for actor 18)")
    url: str = param(SPEECH_ZIP_URL, f"where source=ravdess downloads {SPEECH_ZIP_NAME} from")
    md5: str = param(SPEECH_ZIP_MD5, "MD5 the speech zip must have (source ravdess or zip)")
    zip_path: str = param(f"data/downloads/{SPEECH_ZIP_NAME}",
                          "the speech zip: download target for source=ravdess (resumed if partial), input for source=zip")
    song_url: str = param(SONG_ZIP_URL, f"where source=ravdess downloads {SONG_ZIP_NAME} from (subsets with song)")
    song_md5: str = param(SONG_ZIP_MD5, "MD5 the song zip must have (source ravdess or zip, subsets with song); the "
                          "default is the one PaddleSpeech's RAVDESS loader pins beside the speech zip's")
    song_zip_path: str = param(f"data/downloads/{SONG_ZIP_NAME}",
                               "the song zip: download target for source=ravdess, input for source=zip (subsets with song)")
    synthetic_seed: int = param(0, "seed of the synthetic corpus")
    synthetic_clip_seconds: float = param(1.5, "mean speech clip length of the synthetic corpus (RAVDESS: about "
                                          "3.7 s); its song clips are about a sixth longer (held notes)")

    def __post_init__(self):
        convert_params(self, "data")
        check_choice("data.source", self.source, SOURCES)
        subsets = self.subsets
        listed = isinstance(subsets, (list, tuple)) and all(isinstance(subset, str) for subset in subsets)
        check_param("data.subsets", list(subsets) if listed else subsets,
                    listed and 0 < len(subsets) == len(set(subsets)) and set(subsets) <= set(SUBSETS),
                    "a list of speech and song, each at most once: [speech] or [speech, song]")
        object.__setattr__(self, "subsets", tuple(subsets))
        for key in ("md5", "song_md5"):
            value = getattr(self, key)
            check_param(f"data.{key}", value, re.fullmatch(r"[0-9a-f]{32}", value.strip().lower()) is not None,
                        f"32 hexadecimal digits (quote it in params.yaml: {key}: '0123...')")
        check_param("data.synthetic_seed", self.synthetic_seed, self.synthetic_seed >= 0, "an integer, 0 or more")
        check_param("data.synthetic_clip_seconds", self.synthetic_clip_seconds, positive(self.synthetic_clip_seconds),
                    "a positive number of seconds")

    def archives(self) -> list[Archive]:
        """The zips of the requested subsets, speech first."""
        found = {"speech": Archive("speech", self.url, self.md5, Path(self.zip_path)),
                 "song": Archive("song", self.song_url, self.song_md5, Path(self.song_zip_path))}
        return [found[subset] for subset in SUBSETS if subset in self.subsets]


def actor_numbers(codes: Sequence[str]) -> list[int]:
    """``["01", "02"]`` -> ``[1, 2]``, rejecting anything that is not a RAVDESS actor code."""
    numbers = []
    for code in codes:
        code = str(code)
        if len(code) != 2 or not code.isdigit() or int(code) not in ALL_ACTORS:
            raise PipelineError(f"data.actors: {code!r} is not a two-digit RAVDESS actor code (01..24)")
        numbers.append(int(code))
    if len(set(numbers)) != len(numbers):
        raise PipelineError(f"data.actors lists an actor twice: {list(codes)}")
    return numbers
