"""The pipeline's DVC behaviour, with real `dvc` in a temporary git repo on a tiny corpus.

The scenarios run in order on one project, each committing its result, like a
researcher's history: fresh repro, no-op repro, a forced rerun that changes no
byte, unrelated edits, experiments on train params, a change of embedding
layer, and one changed raw clip.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import soundfile as sf
import yaml

from dvc_project import (REPO_ROOT, TRAINING_STAGES, copy_project, dvc, environment, git, stages_restored, stages_run,
                         update_params)
from plot_pages import external_scripts, plot_specs, remote_resources, render_svgs
from ravdess_ser.ravdess import EMOTION_NAMES

pytestmark = pytest.mark.dvc  # builds DVC projects (minutes): not in `make test-fast`

ACTORS = ["01", "02", "03"]
ALL_STAGES = {"download", "label-manifest"} | TRAINING_STAGES | {f"{s}@{a}" for s in ("resample", "embed") for a in ACTORS}


@pytest.fixture(scope="module")
def project(reproduced_project, tmp_path_factory):
    """The session's freshly reproduced project (conftest.py), copied: the scenarios below change it."""
    return copy_project(reproduced_project.path, tmp_path_factory.mktemp("pipeline") / "project")


def _commit(project, message):
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message, check=False)


def _reset(project):
    """Back to the last commit: params, dvc.lock, metrics from git; cached outputs from the DVC cache."""
    git(project, "checkout", "--", ".")
    dvc(project, "checkout", "--force")


def test_fresh_repro_runs_every_stage_and_a_second_runs_none(project, reproduced_project):
    assert stages_run(reproduced_project.repro_stdout) == ALL_STAGES
    metrics = json.loads((project / "experiments/train/metrics.json").read_text())
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
    assert git(project, "status", "--porcelain").stdout == ""  # the fixture committed the repro

    second = dvc(project, "repro")
    assert stages_run(second.stdout) == set()
    assert "Data and pipelines are up to date" in second.stdout


def test_every_stage_imported_only_listed_code_and_read_exactly_its_listed_params(project, reproduced_project,
                                                                                  tmp_path):
    definitions = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    records = {path.stem: json.loads(path.read_text()) for path in reproduced_project.audit.glob("*.json")}
    assert set(records) == ALL_STAGES
    # One actor's per-actor stages again, in-process, so that their records hold their jobs' imports too; the
    # same bytes come out as from the worker.
    in_process = f"resample@{ACTORS[0]}", f"embed@{ACTORS[0]}"
    result = dvc(project, "repro", "--force", "--single-item", *in_process,
                 env={"RAVDESS_SER_AUDIT_DIR": str(tmp_path), "RAVDESS_SER_WORKER": "0"})
    assert stages_run(result.stdout) == set(in_process)
    assert git(project, "status", "--porcelain").stdout == ""
    records |= {stage: json.loads((tmp_path / f"{stage}.json").read_text()) for stage in in_process}
    assert "ravdess_ser/cpu_runtimes.py" in records[in_process[1]]["modules"]  # a module the job imports lazily
    params = yaml.safe_load((project / "params.yaml").read_text())
    for stage, record in records.items():
        definition = definitions[stage.split("@")[0]]
        body = definition.get("do", definition)
        deps = {dep.replace("${item}", stage.partition("@")[2]).replace("${key}", stage.partition("@")[2])
                for dep in body["deps"]}
        assert set(record["modules"]) - deps == set(), f"{stage} ran code dvc.yaml does not list"
        # A whole section listed (a stage that reads all of it) stands for each of its keys.
        listed = {key for param in body["params"]
                  for key in ([param] if "." in param else [f"{param}.{name}" for name in params[param]])}
        assert set(record["params"]) == listed, stage


def test_a_forced_rerun_of_the_training_stages_changes_no_byte(project):
    outputs = ["experiments/train/metrics.json", "experiments/model/classifier.safetensors",
               "experiments/crossval/metrics.json", "experiments/layer_sweep/layers.csv"]
    before = {path: (project / path).read_bytes() for path in outputs}
    for stage in ("train", "crossval", "layer-sweep"):
        assert stages_run(dvc(project, "repro", "--force", "--single-item", stage).stdout) == {stage}
    assert {path: (project / path).read_bytes() for path in outputs} == before
    assert git(project, "status", "--porcelain").stdout == ""  # dvc.lock too: same hashes


