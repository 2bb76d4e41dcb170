"""Stage 7, layer-sweep: cross-validated results of the classifier on each layer's summary (the mean and std over
time of each layer's frames) and on their learned weighted sum, every run of train.protocol trained (in a pool of
processes where that pays: RAVDESS_SER_TRAINING_PROCESSES sets how many)."""

import json
import logging
from pathlib import Path

from ravdess_ser.atomic import write_csv_atomic, write_text_atomic
from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.crossval import mean_std_text
from ravdess_ser.layer_sweep import sweep_layers
from ravdess_ser.manifest import read_manifest
from ravdess_ser.train_config import TrainConfig

# The sweep sets features, layer and pooling itself and runs every fold, so it reads train's other keys only.
PARAMS = StageParams(TrainConfig, "train", fields=tuple(
    name for name in TrainConfig.__dataclass_fields__ if name not in ("fold", "features", "layer", "pooling")))


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__,
        {"manifest": "the label manifest (data/manifest.csv)",
         "out_dir": "where layers.csv and metrics.json go (experiments/layer_sweep)"},
    )
    table, metrics = sweep_layers(read_manifest(args.manifest), Path.cwd(), config)
    write_csv_atomic(args.out_dir / "layers.csv", table)
    write_text_atomic(args.out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    logging.info("best layer: %d (unweighted accuracy %s); weighted sum of all layers: %s", metrics["best_layer"],
                 mean_std_text(metrics["best_layer_unweighted_accuracy"]),
                 mean_std_text(metrics["weighted_sum"]["unweighted_accuracy"]))


if __name__ == "__main__":
    run_stage(main)
