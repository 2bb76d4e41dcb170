"""data2vec-audio and the Whisper encoder through the real pipeline: `dvc repro` of a small synthetic project.

Each project is a copy of the session's reproduced tiny one (conftest.py; tests/dvc_project.py: 3 actors, short
clips), with the upstream's miniature random model written into its models/ folder (a dependency of every embed
stage) and named by embed.model: the repro embeds anew and trains on it, and reuses the corpus and its resampling,
which do not depend on the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from functools import partial

from dvc_project import TINY_PARAMS, copy_project, dvc, git, stages_run, update_params
from ravdess_ser.audio import read_skip_report
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.models import save_tiny_data2vec_audio, save_tiny_whisper

pytestmark = [pytest.mark.dvc, pytest.mark.slow]

ACTORS = TINY_PARAMS["data"]["actors"]


def _frames(upstream: str, samples: int) -> int:
    if upstream == "whisper":
        return -(-samples // 320)  # the clip's own frames of its window (test_upstreams.py derives it)
    return (samples - 400) // 320 + 1  # wav2vec2's CNN: 25 ms receptive field, 20 ms stride


@pytest.mark.parametrize("upstream, save, layer", [
    ("data2vec-audio", save_tiny_data2vec_audio, -1),
    # A block below the top: the frames of layer 2, the summary of all. A 2 s window instead of Whisper's 30 s (the
    # tiny project's clips are about 0.6 s): the same code, a fifteenth of the work.
    ("whisper", partial(save_tiny_whisper, window_seconds=2), 2),
])
def test_dvc_repro_runs_the_whole_pipeline_on_the_upstream(reproduced_project, tmp_path, upstream, save, layer):
    project = copy_project(reproduced_project.path, tmp_path / "project")
    update_params(project, {"embed": {"model": f"models/{upstream}-tiny-random", "layer": layer}})
    save(project / "models" / f"{upstream}-tiny-random")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"the miniature {upstream}")

    result = dvc(project, "repro")
    downstream = {f"embed@{actor}" for actor in ACTORS} | {"label-manifest", "train", "crossval", "layer-sweep"}
    assert stages_run(result.stdout) == downstream  # everything the model feeds; the corpus and resampling do not
    for actor in ACTORS:
        audio = project / f"data/audio_16k/Actor_{actor}"
        embeddings = project / f"experiments/audio_embeddings/Actor_{actor}"
        clips = sorted(audio.glob("*.wav"))
        assert len(clips) == 60 and read_skip_report(embeddings) == []
        for clip in clips:
            frames = np.load(embeddings / f"{clip.stem}.npy", mmap_mode="r")
            assert frames.shape == (_frames(upstream, sf.info(clip).frames), 64), clip.name
            assert np.load(layer_summary_path(embeddings / f"{clip.stem}.npy")).shape == (5, 2, 64)
    sweep = json.loads((project / "experiments/layer_sweep/metrics.json").read_text())
    assert sweep["layers"] == 5  # the transformer's input and the 4 blocks
    crossval = json.loads((project / "experiments/crossval/metrics.json").read_text())
    assert crossval["test_clips"] == 180  # every clip of the 3 actors tested once
    assert stages_run(dvc(project, "repro").stdout) == set()
