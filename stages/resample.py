"""Stage 2, resample (one per actor): 48 kHz WAV to 16 kHz mono with torchaudio's sinc resampler."""

from ravdess_ser.audio import ResampleConfig, resample_actor
from ravdess_ser.cli import parse_stage_config, run_stage


def main() -> None:
    config, args = parse_stage_config(
        ResampleConfig, "resample", __doc__,
        {"raw_dir": "one actor's raw folder, e.g. data/raw/Actor_01",
         "out_dir": "where its 16 kHz clips go, e.g. data/audio_16k/Actor_01"},
    )
    resample_actor(args.raw_dir, args.out_dir, config)


if __name__ == "__main__":
    run_stage(main)
