"""Stage 6, crossval: the folds' test results (train-fold@<name>) aggregated into one cross-validated report."""

import logging
from dataclasses import dataclass

from ravdess_ser.cli import param, parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.crossval import DEFAULT_FOLDS, FOLDS_HELP, checked_folds, read_fold, write_crossval_report


@dataclass(frozen=True)
class CrossvalConfig:
    folds: dict[str, tuple[int, ...]] = param(DEFAULT_FOLDS, FOLDS_HELP)


def main() -> None:
    config, args = parse_stage_config(
        CrossvalConfig, "train", __doc__,
        {"folds_dir": "the folds' results, one folder per fold name (experiments/crossval/folds)",
         "out_dir": "where metrics.json, test_predictions.csv and recall.csv go (experiments/crossval)"},
        subset=True,
    )
    results = [read_fold(args.folds_dir / name, name) for name in checked_folds(config.folds)]
    metrics = write_crossval_report(results, args.out_dir)
    logging.info("%d folds, %d test clips: accuracy %.3f ± %.3f, unweighted accuracy %.3f ± %.3f, macro F1 %.3f ± %.3f",
                 metrics["folds"], metrics["test_clips"],
                 *(metrics[key][part] for key in ("accuracy", "unweighted_accuracy", "macro_f1")
                   for part in ("mean", "std")))


if __name__ == "__main__":
    run_stage(main)
