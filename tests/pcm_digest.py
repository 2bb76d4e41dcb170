"""Checksums of a few synthetic clips at 48 kHz and after resampling to 16 kHz: the integer outputs' fingerprint.

Run as a script it prints them as JSON, so a test can compute them under other CPU dispatch settings.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ravdess_ser.audio import ResampleConfig, resample_actor, write_audio  # noqa: E402
from ravdess_ser.ravdess import song_clip_names, speech_clip_names  # noqa: E402
from ravdess_ser.ravdess import SAMPLE_RATE  # noqa: E402
from ravdess_ser.synthetic import synthesize_clip  # noqa: E402

# Actor 13's clips were the ones that came out differently on an AVX2-only CPU before the portable maths.
CLIPS = [clip for actor in (2, 13) for clip in speech_clip_names(actor)[::7] + song_clip_names(actor)[::11]]
CLIP_SECONDS = 1.5  # params.yaml's data.synthetic_clip_seconds


def pcm_digests() -> dict[str, str]:
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "16k"
        for clip in CLIPS:
            path = raw / clip.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            write_audio(path, synthesize_clip(clip, 0, CLIP_SECONDS), SAMPLE_RATE, "PCM_16")
            digests[f"raw/{clip.filename}"] = hashlib.md5(path.read_bytes()).hexdigest()
        for path in resample_actor(raw, out, ResampleConfig(), progress=False):
            digests[f"16k/{path.name}"] = hashlib.md5(path.read_bytes()).hexdigest()
    return digests


if __name__ == "__main__":
    print(json.dumps(pcm_digests(), indent=1, sort_keys=True))
