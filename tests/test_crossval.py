"""Cross-validation by actor: the report aggregated from the runs, and what it refuses to aggregate."""

import csv
import json
import logging
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import REPO_ROOT
from test_stage_errors import _assert_one_line_error, _stage
from test_train import FAST, SUMMARY_LAYERS, _embedded_corpus
from ravdess_ser import training_pool
from ravdess_ser.crossval import aggregate_runs, cross_validate, recall_table, write_crossval_report
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.layer_sweep import sweep_layers
from ravdess_ser.metrics import classification_metrics, confusion_matrix
from ravdess_ser.ravdess import EMOTION_NAMES
from ravdess_ser.train import train_classifier
from ravdess_ser.train_config import TrainConfig
from ravdess_ser.training_pool import RunResult

FOLDS = {"1": (1, 2), "2": (3, 4), "3": (5, 6)}
PROTOCOL = TrainConfig(protocol="custom", folds=FOLDS).resolved_protocol


def _fold_result(name, test_actors, val_actors, train_actors, labels, predictions, seed=0) -> RunResult:
    """A fold's run as training reports it, for hand-picked test labels and predictions."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    metrics = {"test": classification_metrics(labels, predictions, EMOTION_NAMES),
               "splits": {"fold": name, "seed": seed, "validation": "speakers", "train_actors": list(train_actors),
                          "val_actors": list(val_actors), "test_actors": list(test_actors)}}
    actors = np.resize(test_actors, len(labels))
    rows = [{"clip_id": f"{name}-{i}", "actor": str(actor), "actual": EMOTION_NAMES[y], "predicted": EMOTION_NAMES[p]}
            for i, (actor, y, p) in enumerate(zip(actors, labels, predictions))]
    return RunResult(name, seed, metrics, rows, [])


def _three_folds(rng=np.random.default_rng(0)) -> list[RunResult]:
    results = []
    for index, name in enumerate(FOLDS):
        labels = np.repeat(np.arange(8), 10)
        predictions = np.where(rng.random(80) < 0.4 + 0.2 * index, labels, rng.integers(0, 8, size=80))
        names = list(FOLDS)
        val = names[(index + 1) % 3]
        train = [a for n in names if n not in (name, val) for a in FOLDS[n]]
        results.append(_fold_result(name, FOLDS[name], FOLDS[val], train, labels, predictions))
    return results


def test_the_report_gives_mean_and_sample_std_over_folds_and_the_summed_confusion():
    results = _three_folds()
    report = aggregate_runs(results, PROTOCOL)
    for key in ("accuracy", "unweighted_accuracy", "macro_f1"):
        values = [r.metrics["test"][key] for r in results]
        assert report[key] == {"mean": round(np.mean(values), 4), "std": round(np.std(values, ddof=1), 4)}
        assert [fold[key] for fold in report["per_fold"]] == [{"mean": v, "std": None} for v in values]
    assert report["folds"] == 3 and report["runs"] == 3 and report["test_clips"] == 240
    assert report["protocol"]["name"] == "custom" and report["protocol"]["overrides"] == "none"
    assert [fold["test_actors"] for fold in report["per_fold"]] == [[1, 2], [3, 4], [5, 6]]
    expected = sum(confusion_matrix([EMOTION_NAMES.index(p["actual"]) for p in r.predictions],
                                    [EMOTION_NAMES.index(p["predicted"]) for p in r.predictions], 8) for r in results)
    assert report["confusion_matrix"]["counts"] == expected.tolist()
    assert report["confusion_matrix"]["labels"] == list(EMOTION_NAMES)
    assert np.sum(report["confusion_matrix"]["counts"]) == 240
    accuracy_of_all_clips = np.trace(expected) / expected.sum()
    assert report["pooled"]["accuracy"] == round(accuracy_of_all_clips, 4)


def test_per_emotion_recall_is_averaged_over_folds():
    results = _three_folds()
    table = recall_table(results, EMOTION_NAMES)
    assert [row["emotion"] for row in table] == list(EMOTION_NAMES)
    for row in table:
        values = [r.metrics["test"]["recall"][row["emotion"]] for r in results]
        assert row["recall"] == round(np.mean(values), 4) and row["recall_std"] == round(np.std(values, ddof=1), 4)


@pytest.mark.parametrize("change, message", [
    (lambda r: r[1].metrics["splits"].update(test_actors=[2, 3, 4], train_actors=[1]),
     "actor 2 is tested in fold '1' and in fold '2'"),
    (lambda r: r[0].metrics["splits"].update(train_actors=[1, 5, 6]),
     r"fold '1': actor\(s\) \[1\] are in both its train and its test split"),
    (lambda r: r[2].metrics["splits"].update(val_actors=[1, 2, 5]),
     r"fold '3': actor\(s\) \[5\] are in both its val and its test split"),
    (lambda r: r[0].predictions[0].update(actor="4"), r"fold '1' has test predictions for actor\(s\) \[4\]"),
    (lambda r: r.clear(), "cross-validation has no runs"),
])
def test_leaking_or_overlapping_folds_are_not_aggregated(change, message):
    results = _three_folds()
    change(results)
    with pytest.raises(PipelineError, match=message):
        aggregate_runs(results, PROTOCOL)


def test_a_second_seed_may_test_the_same_actors_again():
    results = _three_folds()
    again = [RunResult(r.fold, 1, json.loads(json.dumps(r.metrics)), r.predictions, []) for r in results]
    report = aggregate_runs(results + again, PROTOCOL)
    assert report["runs"] == 6 and report["folds"] == 3 and report["test_clips"] == 240
    assert [fold["seeds"] for fold in report["per_fold"]] == [[0, 1]] * 3
    assert report["per_fold"][0]["accuracy"]["std"] == 0.0


def test_every_fold_trained_and_aggregated(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"folds": FOLDS, "fold": "1"})
    results = cross_validate(rows, tmp_path, config, processes=1)
    report = write_crossval_report(results, config.resolved_protocol, tmp_path / "crossval")
    assert report["test_clips"] == len(rows)  # every clip tested once, by the fold of its actor
    assert json.loads((tmp_path / "crossval" / "metrics.json").read_text()) == report
    with open(tmp_path / "crossval" / "test_predictions.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert sorted(p["clip_id"] for p in predictions) == sorted(row.clip_id for row in rows)
    assert {(p["fold"], p["actor"]) for p in predictions} == {(f, str(a)) for f, actors in FOLDS.items() for a in actors}
    assert report["unweighted_accuracy"]["mean"] > 0.8
    with open(tmp_path / "crossval" / "runs.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert [(run["fold"], run["test_actors"]) for run in runs] == [("1", "1 2"), ("2", "3 4"), ("3", "5 6")]
    # A run of the pool is the run the train stage would make of that fold.
    alone = train_classifier(rows, tmp_path, replace(config, fold="2"), progress=False)
    assert results[1].metrics == alone.metrics and results[1].history == alone.history


@pytest.mark.slow
def test_the_layer_sweep_cross_validates_every_layer_and_finds_the_informative_one(tmp_path):
    from test_train import INFORMATIVE_LAYER, SUMMARY_LAYERS

    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"folds": FOLDS, "fold": "1", "max_epochs": 40, "patience": 40, "learning_rate": 3e-3})
    table, metrics = sweep_layers(rows, tmp_path, config)
    assert [row["layer"] for row in table] == list(range(SUMMARY_LAYERS))
    assert metrics["best_layer"] == INFORMATIVE_LAYER and metrics["layers"] == SUMMARY_LAYERS
    assert max(table, key=lambda row: row["weighted_sum_weight"])["layer"] == INFORMATIVE_LAYER
    assert pytest.approx(sum(row["weighted_sum_weight"] for row in table), abs=1e-3) == 1.0
    assert metrics["weighted_sum"]["unweighted_accuracy"]["mean"] > 0.8
    # The sweep's weighted row is the cross-validation of train.features=layer_summary, layer=weighted.
    runs = [train_classifier(rows, tmp_path, replace(config, features="layer_summary", layer="weighted", fold=fold),
                             progress=False) for fold in FOLDS]
    assert metrics["weighted_sum"]["unweighted_accuracy"]["mean"] == round(
        np.mean([run.metrics["test"]["unweighted_accuracy"] for run in runs]), 4)


@pytest.mark.slow
def test_the_layer_sweep_gives_the_same_results_in_one_process_or_a_pool_or_both(tmp_path, monkeypatch, caplog):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    config = TrainConfig(**FAST | {"folds": FOLDS, "fold": "1"})
    alone = sweep_layers(rows, tmp_path, config, processes=1)
    assert sweep_layers(rows, tmp_path, config, processes=2) == alone
    # By default the first trainings run here, timed, and the rest where that is sooner: here, in a pool.
    monkeypatch.setattr(training_pool, "pool_pays_off", lambda *figures: True)
    with caplog.at_level(logging.INFO, logger="ravdess_ser.training_pool"):
        assert sweep_layers(rows, tmp_path, config) == alone
    assert f"{len(FOLDS) * (SUMMARY_LAYERS + 1) - training_pool.TIMED_TRAININGS} more trainings" in caplog.text


def test_a_pool_pays_off_when_the_trainings_outlast_a_processs_start_up():
    # A test-sized corpus: 16 trainings of 0.02 s, against 2 s to start a process and train its first model.
    assert not training_pool.pool_pays_off(1.5, 0.5, 0.02, 16, 2)
    # RAVDESS-sized: 54 of 0.5 s.
    assert training_pool.pool_pays_off(1.5, 2.0, 0.5, 54, 2)


def test_the_number_of_training_processes_can_be_set_and_a_bad_one_is_one_line(monkeypatch):
    config = TrainConfig(**FAST | {"folds": FOLDS, "fold": "1"})
    monkeypatch.setenv(training_pool.PROCESSES_ENV, "3")
    assert training_pool.pool_processes(config, 10) == 3 and training_pool.pool_processes(config, 2) == 2
    for bad in ("0", "two", "-1", "²"):
        monkeypatch.setenv(training_pool.PROCESSES_ENV, bad)
        with pytest.raises(PipelineError, match=rf"^RAVDESS_SER_TRAINING_PROCESSES='{bad}': must be a whole number"):
            training_pool.pool_processes(config, 10)


@pytest.mark.slow
def test_a_bad_summary_read_in_a_pool_process_is_reported_with_its_path(tmp_path):
    rows = _embedded_corpus(tmp_path, range(1, 7))
    broken = layer_summary_path(tmp_path / rows[-1].embedding_path)
    broken.write_bytes(b"not an array")
    with pytest.raises(PipelineError) as raised:
        sweep_layers(rows, tmp_path, TrainConfig(**FAST | {"folds": FOLDS, "fold": "1"}), processes=2)
    assert raised.value.path == broken and "cannot read embedding" in raised.value.reason
    assert str(raised.value).startswith(f"{broken}: cannot read embedding")


# ----------------------------------------------------------------------------- the stages on bad input


@pytest.mark.slow
def test_the_crossval_stage_names_a_protocol_whose_actors_are_missing(tmp_path):
    from ravdess_ser.manifest import write_manifest

    write_manifest(_embedded_corpus(tmp_path, range(1, 7)), tmp_path / "manifest.csv")
    result = _stage(tmp_path, "crossval.py", "manifest.csv", "out", params={"train": {"protocol": "emobox"}})
    _assert_one_line_error(result, "fold '1' tests on actor(s) [11, 20, 21], which have no usable clips")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_numeric_fold_names_are_refused_before_dvc_silently_drops_their_stages(tmp_path):
    result = _stage(tmp_path, "train.py", "manifest.csv", "m.safetensors", "train",
                    params={"train": {"protocol": "custom", "folds": {1: [1], 2: [2]}, "fold": 1}})
    _assert_one_line_error(result, "fold name 1 must be a string; quote it ('1': [...])")


@pytest.mark.parametrize("script", ["crossval.py", "layer_sweep.py"])
def test_the_new_stages_explain_themselves(tmp_path, script):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", f"stages.{script.removesuffix('.py')}", "--help"],
                            cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    assert result.returncode == 0 and "--protocol" in result.stdout and "params.yaml" in result.stdout
