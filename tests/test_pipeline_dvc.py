"""The pipeline's DVC behaviour, with real `dvc` in a temporary git repo on a tiny corpus.

The scenarios run in order on one project, each committing its result, like a
researcher's history: fresh repro, no-op repro, unrelated edits, an experiment
on train, a change of embedding layer, and one changed raw clip.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import soundfile as sf

from dvc_project import dvc, git, make_project, stages_run, update_params

ACTORS = ["01", "02", "03"]
ALL_STAGES = {"download", "label-manifest", "train"} | {f"{s}@{a}" for s in ("resample", "embed") for a in ACTORS}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("pipeline") / "project")


def _commit(project, message):
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message, check=False)


def _reset(project):
    """Back to the last commit: params, dvc.lock, metrics from git; cached outputs from the DVC cache."""
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")


def test_fresh_repro_runs_every_stage_and_a_second_runs_none(project):
    first = dvc(project, "repro")
    assert stages_run(first.stdout) == ALL_STAGES
    metrics = json.loads((project / "experiments/metrics.json").read_text())
    assert {"accuracy", "unweighted_accuracy", "macro_f1", "recall"} <= set(metrics["test"])
    for actor in ACTORS:
        embeddings = sorted((project / f"experiments/audio_embeddings/Actor_{actor}").glob("*.npy"))
        assert len(embeddings) == 60
    _commit(project, "repro")

    second = dvc(project, "repro")
    assert stages_run(second.stdout) == set()
    assert "Data and pipelines are up to date" in second.stdout


def test_metrics_and_plots_commands_work(project):
    shown = dvc(project, "metrics", "show", "--json")
    assert "unweighted_accuracy" in shown.stdout
    plots = dvc(project, "plots", "show", "--json")
    assert "Test confusion matrix" in plots.stdout and "Training curves" in plots.stdout


def test_unrelated_edits_rerun_nothing(project):
    (project / "NOTES.md").write_text("an unrelated note\n")
    with open(project / "ravdess_ser/report.py", "a") as handle:
        handle.write("\n# a comment in a module no stage imports\n")
    assert json.loads(dvc(project, "status", "--json").stdout) == {}
    _commit(project, "unrelated edits")


def test_code_edit_reruns_only_the_stage_that_imports_it(project):
    with open(project / "ravdess_ser/train.py", "a") as handle:
        handle.write("\n# a comment\n")
    assert set(json.loads(dvc(project, "status", "--json").stdout)) == {"train"}
    git(project, "checkout", "ravdess_ser/train.py")


def test_experiment_on_a_train_param_reruns_only_train(project):
    result = dvc(project, "exp", "run", "-S", "train.hidden_size=48")
    assert stages_run(result.stdout) == {"train"}
    assert "hidden_size" in dvc(project, "exp", "show", "--json").stdout
    _reset(project)


def test_changing_the_embedding_layer_reruns_embed_and_downstream_but_not_resample(project):
    update_params(project, {"embed": {"layer": 2}})
    result = dvc(project, "repro")
    assert stages_run(result.stdout) == {f"embed@{a}" for a in ACTORS} | {"label-manifest", "train"}
    _reset(project)


def test_one_changed_raw_clip_reruns_only_that_actors_stages(project, tmp_path):
    # A local copy of the corpus as a RAVDESS zip, identical to the synthetic data.
    archive = tmp_path / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for wav in sorted((project / "data/raw").rglob("*.wav")):
            zf.write(wav, wav.relative_to(project / "data/raw").as_posix())
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    update_params(project, {"data": {"source": "zip", "zip_path": str(archive), "md5": md5}})
    switched = dvc(project, "repro")
    assert stages_run(switched.stdout) == {"download"}  # same audio: every downstream stage is unchanged
    _commit(project, "corpus from a local zip")

    # The same zip with one of Actor_02's clips edited.
    changed = tmp_path / "corpus-edited.zip"
    edited_name = "Actor_02/03-01-05-01-01-01-02.wav"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(changed, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == edited_name:
                samples, rate = sf.read(project / "data/raw" / edited_name)
                edited = tmp_path / "edited.wav"
                sf.write(edited, samples * 0.5, rate, subtype="PCM_16")
                data = edited.read_bytes()
            target.writestr(item, data)
    md5 = hashlib.md5(changed.read_bytes()).hexdigest()
    update_params(project, {"data": {"zip_path": str(changed), "md5": md5}})
    result = dvc(project, "repro")
    assert stages_run(result.stdout) == {"download", "resample@02", "embed@02", "label-manifest", "train"}
