"""Many trainings at once: the runs of a cross-validation or a layer sweep, in a pool of processes.

The trainings are independent and each runs on one CPU thread, so on the CPU
they run in a pool of processes, one per core, when that pays: each of the
pool's processes starts a Python of its own and imports torch again, which on
a small corpus costs more than the trainings themselves. So the first
:data:`TIMED_TRAININGS` run in this process, timed, and the rest go to a pool
only if it would finish them sooner (:func:`pool_pays_off`).
``RAVDESS_SER_TRAINING_PROCESSES`` sets the number of processes instead (1:
all in this one). Every training seeds itself, so the results do not depend on
how many processes run them, nor on where.
"""

from __future__ import annotations

import multiprocessing
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ravdess_ser.device import resolve_device
from ravdess_ser.errors import PipelineError
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
# The first trains the process's first model (a one-off cost: torch.optim imports torch._dynamo, 1.8 s on a Zen 4
# EPYC); the second is a training's usual time.
TIMED_TRAININGS = 2
PROCESSES_ENV = "RAVDESS_SER_TRAINING_PROCESSES"

log = logging.getLogger(__name__)
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
    """One process per available core on the CPU (each training uses one thread); one on a GPU; or
    ``$RAVDESS_SER_TRAINING_PROCESSES``."""
    if os.environ.get(PROCESSES_ENV):
        text = os.environ[PROCESSES_ENV]
        if not (text.isascii() and text.isdigit()) or int(text) < 1:  # isdigit alone takes '²'
            raise PipelineError(f"{PROCESSES_ENV}={text!r}: must be a whole number of processes, 1 or more")
        return min(int(text), trainings)
    if resolve_device(config.device).type != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_PROCESSES, trainings))


def pool_pays_off(start_up: float, first: float, usual: float, remaining: int, processes: int) -> bool:
    """Whether ``processes`` new processes would finish ``remaining`` trainings of ``usual`` seconds each sooner
    than this one: each pays again this process's ``start_up`` (seconds of CPU before the first training) and its
    ``first`` training's one-off costs. (In a long-lived process, ``start_up`` overstates a new one's: the pool
    is then passed over, and the results are the same.)"""
    return remaining * usual * (1 - 1 / processes) > start_up + first


def train_all(rows: Sequence[ManifestRow], root: Path, configs: Sequence[TrainConfig],
              processes: int | None = None) -> list[RunResult]:
    """Each config trained and tested, in order: in ``processes`` processes (1: in this one) if given or set
    (``$RAVDESS_SER_TRAINING_PROCESSES``), else as the module's docstring says."""
    start_up = time.process_time()
    chosen = processes is not None or bool(os.environ.get(PROCESSES_ENV))
    processes = pool_processes(configs[0], len(configs)) if processes is None else processes
    if chosen and processes > 1:
        return _train_in_pool(rows, root, configs, processes)
    results, seconds = [], []
    _start_trainer(rows, root)
    try:
        for index, config in enumerate(configs):
            if not chosen and index == TIMED_TRAININGS and processes > 1:
                remaining = len(configs) - index
                to_go = f"{remaining} more training{'s' * (remaining > 1)} of {seconds[1]:.2f} s each"
                if pool_pays_off(start_up, seconds[0], seconds[1], remaining, processes):
                    log.info("%s: in a pool of %d processes", to_go, processes)
                    _trainer.clear()
                    return results + _train_in_pool(rows, root, configs[index:], processes)
                log.info("%s: in this process, sooner than starting %d more (%.1f s of start-up each)", to_go,
                         processes, start_up + seconds[0])
            start = time.perf_counter()
            results.append(_train_one(config))
            seconds.append(time.perf_counter() - start)
        return results
    finally:
        _trainer.clear()


def _train_in_pool(rows: Sequence[ManifestRow], root: Path, configs: Sequence[TrainConfig],
                   processes: int) -> list[RunResult]:
    # spawn, not fork: forking a process that has used torch's thread pools can deadlock the children.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_trainer, initargs=(list(rows), Path(root), os.getpid()))
    try:
        with sigint_held():  # the pool starts its processes as the trainings are submitted
            results = pool.map(_train_one, configs)
        return list(results)
    finally:
        pool.shutdown(cancel_futures=True)
