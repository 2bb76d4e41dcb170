"""Stage 3, embed (one per actor): wav2vec2 frame embeddings, one (time, features) .npy per clip."""

from ravdess_ser.cli import parse_stage_config, run_stage
from ravdess_ser.embed import EmbedConfig, Wav2Vec2Embedder, embed_actor


def main() -> None:
    config, args = parse_stage_config(
        EmbedConfig, "embed", __doc__,
        {"audio_dir": "one actor's 16 kHz folder, e.g. data/audio_16k/Actor_01",
         "out_dir": "where its embeddings go, e.g. experiments/audio_embeddings/Actor_01"},
    )
    embed_actor(Wav2Vec2Embedder(config), args.audio_dir, args.out_dir)


if __name__ == "__main__":
    run_stage(main)
