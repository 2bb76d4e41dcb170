"""Stage 3, embed (one per actor): speech-encoder frame embeddings (wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper),
one (time, features) .npy per clip."""

from dataclasses import asdict

from ravdess_ser.cli import StageParams, parse_stage_config, run_stage
from ravdess_ser.embed import EmbedConfig, embed_actor_job
from ravdess_ser.worker import run_task

PARAMS = StageParams(EmbedConfig, "embed")


def main() -> None:
    config, args = parse_stage_config(
        PARAMS, __doc__,
        {"audio_dir": "one actor's 16 kHz folder, e.g. data/audio_16k/Actor_01",
         "out_dir": "where its embeddings go, e.g. experiments/audio_embeddings/Actor_01"},
    )
    # Runs in the warm worker (the model stays loaded across the 24 actors); see ravdess_ser/worker.py.
    run_task(embed_actor_job, audio_dir=str(args.audio_dir), out_dir=str(args.out_dir), config=asdict(config))


if __name__ == "__main__":
    run_stage(main)
