"""Speaker-independent k-fold cross-validation by actor: the folds, and one report from all of them.

The folds are a param, ``{name: actors}``. The run of fold ``k`` tests on
fold ``k``'s actors, stops early on the next fold's (cyclically) and trains on
every other actor. An actor may be in one fold only, so no actor is ever in
two splits of a run, and across the runs every clip of the folds' actors is
tested exactly once.

The report aggregates the runs' test results: the mean and sample standard
deviation over folds of accuracy, unweighted accuracy (mean per-class recall)
and macro F1, the same three metrics of all folds' test clips pooled, the
confusion matrix summed over folds, and per-emotion recall. This module reads
the runs' files only; it needs no torch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ravdess_ser.atomic import write_csv_atomic, write_text_atomic
from ravdess_ser.errors import PipelineError
from ravdess_ser.metrics import confusion_matrix, metrics_from_confusion
from ravdess_ser.ravdess import EMOTION_NAMES

# Four groups of six actors, each three male (odd) and three female (even): every fold is gender-balanced.
DEFAULT_FOLDS = {"1": (1, 2, 3, 4, 5, 6), "2": (7, 8, 9, 10, 11, 12),
                 "3": (13, 14, 15, 16, 17, 18), "4": (19, 20, 21, 22, 23, 24)}
FOLDS_HELP = ("speaker-independent folds, name -> actors (an actor in one fold at most); the run of a fold tests "
              "on its actors, validates on the next fold's (cyclically) and trains on every other actor")
HEADLINE_METRICS = ("accuracy", "unweighted_accuracy", "macro_f1")


def checked_folds(folds: Mapping) -> dict[str, tuple[int, ...]]:
    """``folds`` as ``{name: actors}``, after checking that every actor is listed once at most."""
    if not isinstance(folds, Mapping) or len(folds) < 2:
        raise PipelineError("train.folds must map at least two fold names to their actors "
                            "(a run tests on one fold and validates on another)")
    checked: dict[str, tuple[int, ...]] = {}
    fold_of: dict[int, str] = {}
    for name, actors in folds.items():
        if not isinstance(name, str):
            # DVC's foreach generates no stage at all from a numeric key, silently.
            raise PipelineError(f"train.folds: fold name {name!r} must be a string; quote it ('{name}': [...])")
        if isinstance(actors, (str, bytes)) or not isinstance(actors, Sequence) or not actors:
            raise PipelineError(f"train.folds['{name}'] must be a non-empty list of actor numbers, got {actors!r}")
        for actor in actors:
            if isinstance(actor, bool) or not isinstance(actor, int):
                raise PipelineError(f"train.folds['{name}'] lists {actor!r}, which is not an actor number")
            if actor in fold_of:
                where = "twice in fold" if fold_of[actor] == name else f"in fold '{fold_of[actor]}' and in fold"
                raise PipelineError(f"train.folds: actor {actor} is listed {where} '{name}'; "
                                    "an actor may be in one fold only, once")
            fold_of[actor] = name
        checked[name] = tuple(actors)
    return checked


def fold_actors(folds: Mapping[str, tuple[int, ...]], fold: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(val_actors, test_actors)`` of a fold's run: its own actors test, the next fold's validate."""
    names = list(folds)
    if fold not in folds:
        raise PipelineError(f"train.fold={fold!r} is not a fold of train.folds ({', '.join(names)})")
    return folds[names[(names.index(fold) + 1) % len(names)]], folds[fold]


@dataclass
class FoldResult:
    """One fold's run, as its train stage wrote it."""

    name: str
    metrics: dict  # metrics.json: per-split metrics and the actors of each split
    predictions: list[dict]  # test_predictions.csv: clip_id, actor, actual, predicted


def read_fold(fold_dir: Path, name: str) -> FoldResult:
    fold_dir = Path(fold_dir)
    metrics_path, predictions_path = fold_dir / "metrics.json", fold_dir / "test_predictions.csv"
    for path in (metrics_path, predictions_path):
        if not path.is_file():
            raise PipelineError(f"fold '{name}' has no results (did its stage train-fold@{name} run?)", path)
    try:
        metrics = json.loads(metrics_path.read_text())
        fold, test = metrics["splits"]["fold"], metrics["test"]
    except (ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"not the metrics of a training run ({error!r})", metrics_path) from None
    if fold != name or any(key not in test for key in HEADLINE_METRICS):
        raise PipelineError(f"holds the results of fold '{fold}', not of fold '{name}'", metrics_path)
    with open(predictions_path, newline="") as handle:
        predictions = list(csv.DictReader(handle))
    return FoldResult(name, metrics, predictions)


