"""Exact-mode frames of a few clips, for comparing float results across CPU classes.

Run as a script, it writes them to the .npz path it is given (``--runtime`` as ``embed.runtime``, default auto), so a
test can compute them under another CPU's kernels (and a newcomer on another machine can compare with the committed
tests/data/embedding_reference.npz).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ravdess_ser.audio import ResampleConfig, read_audio, resample_actor, write_audio  # noqa: E402
from ravdess_ser.embed import EmbedConfig, SpeechEncoderEmbedder  # noqa: E402
from ravdess_ser.ravdess import SAMPLE_RATE, speech_clip_names  # noqa: E402
from ravdess_ser.synthetic import synthesize_clip  # noqa: E402

CLIPS = speech_clip_names(5)[::15]
MODEL = REPO_ROOT / "models" / "wav2vec2-tiny-random"


def reference_frames(runtime: str = "auto") -> dict[str, np.ndarray]:
    embedder = SpeechEncoderEmbedder(EmbedConfig(str(MODEL), layer_summary=False, runtime=runtime))
    frames = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        for clip in CLIPS:
            write_audio(raw / clip.filename, synthesize_clip(clip, 0, 1.5), SAMPLE_RATE, "PCM_16")
        for path in resample_actor(raw, Path(tmp) / "16k", ResampleConfig(), progress=False):
            frames[path.stem] = embedder.embed(read_audio(path)[0])
    return frames


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--runtime", default="auto")
    args = parser.parse_args()
    np.savez(args.out, **reference_frames(args.runtime))
