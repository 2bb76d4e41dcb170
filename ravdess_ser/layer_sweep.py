"""Which layer carries the emotion: one cross-validated sweep over every layer and their weighted sum.

From the layer summaries (``embed.layer_summary``), the classifier is trained
and tested on every run (fold and seed) of the protocol once per layer
``0..L`` and once with the learned softmax-weighted sum of all layers, each
time on the layer's mean and standard deviation over time, with train's other
settings. Each layer's runs are aggregated as the crossval stage aggregates
them: a row of the sweep is the cross-validation that
``train.features=layer_summary``, ``train.layer=<layer>`` and
``train.pooling=mean_std`` would give. The trainings run in a pool of
processes where that pays (:mod:`ravdess_ser.training_pool`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ravdess_ser.crossval import HEADLINE_METRICS, aggregate_runs, mean_std_text, protocol_runs
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.train_config import WEIGHTED, TrainConfig
from ravdess_ser.training_pool import train_all

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


def sweep_layers(rows: Sequence[ManifestRow], root: Path, config: TrainConfig,
                 processes: int | None = None) -> tuple[list[dict], dict]:
    """One row per layer for the plot, and the sweep's metrics: the best layer, and the weighted sum's results.

    ``config`` gives the protocol and the classifier's settings; features, layer and pooling
    are the sweep's own (layer summaries, each layer and weighted, mean_std). ``processes``
    defaults to :func:`ravdess_ser.training_pool.pool_processes`; the results are the same for any number.
    """
    protocol = config.resolved_protocol
    runs = protocol_runs(replace(config, features="layer_summary", pooling="mean_std"))
    layers = [WEIGHTED] + [str(layer) for layer in range(summary_layer_count(rows, root))]
    configs = [replace(run, layer=layer) for layer in layers for run in runs]
    log.info("%d trainings (%d layers and their weighted sum, %d runs of %s)", len(configs),
             len(layers) - 1, len(runs), protocol.name)
    results = train_all(rows, root, configs, processes)
    by_layer = {layer: results[i * len(runs):(i + 1) * len(runs)] for i, layer in enumerate(layers)}

    weighted = aggregate_runs(by_layer[WEIGHTED], protocol)
    # The learned weight of each layer, averaged over the folds' runs.
    weights = np.mean([[run.metrics["layer_weights"][key] for key in sorted(run.metrics["layer_weights"], key=int)]
                       for run in by_layer[WEIGHTED]], axis=0)
    table = []
    for layer in layers[1:]:
        aggregated = aggregate_runs(by_layer[layer], protocol)
        row = {"layer": int(layer)}
        for key in HEADLINE_METRICS:
            row[key], row[f"{key}_std"] = aggregated[key]["mean"], aggregated[key]["std"]
        row["weighted_sum_weight"] = round(float(weights[int(layer)]), 4)
        table.append(row)
        log.info("layer %s: unweighted accuracy %s", layer, mean_std_text(aggregated["unweighted_accuracy"]))
    best = max(table, key=lambda row: row["unweighted_accuracy"])  # the first of equals: the shallower layer
    log.info("weighted sum of all layers: unweighted accuracy %s", mean_std_text(weighted["unweighted_accuracy"]))
    metrics = {
        "best_layer": best["layer"],
        "best_layer_unweighted_accuracy": {"mean": best["unweighted_accuracy"], "std": best["unweighted_accuracy_std"]},
        "weighted_sum": {key: weighted[key] for key in HEADLINE_METRICS},
        "layers": len(table),
    }
    return table, metrics