def check_no_leakage(results: Sequence[FoldResult]) -> None:
    """No actor in two splits of a run, no actor tested by two runs, every prediction a test actor's."""
    tested_by: dict[int, str] = {}
    for result in results:
        splits = {name: set(result.metrics["splits"][f"{name}_actors"]) for name in ("train", "val", "test")}
        for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = splits[first] & splits[second]
            if shared:
                raise PipelineError(f"fold '{result.name}': actor(s) {sorted(shared)} are in both its {first} "
                                    f"and its {second} split")
        for actor in sorted(splits["test"]):
            if actor in tested_by:
                raise PipelineError(f"actor {actor} is tested in fold '{tested_by[actor]}' and in fold "
                                    f"'{result.name}'; the folds overlap")
            tested_by[actor] = result.name
        strangers = sorted({int(p["actor"]) for p in result.predictions} - splits["test"])
        if strangers:
            raise PipelineError(f"fold '{result.name}' has test predictions for actor(s) {strangers} outside its "
                                "test split")


def summed_confusion(results: Sequence[FoldResult]) -> np.ndarray:
    """Counts of (actual, predicted) over every fold's test clips; rows actual, columns predicted."""
    predictions = [p for result in results for p in result.predictions]
    return confusion_matrix([EMOTION_NAMES.index(p["actual"]) for p in predictions],
                            [EMOTION_NAMES.index(p["predicted"]) for p in predictions])


def _mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (n - 1): the folds are a sample of speaker groups."""
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4)}


def aggregate_folds(results: Sequence[FoldResult]) -> dict:
    """The cross-validated metrics of the folds' runs (see the module docstring)."""
    if len(results) < 2:
        raise PipelineError(f"cross-validation needs at least two folds, got {len(results)}")
    check_no_leakage(results)
    metrics: dict = {"folds": len(results), "test_clips": sum(len(r.predictions) for r in results)}
    for key in HEADLINE_METRICS:
        metrics[key] = _mean_std([r.metrics["test"][key] for r in results])
    # Lists are kept out of `dvc metrics show` and `dvc exp show` columns, but stay in the file.
    metrics["per_fold"] = [
        {"fold": r.name, "test_actors": r.metrics["splits"]["test_actors"]}
        | {key: r.metrics["test"][key] for key in HEADLINE_METRICS}
        for r in results
    ]
    counts = summed_confusion(results)
    # The metrics of all folds' test clips taken together, as papers that merge the folds' predictions report.
    pooled = metrics_from_confusion(counts)
    metrics["pooled"] = {key: pooled[key] for key in HEADLINE_METRICS}
    metrics["confusion_matrix"] = {"labels": list(EMOTION_NAMES), "counts": counts.tolist()}  # rows: actual
    return metrics


def recall_table(results: Sequence[FoldResult]) -> list[dict]:
    """Per-emotion recall on the test clips: mean and sample standard deviation over folds."""
    table = []
    for emotion in EMOTION_NAMES:
        values = [r.metrics["test"]["recall"][emotion] for r in results if emotion in r.metrics["test"]["recall"]]
        if len(values) >= 2:
            summary = _mean_std(values)
            table.append({"emotion": emotion, "recall": summary["mean"], "recall_std": summary["std"]})
    return table


def write_crossval_report(results: Sequence[FoldResult], out_dir: Path) -> dict:
    """``metrics.json``, ``test_predictions.csv`` (every fold's, with a ``fold`` column) and ``recall.csv``."""
    out_dir = Path(out_dir)
    metrics = aggregate_folds(results)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_csv_atomic(out_dir / "test_predictions.csv",
                     [{"fold": r.name} | prediction for r in results for prediction in r.predictions])
    write_csv_atomic(out_dir / "recall.csv", recall_table(results))
    return metrics
