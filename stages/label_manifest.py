"""Stage 4, label-manifest: labels from RAVDESS file names, joined with audio and embeddings, in one CSV."""

import logging
from dataclasses import dataclass
from pathlib import Path

from ravdess_ser.cli import param, parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.corpus import actor_numbers
    from ravdess_ser.ravdess import ALL_ACTOR_CODES
    from ravdess_ser.manifest import build_manifest, summarize_exclusions, write_manifest


@dataclass(frozen=True)
class ManifestConfig:
    actors: tuple[str, ...] = param(ALL_ACTOR_CODES, "two-digit actor codes to include")


def main() -> None:
    config, args = parse_stage_config(
        ManifestConfig, "data", __doc__,
        {"audio_root": "the 16 kHz audio folder (data/audio_16k)",
         "embedding_root": "the embeddings folder (experiments/audio_embeddings)",
         "manifest": "the CSV to write (data/manifest.csv)"},
        subset=True,
    )
    rows = build_manifest(args.audio_root, args.embedding_root, actor_numbers(config.actors), Path.cwd())
    write_manifest(rows, args.manifest)
    excluded = summarize_exclusions(rows)
    for line in excluded:
        logging.warning("excluded %s", line)
    logging.info("%s: %d clips, %d excluded", args.manifest, len(rows) - len(excluded), len(excluded))


if __name__ == "__main__":
    run_stage(main)
