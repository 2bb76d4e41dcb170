"""A training run's log in DVCLive's format: its metrics and its per-epoch curves, for ``dvc metrics`` and
``dvc plots``.

The run is logged once it has ended, from its history: ``metrics.json`` is the run's report (the metrics of the
checkpoint that validation chose, not the last epoch's), with DVCLive's ``step`` (the last epoch), and
``plots/metrics/{train,val}/<metric>.tsv`` hold one row per epoch, ``step`` being the epoch. Only files are
written: no DVC experiment is saved and no ``dvc.yaml`` edited (the pipeline's declares these files), and
nothing goes to DVC Studio (``dvc exp push`` shares experiments). The bytes depend on the run alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# DVCLive metric name -> the history's key.
CURVES = {"train/loss": "train_loss", "val/loss": "val_loss", "val/accuracy": "val_accuracy",
          "val/unweighted_accuracy": "val_unweighted_accuracy"}


def write_training_log(history: Sequence[dict], metrics: dict, log_dir: Path) -> None:
    """``metrics.json`` and the curves of ``history`` (one dict per epoch) under ``log_dir``."""
    # Read when Live starts: live updates of a run that has already ended would only be noise.
    os.environ["DVC_STUDIO_OFFLINE"] = "true"
    from dvclive import Live

    # Not a context manager, and no next_step(): Live.end() would `git add` the folder's files inside
    # `dvc exp run`, and next_step() writes a step marker under .dvc/tmp; the folder is the stage's output.
    live = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    for epoch in history:
        live.step = epoch["epoch"]
        for name, key in CURVES.items():
            live.log_metric(name, epoch[key])
    live.summary = dict(metrics)
    live.make_summary()
