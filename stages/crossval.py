"""Stage 6, crossval: every fold of train.protocol with every seed, trained (in a pool of processes where that pays:
RAVDESS_SER_TRAINING_PROCESSES sets how many), and one cross-validated report (metrics.json, test_predictions.csv, recall.csv, runs.csv, training_curves.csv)."""

import logging
from pathlib import Path

from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.crossval import HEADLINE_METRICS, cross_validate, mean_std_text, write_crossval_report
from ravdess_ser.manifest import read_manifest
from ravdess_ser.train_config import TrainConfig

# Every run sets its own fold and seed: the train stage's fold is no param of this one.
PARAMS = StageParams(TrainConfig, "train", fields=tuple(
    name for name in TrainConfig.__dataclass_fields__ if name != "fold"))


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__,
        {"manifest": "the label manifest (data/manifest.csv)",
         "out_dir": "where the report goes (experiments/crossval)"},
    )
    results = cross_validate(read_manifest(args.manifest), Path.cwd(), config)
    metrics = write_crossval_report(results, config.resolved_protocol, args.out_dir)
    logging.info("%s: %d folds, %d runs, %d test clips: %s", config.protocol, metrics["folds"], metrics["runs"],
                 metrics["test_clips"],
                 ", ".join(f"{key} {mean_std_text(metrics[key])}" for key in HEADLINE_METRICS))


if __name__ == "__main__":
    run_stage(main)
