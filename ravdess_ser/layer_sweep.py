"""Which layer carries the emotion: one cross-validated sweep over every layer and their weighted sum.

From the layer summaries (``embed.layer_summary``), the classifier is trained
and tested on every fold of ``train.folds`` once per layer ``0..L`` and once
with the learned softmax-weighted sum of all layers, each time on the layer's
mean and standard deviation over time, with train's other settings. Each
layer's folds are aggregated as the crossval stage aggregates them: a row of
the sweep is the cross-validation that ``train.features=layer_summary``,
``train.layer=<layer>`` and ``train.pooling=mean_std`` would give.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ravdess_ser.crossval import HEADLINE_METRICS, FoldResult, aggregate_folds
from ravdess_ser.embed import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.train import WEIGHTED, TrainConfig, train_classifier

log = logging.getLogger(__name__)


def summary_layer_count(rows: Sequence[ManifestRow], root: Path) -> int:
    """How many layers the layer summaries hold (the transformer's input and each block's output)."""
    usable = [row for row in rows if row.status == OK]
    if not usable:
        raise PipelineError("the manifest has no usable clips")
    path = layer_summary_path(Path(root) / usable[0].embedding_path)
    if not path.is_file():
        raise PipelineError("no layer summary for this clip; the layer sweep reads the summaries that embed "
                            "writes with embed.layer_summary: true", path)
    return int(np.load(path, mmap_mode="r").shape[0])


def cross_validate(rows: Sequence[ManifestRow], root: Path, config: TrainConfig,
                   loaded: dict[Path, np.ndarray]) -> tuple[dict, list]:
    """Every fold of ``config.folds`` trained and tested: the aggregated metrics and each run's metrics."""
    runs = [train_classifier(rows, root, replace(config, fold=fold), progress=False, loaded=loaded)
            for fold in config.folds]
    results = [FoldResult(fold, run.metrics, run.test_predictions) for fold, run in zip(config.folds, runs)]
    return aggregate_folds(results), [run.metrics for run in runs]


def sweep_layers(rows: Sequence[ManifestRow], root: Path, config: TrainConfig) -> tuple[list[dict], dict]:
    """One row per layer for the plot, and the sweep's metrics: the best layer, and the weighted sum's results.

    ``config`` gives the folds and the classifier's settings; features, layer and pooling
    are the sweep's own (layer summaries, each layer and weighted, mean_std).
    """
    sweep_config = replace(config, features="layer_summary", pooling="mean_std")
    loaded: dict[Path, np.ndarray] = {}  # every summary is read from disk once, for all the sweep's runs
    weighted, weighted_runs = cross_validate(rows, root, replace(sweep_config, layer=WEIGHTED), loaded)
    # The learned weight of each layer, averaged over the folds' runs.
    weights = np.mean([[run["layer_weights"][key] for key in sorted(run["layer_weights"], key=int)]
                       for run in weighted_runs], axis=0)
    table = []
    for layer in range(summary_layer_count(rows, root)):
        aggregated, _ = cross_validate(rows, root, replace(sweep_config, layer=str(layer)), loaded)
        row = {"layer": layer}
        for key in HEADLINE_METRICS:
            row[key], row[f"{key}_std"] = aggregated[key]["mean"], aggregated[key]["std"]
        row["weighted_sum_weight"] = round(float(weights[layer]), 4)
        table.append(row)
        log.info("layer %d: unweighted accuracy %.3f ± %.3f", layer, row["unweighted_accuracy"],
                 row["unweighted_accuracy_std"])
    best = max(table, key=lambda row: row["unweighted_accuracy"])  # the first of equals: the shallower layer
    log.info("weighted sum of all layers: unweighted accuracy %.3f ± %.3f",
             weighted["unweighted_accuracy"]["mean"], weighted["unweighted_accuracy"]["std"])
    metrics = {
        "best_layer": best["layer"],
        "best_layer_unweighted_accuracy": {"mean": best["unweighted_accuracy"], "std": best["unweighted_accuracy_std"]},
        "weighted_sum": {key: weighted[key] for key in HEADLINE_METRICS},
        "layers": len(table),
    }
    return table, metrics
