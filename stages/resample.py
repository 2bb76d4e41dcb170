"""Stage 2, resample (one per actor): 48 kHz WAV to 16 kHz mono with torchaudio's sinc resampler."""

from dataclasses import asdict

from ravdess_ser.cli import parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.audio import ResampleConfig
    from ravdess_ser.worker import run_task


def main() -> None:
    config, args = parse_stage_config(
        ResampleConfig, "resample", __doc__,
        {"raw_dir": "one actor's raw folder, e.g. data/raw/Actor_01",
         "out_dir": "where its 16 kHz clips go, e.g. data/audio_16k/Actor_01"},
    )
    # Runs in the warm worker (torch stays imported across the 24 actors); see ravdess_ser/worker.py.
    run_task("resample_actor", raw_dir=str(args.raw_dir), out_dir=str(args.out_dir), config=asdict(config))


if __name__ == "__main__":
    run_stage(main)