def test_metrics_and_plots_commands_work(project):
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)[""]["data"]
    assert "unweighted_accuracy" in shown["experiments/train/metrics.json"]["data"]["test"]
    assert {"mean", "std"} == set(shown["experiments/crossval/metrics.json"]["data"]["unweighted_accuracy"])
    plots = dvc(project, "plots", "show", "--json").stdout
    for title in ("Test confusion matrix", "Training curves", "experiments/train/plots/metrics/val/unweighted_accuracy.tsv",
                  "Cross-validated confusion matrix, normalised",
                  "Cross-validated recall per emotion", "a line per fold (and seed)",
                  "Layer sweep, cross-validated unweighted accuracy", "learned weight of each layer"):
        assert title in plots
    assert '"type": "error"' not in plots and '"error"' not in plots


def _text_marks(svg: str) -> list[dict[str, str]]:
    """The text marks of a rendered plot (not its axes or legends), each as its accessible label's fields."""
    marks = []
    for label, text in re.findall(r'<text aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="text mark"'
                                  r'[^>]*>([^<]*)</text>', svg):
        fields = dict(part.split(": ", 1) for part in html.unescape(label).split("; "))
        marks.append(fields | {"text": html.unescape(text)})
    return marks


def _axes(svg: str) -> dict[str, list[str]]:
    """Each drawn axis's tick labels, by its accessible name ("X-axis titled 'epoch'", ...)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<g class="mark-group role-axis"[^>]*?(?:aria-label="([^"]*)")?>', svg)]
    axes = {}
    for (start, label), (end, _) in zip(starts, starts[1:] + [(len(svg), None)]):
        if label:
            name = html.unescape(label).split(" for a ")[0]
            group = re.search(r'<g class="mark-text role-axis-label".*?</g>', svg[start:end], re.DOTALL)
            axes[name] = [html.unescape(t) for t in re.findall(r">([^<>]+)</text>", group.group(0))] if group else []
    return axes


def test_make_pipelines_plots_command_works_in_a_fresh_clone(project):
    # The clone has no experiments/plots/ (nothing in git under it): the command must not need it.
    command = re.search(r"dvc plots show --out (\S+)", (REPO_ROOT / "Makefile").read_text())
    dvc(project, "plots", "show", "--out", command.group(1))
    assert (project / command.group(1) / "index.html").is_file()


def test_the_plots_page_draws_every_plot_offline(project, tmp_path):
    # .dvc/config names the page template: plain `dvc plots show` writes the offline page, as --html-template does.
    dvc(project, "plots", "show", "--out", str(tmp_path / "default"))
    dvc(project, "plots", "show", "--html-template", ".dvc/plots/page.html", "--out", str(tmp_path / "explicit"))
    page = (tmp_path / "default" / "index.html").read_text()
    assert page == (tmp_path / "explicit" / "index.html").read_text()
    assert external_scripts(page) == 0, "the page loads a script from elsewhere"
    assert remote_resources(page) == []

    specs = plot_specs(page)
    titles = {spec["title"]["text"] for spec in specs.values()}
    assert {"Training curves of the train stage (one fold)", "Cross-validated recall per emotion",
            "Cross-validated confusion matrix, clips summed over folds",
            "Test confusion matrix, clips (the train stage's fold)",
            "Layer sweep, cross-validated unweighted accuracy of each layer's mean+std",
            "Validation unweighted accuracy by epoch, a line per fold (and seed)"} <= titles
    # 3 of dvc.yaml's plots section; of train, its test confusion matrix and its 4 DVCLive curves; 3 of crossval;
    # 1 of layer-sweep.
    assert len(specs) == 12
    curves = specs["experiments_crossval_training_curves_csv"]
    assert {row["fold"] for row in curves["data"]["values"]} == {"1", "2", "3"}
    assert curves["layer"][0]["encoding"]["color"]["field"] == "fold"
    with open(project / "experiments/crossval/test_predictions.csv") as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 180
    assert len(specs["experiments_crossval_test_predictions_csv"]["data"]["values"]) == 180

    if shutil.which("node") is None:
        pytest.skip("node is not installed: the plots were not drawn")
    drawn = dict(zip(specs, render_svgs(list(specs.values()))))
    for name, result in drawn.items():
        assert "error" not in result, f"{name}: {result['error']}"
        assert not [w for w in result["warnings"] if not w.startswith("Dropping {} from channel")], name
        assert html.escape(specs[name]["title"]["text"], quote=False) in result["svg"]

    # The confusion matrix of counts: every cell drawn with its number, emotions in RAVDESS order on both axes.
    counts = collections.Counter((row["actual"], row["predicted"]) for row in predictions)
    svg = drawn["Cross-validated_confusion_matrix__clips_summed_over_folds"]["svg"]
    cells = {(mark["actual emotion"], mark["predicted emotion"]): int(mark["text"]) for mark in _text_marks(svg)}
    assert len(cells) == 64 and cells == {(a, p): counts[a, p] for a in EMOTION_NAMES for p in EMOTION_NAMES}
    assert _axes(svg) == {"X-axis titled 'predicted emotion'": list(EMOTION_NAMES),
                          "Y-axis titled 'actual emotion'": list(EMOTION_NAMES)}
    # The normalised one: each cell its share of the actual emotion's clips.
    svg = drawn["experiments_crossval_test_predictions_csv"]["svg"]
    rates = {(mark["actual emotion"], mark["predicted emotion"]): float(mark["text"]) for mark in _text_marks(svg)}
    per_emotion = collections.Counter(row["actual"] for row in predictions)
    assert set(rates) == {(a, p) for a in EMOTION_NAMES for p in EMOTION_NAMES}
    assert all(abs(rates[a, p] - counts[a, p] / per_emotion[a]) <= 0.005 + 1e-9 for a, p in rates)  # 2 decimals
    # Recall bars in RAVDESS order; layer and epoch axes in whole numbers; named loss axes.
    assert _axes(drawn["experiments_crossval_recall_csv"]["svg"])["Y-axis titled 'emotion'"] == list(EMOTION_NAMES)
    layers = _axes(drawn["experiments_layer_sweep_layers_csv"]["svg"])["X-axis titled 'layer (0 = the transformer's input)'"]
    assert layers == ["0", "1", "2", "3", "4"]
    loss = _axes(drawn["Training_curves_of_the_train_stage__one_fold_"]["svg"])
    assert set(loss) == {"X-axis titled 'epoch'", "Y-axis titled 'cross-entropy loss'"}
    epochs = loss["X-axis titled 'epoch'"]
    assert len(epochs) >= 2 and all(tick.isdigit() for tick in epochs), epochs


def test_unrelated_edits_rerun_nothing(project):
    (project / "NOTES.md").write_text("an unrelated note\n")
    with open(project / "ravdess_ser/report.py", "a") as handle:
        handle.write("\n# a comment in a module no stage imports\n")
    assert json.loads(dvc(project, "status", "--json").stdout) == {}
    _commit(project, "unrelated edits")


@pytest.mark.parametrize("module, importers", [
    ("ravdess_ser/train.py", TRAINING_STAGES),
    ("ravdess_ser/crossval.py", {"crossval", "layer-sweep"}),
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


def test_a_misspelled_new_key_stops_the_experiment_in_one_line(project):
    # DVC tracks the whole section for the stages that read all of it (test_stage_deps: download, resample, embed,
    # train): a key added to it reruns them, and they refuse it, instead of an experiment that "succeeds" with the
    # setting silently unused.
    result = dvc(project, "exp", "run", "-S", "+train.hiden_size=64", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "error: params.yaml: 'train' has unknown keys: hiden_size" in output, output
    assert stages_run(result.stdout) == {"train"}
    _reset(project)


def test_make_compare_fits_120_columns_with_the_crossval_figures_and_the_params_that_differ(project):
    # The three experiments above, on this commit.
    result = subprocess.run([sys.executable, "-m", "ravdess_ser.compare"], cwd=project, capture_output=True, text=True,
                            env=environment() | {"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 120, result.stdout
    assert lines[0].split()[:7] == ["Experiment", "CV", "UA", "CV", "accuracy", "CV", "macro"]
    for key, value in (("train.hidden_size", "48"), ("train.fold", "3"), ("train.features", "layer_summary"),
                       ("train.layer", "2")):
        assert key in result.stdout and value in result.stdout
    assert "train.dropout" not in result.stdout and "data.source" not in result.stdout  # the same in every row
    # Each experiment's row has its figures as `dvc exp show` has them.
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    experiments = [exp["revs"][0] for entry in shown for exp in entry.get("experiments") or []]
    assert len(experiments) == 3
    for experiment in experiments:
        crossval = experiment["data"]["metrics"]["experiments/crossval/metrics.json"]["data"]
        row = next(line for line in lines if f"{experiment['rev'][:7]} [{experiment['name']}]" in line)
        cells = [f"{crossval[key]['mean']:.3f} ± {crossval[key]['std']:.3f}"
                 for key in ("unweighted_accuracy", "accuracy", "macro_f1")]
        assert "  ".join(cells) in row


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
