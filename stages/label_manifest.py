"""Stage 4, label-manifest: labels from RAVDESS file names, joined with audio and embeddings, in one CSV."""

import logging
from pathlib import Path

from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.corpus import DataConfig, actor_numbers
from ravdess_ser.manifest import build_manifest, summarize_exclusions, write_manifest

PARAMS = StageParams(DataConfig, "data", fields=("actors", "subsets"))


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__,
        {"audio_root": "the 16 kHz audio folder (data/audio_16k)",
         "embedding_root": "the embeddings folder (experiments/audio_embeddings)",
         "manifest": "the CSV to write (data/manifest.csv)"},
    )
    rows = build_manifest(args.audio_root, args.embedding_root, actor_numbers(config.actors), Path.cwd(),
                          config.subsets)
    write_manifest(rows, args.manifest)
    excluded = summarize_exclusions(rows)
    for line in excluded:
        logging.warning("excluded %s", line)
    logging.info("%s: %d clips, %d excluded", args.manifest, len(rows) - len(excluded), len(excluded))


if __name__ == "__main__":
    run_stage(main)
