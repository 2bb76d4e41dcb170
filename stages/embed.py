"""Stage 3, embed (one per actor): wav2vec2 frame embeddings, one (time, features) .npy per clip."""

from dataclasses import asdict

from ravdess_ser.cli import parse_stage_config, run_stage, stage_imports

with stage_imports():  # Ctrl-C while these load is run_stage's one line too, not a traceback
    from ravdess_ser.embed import EmbedConfig
    from ravdess_ser.worker import run_task


def main() -> None:
    config, args = parse_stage_config(
        EmbedConfig, "embed", __doc__,
        {"audio_dir": "one actor's 16 kHz folder, e.g. data/audio_16k/Actor_01",
         "out_dir": "where its embeddings go, e.g. experiments/audio_embeddings/Actor_01"},
    )
    # Runs in the warm worker (the model stays loaded across the 24 actors); see ravdess_ser/worker.py.
    run_task("embed_actor", audio_dir=str(args.audio_dir), out_dir=str(args.out_dir), config=asdict(config))


if __name__ == "__main__":
    run_stage(main)
