"""Randomly initialised wav2vec2 models saved in Hugging Face format.

The pipeline's offline default is a miniature wav2vec2 with random weights: it
has the real architecture (the same convolutional feature encoder, 20 ms frames,
25 ms receptive field; a transformer with fewer, narrower layers), so every
code path of the real model runs, but it knows nothing about speech. It is
committed under ``models/`` and can be rebuilt bit for bit with
``python -m ravdess_ser.models models/wav2vec2-tiny-random``.

The benchmarks build a model with ``Wav2Vec2Config()`` defaults, the
architecture of facebook/wav2vec2-base: it costs the same FLOPs as the real one
and needs no download.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TINY_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(64,) * 7,
    num_conv_pos_embeddings=32,
    num_conv_pos_embedding_groups=8,
    vocab_size=32,
)


def save_random_wav2vec2(out_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """Save a seeded, randomly initialised ``Wav2Vec2Model`` and its feature extractor to ``out_dir``."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(**config_overrides)
    torch.manual_seed(seed)
    model = Wav2Vec2Model(config).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    # wav2vec2-base's preprocessing: per-utterance zero mean / unit variance, no attention mask.
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(out_dir)
    return out_dir


def save_tiny_wav2vec2(out_dir: Path, seed: int = 0) -> Path:
    return save_random_wav2vec2(out_dir, seed, **TINY_CONFIG)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the miniature random wav2vec2 used as the offline default.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    save_tiny_wav2vec2(args.out_dir, args.seed)


if __name__ == "__main__":
    main()
