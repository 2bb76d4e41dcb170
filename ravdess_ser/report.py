"""Print the headline metrics: ``python -m ravdess_ser.report experiments/train/metrics.json [crossval/metrics.json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ravdess_ser.crossval import mean_std_text


def format_metrics(metrics: dict) -> str:
    lines = [f"{'split':<6} {'clips':>6} {'accuracy':>9} {'UA':>7} {'macro F1':>9}"]
    for split in ("train", "val", "test"):
        m = metrics[split]
        lines.append(f"{split:<6} {m['clips']:>6} {m['accuracy']:>9.3f} {m['unweighted_accuracy']:>7.3f} {m['macro_f1']:>9.3f}")
    recall = ", ".join(f"{name} {value:.2f}" for name, value in metrics["test"]["recall"].items())
    lines.append(f"test recall per emotion: {recall}")
    classes = metrics["protocol"]["classes"]
    lines.append(f"(chance: unweighted accuracy {1 / classes:.3f} over {classes} classes; "
                 f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']})")
    return "\n".join(lines)


def format_crossval(metrics: dict) -> str:
    parts = [f"{name} {mean_std_text(metrics[key])}"
             for key, name in (("accuracy", "accuracy"), ("unweighted_accuracy", "UA"), ("macro_f1", "macro F1"))]
    protocol = metrics["protocol"]
    seeds = f" × {protocol['seeds']} seeds" if protocol["seeds"] > 1 else ""
    transductive = ", transductive (per-speaker normalisation)" if protocol["transductive"] else ""
    return (f"{protocol['name']}: {metrics['folds']} fold(s){seeds}, speaker-independent{transductive}: "
            + ", ".join(parts))


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/train/metrics.json")
    print(f"Metrics ({path}):")
    print(format_metrics(json.loads(path.read_text())))
    for crossval in map(Path, sys.argv[2:]):
        print(f"{format_crossval(json.loads(crossval.read_text()))} ({crossval})")


if __name__ == "__main__":
    main()
