"""Stage 1, download: the raw corpus into data/raw/Actor_XX (48 kHz WAV, RAVDESS names)."""

from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.corpus import DataConfig
from ravdess_ser.download import prepare_corpus

PARAMS = StageParams(DataConfig, "data")


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__, {"raw_dir": "output folder; one Actor_XX folder per actor is written in it"}
    )
    prepare_corpus(config, args.raw_dir)


if __name__ == "__main__":
    run_stage(main)
