"""The protocols through real `dvc exp run`, on a synthetic corpus of all 24 actors with song clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dvc_project import dvc, git, make_project, repro_in_one_process, stages_run
from test_protocols import EMOBOX_TEST_SETS

pytestmark = pytest.mark.slow

# Every actor (the protocols name them all), with song; short clips and few epochs keep it to minutes.
PARAMS = {
    "data": {"subsets": ["speech", "song"], "synthetic_clip_seconds": 0.4},
    "embed": {"layer_summary": False},
    "train": {"max_epochs": 4, "patience": 2, "hidden_size": 32},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("protocols") / "project", PARAMS)
    # The embeddings once, for both experiments; layer-sweep needs layer summaries and is no target here. The 49
    # stages' commands in one process (test_pipeline_dvc runs them under `dvc repro`): the subject is crossval.
    ran = repro_in_one_process(project, "label-manifest")
    assert len(ran) == 1 + 24 + 24 + 1  # download, resample and embed per actor, label-manifest
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "embeddings")
    return project


def _report(project: Path) -> tuple[dict, list[dict]]:
    with open(project / "experiments/crossval/runs.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    return json.loads((project / "experiments/crossval/metrics.json").read_text()), runs


def test_emobox_by_name_runs_its_six_folds_on_speech_only(project):
    assert stages_run(dvc(project, "exp", "run", "-S", "train.protocol=emobox", "crossval").stdout) == {"crossval"}
    metrics, runs = _report(project)
    assert metrics["protocol"]["name"] == "emobox" and metrics["protocol"]["subsets"] == "speech"
    assert [set(fold["test_actors"]) for fold in metrics["per_fold"]] == EMOBOX_TEST_SETS
    assert [{int(a) for a in run["test_actors"].split()} for run in runs] == EMOBOX_TEST_SETS
    assert metrics["runs"] == 6 and metrics["test_clips"] == 24 * 60  # each speech clip tested once, no song
    with open(project / "experiments/crossval/test_predictions.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    tested = {(p["fold"], int(p["actor"])) for p in predictions}
    assert tested == {(str(i + 1), a) for i, actors in enumerate(EMOBOX_TEST_SETS) for a in actors}
    assert all(p["clip_id"].startswith("03-01-") for p in predictions)


def test_pepino2021_by_name_runs_five_seeds_of_seven_classes_with_song(project):
    assert stages_run(dvc(project, "exp", "run", "-S", "train.protocol=pepino2021", "crossval").stdout) == {"crossval"}
    metrics, runs = _report(project)
    assert metrics["protocol"] | {"overrides": "-"} == {
        "name": "pepino2021", "classes": 7, "seeds": 5, "validation": "speakers", "normalisation": "global",
        "transductive": False, "subsets": "speech+song", "overrides": "-"}
    assert [(run["fold"], run["seed"], run["test_actors"]) for run in runs] == [("1", str(s), "23 24") for s in range(5)]
    assert metrics["test_clips"] == 2 * (60 + 44) and "calm" not in metrics["confusion_matrix"]["labels"]
    assert len(metrics["confusion_matrix"]["labels"]) == 7
