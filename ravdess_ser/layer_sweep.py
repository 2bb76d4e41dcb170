"""Which layer carries the emotion: one cross-validated sweep over every layer and their weighted sum.

From the layer summaries (``embed.layer_summary``), the classifier is trained
and tested on every fold of ``train.folds`` once per layer ``0..L`` and once
with the learned softmax-weighted sum of all layers, each time on the layer's
mean and standard deviation over time, with train's other settings. Each
layer's folds are aggregated as the crossval stage aggregates them: a row of
the sweep is the cross-validation that ``train.features=layer_summary``,
``train.layer=<layer>`` and ``train.pooling=mean_std`` would give.

The sweep's trainings are independent and each runs on one CPU thread, so on
the CPU they run in a pool of processes, one per core. Every training seeds
itself, so the sweep's results do not depend on how many processes run it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ravdess_ser.crossval import HEADLINE_METRICS, FoldResult, aggregate_folds
from ravdess_ser.device import resolve_device
from ravdess_ser.embedding_files import layer_summary_path
from ravdess_ser.errors import PipelineError
from ravdess_ser.manifest import OK, ManifestRow
from ravdess_ser.train import train_classifier
from ravdess_ser.train_config import WEIGHTED, TrainConfig

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


# Each training process holds torch and every layer summary (about 0.4 GB at RAVDESS size).
MAX_PROCESSES = 8
# What one training process reads, set once by _start_trainer.
_trainer: dict = {}


def _start_trainer(rows: Sequence[ManifestRow], root: Path, ignore_interrupt: bool) -> None:
    if ignore_interrupt:
        # Ctrl-C reaches the whole process group; the parent alone handles it, without a traceback per child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every summary is read from disk once per process, for all the runs it does.
    _trainer.update(rows=rows, root=root, loaded={})


@contextlib.contextmanager
def _sigint_held():
    """Ctrl-C held back while the pool starts its processes.

    Blocked in this thread, SIGINT stays blocked in the processes it starts (the mask survives exec), so it never
    reaches them, not even while they import torch before their initializer runs. A SIGINT that comes meanwhile
    (another thread of this process, which does not block it, may take it) is kept by a handler and handed to the
    previous one on leaving: a KeyboardInterrupt raised halfway through starting a process left that process
    without its instructions, and it printed an EOFError traceback.
    """
    held = []
    handler = signal.getsignal(signal.SIGINT)
    in_charge = threading.current_thread() is threading.main_thread() and handler is not None
    if in_charge:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending SIGINT arrives now, in the handler above
        if in_charge:
            signal.signal(signal.SIGINT, handler)
    if held and callable(handler):
        handler(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt


def _train_one(config: TrainConfig) -> FoldResult:
    run = train_classifier(_trainer["rows"], _trainer["root"], config, progress=False, loaded=_trainer["loaded"])
    return FoldResult(config.fold, run.metrics, run.test_predictions)


def sweep_processes(config: TrainConfig, trainings: int) -> int:
    """One process per available core on the CPU (each training uses one thread); one on a GPU."""
    if resolve_device(config.device).type != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_PROCESSES, trainings))


def train_all(rows: Sequence[ManifestRow], root: Path, configs: Sequence[TrainConfig], processes: int) -> list[FoldResult]:
    """Each config trained and tested, in order, in ``processes`` processes (1: in this one)."""
    if processes <= 1:
        _start_trainer(rows, root, ignore_interrupt=False)
        try:
            return [_train_one(config) for config in configs]
        finally:
            _trainer.clear()
    # spawn, not fork: forking a process that has used torch's thread pools can deadlock the children.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_trainer, initargs=(list(rows), Path(root), True))
    try:
        with _sigint_held():  # the pool starts its processes as the trainings are submitted
            results = pool.map(_train_one, configs)
        return list(results)
    finally:
        pool.shutdown(cancel_futures=True)


def sweep_layers(rows: Sequence[ManifestRow], root: Path, config: TrainConfig,
                 processes: int | None = None) -> tuple[list[dict], dict]:
    """One row per layer for the plot, and the sweep's metrics: the best layer, and the weighted sum's results.

    ``config`` gives the folds and the classifier's settings; features, layer and pooling
    are the sweep's own (layer summaries, each layer and weighted, mean_std). ``processes``
    defaults to :func:`sweep_processes`; the results are the same for any number.
    """
    sweep_config = replace(config, features="layer_summary", pooling="mean_std")
    layers = [WEIGHTED] + [str(layer) for layer in range(summary_layer_count(rows, root))]
    configs = [replace(sweep_config, layer=layer, fold=fold) for layer in layers for fold in config.folds]
    if processes is None:
        processes = sweep_processes(config, len(configs))
    log.info("%d trainings (%d layers and their weighted sum, %d folds) in %d process%s", len(configs),
             len(layers) - 1, len(config.folds), processes, "" if processes == 1 else "es")
    results = train_all(rows, root, configs, processes)
    by_layer = {layer: results[i * len(config.folds):(i + 1) * len(config.folds)] for i, layer in enumerate(layers)}

    weighted = aggregate_folds(by_layer[WEIGHTED])
    # The learned weight of each layer, averaged over the folds' runs.
    weights = np.mean([[run.metrics["layer_weights"][key] for key in sorted(run.metrics["layer_weights"], key=int)]
                       for run in by_layer[WEIGHTED]], axis=0)
    table = []
    for layer in layers[1:]:
        aggregated = aggregate_folds(by_layer[layer])
        row = {"layer": int(layer)}
        for key in HEADLINE_METRICS:
            row[key], row[f"{key}_std"] = aggregated[key]["mean"], aggregated[key]["std"]
        row["weighted_sum_weight"] = round(float(weights[int(layer)]), 4)
        table.append(row)
        log.info("layer %s: unweighted accuracy %.3f ± %.3f", layer, row["unweighted_accuracy"],
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
