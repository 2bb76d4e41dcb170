"""The pipeline's DVC behaviour, with real `dvc` in a temporary git repo on a tiny corpus.

The scenarios run in order on one project, each committing its result, like a
researcher's history: fresh repro, no-op repro, a forced rerun that changes no
byte, unrelated edits, experiments on train params, a change of embedding
layer, and one changed raw clip.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import soundfile as sf
import yaml

from dvc_project import TRAINING_STAGES, dvc, git, make_project, stages_restored, stages_run, update_params

ACTORS = ["01", "02", "03"]
ALL_STAGES = {"download", "label-manifest"} | TRAINING_STAGES | {f"{s}@{a}" for s in ("resample", "embed") for a in ACTORS}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("pipeline") / "project")


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """Where the first repro's stages record what they imported and read (in-process, so the jobs count too)."""
    return tmp_path_factory.mktemp("audit")


def _commit(project, message):
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message, check=False)


def _reset(project):
    """Back to the last commit: params, dvc.lock, metrics from git; cached outputs from the DVC cache."""
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")


def test_fresh_repro_runs_every_stage_and_a_second_runs_none(project, audit):
    first = dvc(project, "repro", env={"RAVDESS_SER_AUDIT_DIR": str(audit), "RAVDESS_SER_WORKER": "0"})
    assert stages_run(first.stdout) == ALL_STAGES
    metrics = json.loads((project / "experiments/metrics.json").read_text())
    assert {"accuracy", "unweighted_accuracy", "macro_f1", "recall"} <= set(metrics["test"])
    for actor in ACTORS:
        embeddings = sorted((project / f"experiments/audio_embeddings/Actor_{actor}").glob("*.npy"))
        summaries = sorted((project / f"experiments/audio_embeddings/Actor_{actor}/layer_summary").glob("*.npy"))
        assert len(embeddings) == len(summaries) == 60
    crossval = json.loads((project / "experiments/crossval/metrics.json").read_text())
    assert crossval["folds"] == 3 and crossval["test_clips"] == 180  # every clip tested once
    assert {"mean", "std"} == set(crossval["unweighted_accuracy"])
    sweep = json.loads((project / "experiments/layer_sweep/metrics.json").read_text())
    assert sweep["layers"] == 5  # the miniature model's transformer input and its 4 blocks
    _commit(project, "repro")

    second = dvc(project, "repro")
    assert stages_run(second.stdout) == set()
    assert "Data and pipelines are up to date" in second.stdout


def test_every_stage_imported_only_listed_code_and_read_exactly_its_listed_params(project, audit):
    definitions = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    records = {path.stem: json.loads(path.read_text()) for path in audit.glob("*.json")}
    assert set(records) == ALL_STAGES
    for stage, record in records.items():
        definition = definitions[stage.split("@")[0]]
        body = definition.get("do", definition)
        deps = {dep.replace("${item}", stage.partition("@")[2]).replace("${key}", stage.partition("@")[2])
                for dep in body["deps"]}
        assert set(record["modules"]) - deps == set(), f"{stage} ran code dvc.yaml does not list"
        assert set(record["params"]) == set(body["params"]), stage


def test_a_forced_rerun_of_the_training_stages_changes_no_byte(project):
    outputs = ["experiments/metrics.json", "experiments/model/classifier.safetensors",
               "experiments/crossval/metrics.json", "experiments/layer_sweep/layers.csv"]
    before = {path: (project / path).read_bytes() for path in outputs}
    for stage in ("train", "train-fold@2", "crossval", "layer-sweep"):
        assert stages_run(dvc(project, "repro", "--force", "--single-item", stage).stdout) == {stage}
    assert {path: (project / path).read_bytes() for path in outputs} == before
    assert git(project, "status", "--porcelain").stdout == ""  # dvc.lock too: same hashes


def test_metrics_and_plots_commands_work(project):
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)[""]["data"]
    assert "unweighted_accuracy" in shown["experiments/metrics.json"]["data"]["test"]
    assert {"mean", "std"} == set(shown["experiments/crossval/metrics.json"]["data"]["unweighted_accuracy"])
    plots = dvc(project, "plots", "show", "--json").stdout
    for title in ("Test confusion matrix", "Training curves", "Validation unweighted accuracy by epoch (the train stage",
                  "Cross-validated confusion matrix, normalised",
                  "Cross-validated recall per emotion", "Fold 2, validation unweighted accuracy",
                  "Layer sweep, cross-validated unweighted accuracy", "learned weight of each layer"):
        assert title in plots
    assert '"type": "error"' not in plots and '"error"' not in plots


def test_unrelated_edits_rerun_nothing(project):
    (project / "NOTES.md").write_text("an unrelated note\n")
    with open(project / "ravdess_ser/report.py", "a") as handle:
        handle.write("\n# a comment in a module no stage imports\n")
    assert json.loads(dvc(project, "status", "--json").stdout) == {}
    _commit(project, "unrelated edits")


@pytest.mark.parametrize("module, importers", [
    ("ravdess_ser/train.py", TRAINING_STAGES - {"crossval"}),
    ("ravdess_ser/crossval.py", TRAINING_STAGES),
    ("ravdess_ser/layer_sweep.py", {"layer-sweep"}),
])
def test_code_edit_reruns_only_the_stages_that_import_it(project, module, importers):
    with open(project / module, "a") as handle:
        handle.write("\n# a comment\n")
    assert set(json.loads(dvc(project, "status", "--json").stdout)) == importers
    git(project, "checkout", module)


@pytest.mark.parametrize("change, rerun", [
    # A classifier setting: every training stage, and the report of the folds.
    (["train.hidden_size=48"], TRAINING_STAGES),
    # The train stage's own fold: nothing else reads it.
    (["train.fold=3"], {"train"}),
    # The classifier's features: the sweep sets them itself.
    (["train.features=layer_summary", "train.layer=2"], TRAINING_STAGES - {"layer-sweep"}),
])
def test_experiment_on_a_train_param_reruns_only_the_stages_that_read_it(project, change, rerun):
    result = dvc(project, "exp", "run", *[arg for setting in change for arg in ("-S", setting)])
    assert stages_run(result.stdout) == rerun
    assert change[0].split("=")[0].split(".")[1] in dvc(project, "exp", "show", "--json").stdout
    _reset(project)


def test_going_back_to_params_already_run_restores_every_stage_from_the_run_cache(project):
    update_params(project, {"train": {"dropout": 0.5}})
    assert stages_run(dvc(project, "repro").stdout) == TRAINING_STAGES
    git(project, "checkout", "--", "params.yaml")
    result = dvc(project, "repro")
    assert stages_run(result.stdout) == set()
    assert stages_restored(result.stdout) == TRAINING_STAGES  # train too: its plots are plots, not uncached outs
    _reset(project)


def test_changing_the_embedding_layer_reruns_embed_and_downstream_but_not_resample(project):
    update_params(project, {"embed": {"layer": 2}})
    result = dvc(project, "repro")
    assert stages_run(result.stdout) == {f"embed@{a}" for a in ACTORS} | {"label-manifest"} | TRAINING_STAGES
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
    assert stages_run(result.stdout) == {"download", "resample@02", "embed@02", "label-manifest"} | TRAINING_STAGES
