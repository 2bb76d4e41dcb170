"""Cross-validation of a protocol: every fold's run with every seed, and one report from all of them.

The protocol (:mod:`ravdess_ser.protocols`) gives the folds and the seeds;
each (fold, seed) run tests on its fold's actors, which never train or
validate in that run. The report aggregates the runs' test results: the mean
and sample standard deviation over runs (seeds and folds) of accuracy,
unweighted accuracy (mean per-class recall) and macro F1; the same three
metrics of every run's test clips pooled; the confusion matrix summed over
runs; per-emotion recall; and, per fold, its test actors and its results over
seeds. It names the protocol that ran, with any param that departs from it,
and marks per-speaker normalisation as transductive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ravdess_ser.atomic import write_csv_atomic, write_text_atomic
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import ManifestRow
from ravdess_ser.metrics import confusion_matrix, metrics_from_confusion
from ravdess_ser.protocols import Protocol
from ravdess_ser.train_config import TrainConfig
from ravdess_ser.training_pool import RunResult, train_all

HEADLINE_METRICS = ("accuracy", "unweighted_accuracy", "macro_f1")


def protocol_runs(config: TrainConfig) -> list[TrainConfig]:
    """One config per run of the protocol: each seed of it, each fold (``fold`` and ``seed`` set)."""
    protocol = config.resolved_protocol
    return [replace(config, fold=fold.name, seed=seed) for seed in protocol.seeds for fold in protocol.folds]


def check_no_leakage(results: Sequence[RunResult]) -> None:
    """No test actor trains or validates in its run, no clip in two splits, no actor tested twice with one seed,
    and every prediction a test actor's."""
    tested_by: dict[tuple[int, int], str] = {}
    for result in results:
        splits = {name: set(result.metrics["splits"][f"{name}_actors"]) for name in ("train", "val", "test")}
        pairs = [("train", "test"), ("val", "test")]
        if result.metrics["splits"]["validation"] == "speakers":
            pairs.append(("train", "val"))
        for first, second in pairs:
            shared = splits[first] & splits[second]
            if shared:
                raise PipelineError(f"fold '{result.fold}': actor(s) {sorted(shared)} are in both its {first} "
                                    f"and its {second} split")
        for actor in sorted(splits["test"]):
            if (result.seed, actor) in tested_by:
                raise PipelineError(f"actor {actor} is tested in fold '{tested_by[result.seed, actor]}' and in fold "
                                    f"'{result.fold}'; the folds overlap")
            tested_by[result.seed, actor] = result.fold
        strangers = sorted({int(p["actor"]) for p in result.predictions} - splits["test"])
        if strangers:
            raise PipelineError(f"fold '{result.fold}' has test predictions for actor(s) {strangers} outside its "
                                "test split")


def _mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (n - 1; none for one run): the runs are a sample of speaker groups and
    seeds."""
    std = round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None
    return {"mean": round(float(np.mean(values)), 4), "std": std}


def mean_std_text(summary: dict) -> str:
    """``0.526 ± 0.038``, or ``0.526 (one run)`` when there is no spread to give."""
    mean, std = summary["mean"], summary["std"]
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f} (one run)"


def summed_confusion(results: Sequence[RunResult], classes: Sequence[str]) -> np.ndarray:
    """Counts of (actual, predicted) over every run's test clips; rows actual, columns predicted."""
    predictions = [p for result in results for p in result.predictions]
    return confusion_matrix([classes.index(p["actual"]) for p in predictions],
                            [classes.index(p["predicted"]) for p in predictions], len(classes))


def aggregate_runs(results: Sequence[RunResult], protocol: Protocol) -> dict:
    """The cross-validated metrics of the runs (see the module docstring)."""
    if not results:
        raise PipelineError("cross-validation has no runs")
    check_no_leakage(results)
    folds = list(dict.fromkeys(r.fold for r in results))
    metrics: dict = {"protocol": protocol.describe(), "folds": len(folds), "runs": len(results),
                     "test_clips": len({p["clip_id"] for r in results for p in r.predictions})}
    for key in HEADLINE_METRICS:
        metrics[key] = _mean_std([r.metrics["test"][key] for r in results])
    # Lists are kept out of `dvc metrics show` and `dvc exp show` columns, but stay in the file.
    metrics["per_fold"] = [
        {"fold": fold, "test_actors": runs[0].metrics["splits"]["test_actors"], "seeds": [r.seed for r in runs]}
        | {key: _mean_std([r.metrics["test"][key] for r in runs]) for key in HEADLINE_METRICS}
        for fold in folds for runs in [[r for r in results if r.fold == fold]]
    ]
    counts = summed_confusion(results, protocol.classes)
    # The metrics of all runs' test clips taken together, as papers that merge the folds' predictions report.
    pooled = metrics_from_confusion(counts, protocol.classes)
    metrics["pooled"] = {key: pooled[key] for key in HEADLINE_METRICS}
    metrics["confusion_matrix"] = {"labels": list(protocol.classes), "counts": counts.tolist()}  # rows: actual
    return metrics


def recall_table(results: Sequence[RunResult], classes: Sequence[str]) -> list[dict]:
    """Per-emotion recall on the test clips: mean and sample standard deviation over runs."""
    table = []
    for emotion in classes:
        values = [r.metrics["test"]["recall"][emotion] for r in results if emotion in r.metrics["test"]["recall"]]
        if values:
            summary = _mean_std(values)
            table.append({"emotion": emotion, "recall": summary["mean"], "recall_std": summary["std"]})
    return table


def cross_validate(rows: Sequence[ManifestRow], root: Path, config: TrainConfig,
                   processes: int | None = None) -> list[RunResult]:
    """Every run of ``config``'s protocol, trained and tested (in a pool of processes where that pays, see training_pool)."""
    return train_all(rows, root, protocol_runs(config), processes)


def write_crossval_report(results: Sequence[RunResult], protocol: Protocol, out_dir: Path) -> dict:
    """``metrics.json``, ``test_predictions.csv`` (every run's, with ``fold`` and ``seed`` columns),
    ``recall.csv``, ``runs.csv`` (a row per run) and ``training_curves.csv`` (every run's epochs)."""
    out_dir = Path(out_dir)
    metrics = aggregate_runs(results, protocol)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_csv_atomic(out_dir / "test_predictions.csv",
                     [{"fold": r.fold, "seed": r.seed} | p for r in results for p in r.predictions])
    write_csv_atomic(out_dir / "recall.csv", recall_table(results, protocol.classes))
    write_csv_atomic(out_dir / "runs.csv", [
        {"fold": r.fold, "seed": r.seed, "test_actors": " ".join(map(str, r.metrics["splits"]["test_actors"])),
         "best_epoch": r.metrics["best_epoch"]} | {key: r.metrics["test"][key] for key in HEADLINE_METRICS}
        for r in results])
    write_csv_atomic(out_dir / "training_curves.csv",
                     [{"fold": r.fold, "seed": r.seed} | epoch for r in results for epoch in r.history])
    return metrics
