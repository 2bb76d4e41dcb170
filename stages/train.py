"""Stage 5, train: a pooled-MLP emotion classifier on the embeddings, tested on one fold of train.protocol.

It runs the fold named by train.fold with train.seed; the crossval stage runs every fold and seed.
"""

import logging
from pathlib import Path

from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.train_config import TrainConfig

PARAMS = StageParams(TrainConfig, "train")


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__,
        {"manifest": "the label manifest (data/manifest.csv)",
         "model": "where the trained classifier goes (experiments/model/classifier.safetensors)",
         "out_dir": "the run's DVCLive log (metrics.json, plots/metrics/) and test_predictions.csv (experiments/train)"},
    )
    # Imported once the arguments are good: torch takes 2 s to import, which --help and a bad param need not wait for.
    from ravdess_ser.manifest import read_manifest
    from ravdess_ser.train import save_training_outputs, train_classifier

    result = train_classifier(read_manifest(args.manifest), Path.cwd(), config)
    save_training_outputs(result, config, args.model, args.out_dir)
    test = result.metrics["test"]
    logging.info("fold %s: test accuracy %.3f, unweighted accuracy %.3f, macro F1 %.3f (best epoch %d)", config.fold,
                 test["accuracy"], test["unweighted_accuracy"], test["macro_f1"], result.metrics["best_epoch"])


if __name__ == "__main__":
    run_stage(main)
