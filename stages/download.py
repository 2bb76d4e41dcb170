"""Stage 1, download: the raw corpus into data/raw/Actor_XX (48 kHz WAV, RAVDESS names)."""

from ravdess_ser.cli import parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.corpus import DataConfig, prepare_corpus


def main() -> None:
    config, args = parse_stage_config(
        DataConfig, "data", __doc__, {"raw_dir": "output folder; one Actor_XX folder per actor is written in it"}
    )
    prepare_corpus(config, args.raw_dir)


if __name__ == "__main__":
    run_stage(main)
