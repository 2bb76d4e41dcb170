"""Stage 5, train: a pooled-MLP emotion classifier on the embeddings, tested on one speaker-independent fold.

The train stage runs the fold named by train.fold; the train-fold@<name> stages run every fold of train.folds
(with --fold <name>) for the crossval stage to aggregate.
"""

import logging
from pathlib import Path

from ravdess_ser.cli import parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.manifest import read_manifest
    from ravdess_ser.train import TrainConfig, save_training_outputs, train_classifier


def main() -> None:
    config, args = parse_stage_config(
        TrainConfig, "train", __doc__,
        {"manifest": "the label manifest (data/manifest.csv)",
         "model": "where the trained classifier goes (experiments/model/classifier.safetensors)",
         "metrics": "metrics JSON (experiments/metrics.json)",
         "plots_dir": "folder for test_predictions.csv and training_curves.csv (experiments/plots)"},
    )
    result = train_classifier(read_manifest(args.manifest), Path.cwd(), config)
    save_training_outputs(result, config, args.model, args.metrics, args.plots_dir)
    test = result.metrics["test"]
    logging.info("fold %s: test accuracy %.3f, unweighted accuracy %.3f, macro F1 %.3f (best epoch %d)", config.fold,
                 test["accuracy"], test["unweighted_accuracy"], test["macro_f1"], result.metrics["best_epoch"])


if __name__ == "__main__":
    run_stage(main)
