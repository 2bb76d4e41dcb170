"""Many trainings at once: the runs of a cross-validation or a layer sweep, in a pool of processes.

The trainings are independent and each runs on one CPU thread, so on the CPU
they run in a pool of processes, one per core. Every training seeds itself,
so the results do not depend on how many processes run them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ravdess_ser.device import resolve_device
from ravdess_ser.manifest import ManifestRow
from ravdess_ser.process_pool import die_with_parent, sigint_held
from ravdess_ser.train_config import TrainConfig


@dataclass
class RunResult:
    """One training run's results: its metrics (splits, actors, per-split metrics), test predictions and curves."""

    fold: str
    seed: int
    metrics: dict
    predictions: list[dict]  # clip_id, actor, actual, predicted
    history: list[dict]  # per epoch


# Each training process holds torch and every layer summary (about 0.4 GB at RAVDESS size).
MAX_PROCESSES = 8
# What one training process reads, set once by _start_trainer.
_trainer: dict = {}


def _start_trainer(rows: Sequence[ManifestRow], root: Path, pool_parent: int | None = None) -> None:
    if pool_parent is not None:  # a pool's process
        die_with_parent(pool_parent)
        # Ctrl-C reaches the whole process group; the parent alone handles it, without a traceback per child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every summary is read from disk once per process, for all the runs it does.
    _trainer.update(rows=rows, root=root, loaded={})


def _train_one(config: TrainConfig) -> RunResult:
    from ravdess_ser.train import train_classifier

    run = train_classifier(_trainer["rows"], _trainer["root"], config, progress=False, loaded=_trainer["loaded"])
    return RunResult(config.fold, config.seed, run.metrics, run.test_predictions, run.history)


def pool_processes(config: TrainConfig, trainings: int) -> int:
    """One process per available core on the CPU (each training uses one thread); one on a GPU."""
    if resolve_device(config.device).type != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_PROCESSES, trainings))


def train_all(rows: Sequence[ManifestRow], root: Path, configs: Sequence[TrainConfig],
              processes: int | None = None) -> list[RunResult]:
    """Each config trained and tested, in order, in ``processes`` processes (1: in this one; default:
    :func:`pool_processes`)."""
    if processes is None:
        processes = pool_processes(configs[0], len(configs))
    if processes <= 1:
        _start_trainer(rows, root)
        try:
            return [_train_one(config) for config in configs]
        finally:
            _trainer.clear()
    # spawn, not fork: forking a process that has used torch's thread pools can deadlock the children.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_trainer, initargs=(list(rows), Path(root), os.getpid()))
    try:
        with sigint_held():  # the pool starts its processes as the trainings are submitted
            results = pool.map(_train_one, configs)
        return list(results)
    finally:
        pool.shutdown(cancel_futures=True)
