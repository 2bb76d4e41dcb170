"""Stage 7, layer-sweep: cross-validated results of the classifier on each layer's summary and on their weighted sum."""

import json
import logging
from pathlib import Path

from ravdess_ser.cli import parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.atomic import write_csv_atomic, write_text_atomic
    from ravdess_ser.layer_sweep import sweep_layers
    from ravdess_ser.manifest import read_manifest
    from ravdess_ser.train import TrainConfig


def main() -> None:
    # train's folds and classifier settings; the sweep sets features, layer and pooling itself.
    config, args = parse_stage_config(
        TrainConfig, "train", __doc__,
        {"manifest": "the label manifest (data/manifest.csv)",
         "out_dir": "where layers.csv and metrics.json go (experiments/layer_sweep)"},
    )
    table, metrics = sweep_layers(read_manifest(args.manifest), Path.cwd(), config)
    write_csv_atomic(args.out_dir / "layers.csv", table)
    write_text_atomic(args.out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    logging.info("best layer: %d (unweighted accuracy %.3f); weighted sum of all layers: %.3f",
                 metrics["best_layer"], metrics["best_layer_unweighted_accuracy"]["mean"],
                 metrics["weighted_sum"]["unweighted_accuracy"]["mean"])


if __name__ == "__main__":
    run_stage(main)
