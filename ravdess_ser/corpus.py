"""Where the raw corpus comes from: RAVDESS from Zenodo, a local copy of its zip, or the synthetic stand-in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ravdess_ser.cli import check_choice, check_param, convert_params, param, positive
from ravdess_ser.errors import PipelineError
from ravdess_ser.ravdess import ALL_ACTOR_CODES, ALL_ACTORS, SPEECH_ZIP_MD5, SPEECH_ZIP_URL

SOURCES = ("synthetic", "ravdess", "zip")


@dataclass(frozen=True)
class DataConfig:
    source: str = param("synthetic", "synthetic (offline default), ravdess (download from Zenodo) or zip (a local copy)")
    actors: tuple[str, ...] = param(ALL_ACTOR_CODES, "two-digit actor codes to use, 01..24")
    url: str = param(SPEECH_ZIP_URL, "where source=ravdess downloads Audio_Speech_Actors_01-24.zip from")
    md5: str = param(SPEECH_ZIP_MD5, "MD5 the zip must have (source ravdess or zip)")
    zip_path: str = param("data/downloads/Audio_Speech_Actors_01-24.zip",
                          "the zip: download target for source=ravdess (resumed if partial), input for source=zip")
    synthetic_seed: int = param(0, "seed of the synthetic corpus")
    synthetic_clip_seconds: float = param(1.5, "mean clip length of the synthetic corpus (RAVDESS: about 3.7 s)")

    def __post_init__(self):
        convert_params(self, "data")
        check_choice("data.source", self.source, SOURCES)
        check_param("data.md5", self.md5, re.fullmatch(r"[0-9a-f]{32}", self.md5.strip().lower()) is not None,
                    "32 hexadecimal digits (quote it in params.yaml: md5: '0123...')")
        check_param("data.synthetic_seed", self.synthetic_seed, self.synthetic_seed >= 0, "an integer, 0 or more")
        check_param("data.synthetic_clip_seconds", self.synthetic_clip_seconds, positive(self.synthetic_clip_seconds),
                    "a positive number of seconds")


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
