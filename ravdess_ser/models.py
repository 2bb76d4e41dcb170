"""Randomly initialised speech encoders saved in Hugging Face format: wav2vec2, data2vec-audio and Whisper.

The pipeline's offline default is a miniature wav2vec2 with random weights: it
has the real architecture (the same convolutional feature encoder, 20 ms frames,
25 ms receptive field; a transformer with fewer, narrower layers), so every
code path of the real model runs, but it knows nothing about speech. It is
committed under ``models/`` and can be rebuilt bit for bit with
``python -m ravdess_ser.models models/wav2vec2-tiny-random``.

The miniature data2vec-audio and Whisper models are built the same way, for the
tests (``--architecture data2vec-audio`` or ``whisper``); they are not committed.
The Whisper one is saved whole, encoder and a one-block decoder, in the layout of
the hub's ``openai/whisper-*`` checkpoints, with their 30 s window and 80 mel bins.

The benchmarks build a model with ``Wav2Vec2Config()`` defaults, the
architecture of facebook/wav2vec2-base: it costs the same FLOPs as the real one
and needs no download.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# The narrowing every miniature wav2vec2-family model shares: 4 layers of width 64, a 64-channel CNN front end.
_TINY_ENCODER = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(64,) * 7,
    vocab_size=32,
)
TINY_CONFIG = _TINY_ENCODER | dict(num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8)
# data2vec-audio-base's layout (5 positional convolutions of kernel 19, layer-norm feature encoder), narrowed.
# 16 channels per positional-convolution group: bfloat16 kernels with 8 or fewer are wrong on some CPUs (fast_mode.py).
TINY_DATA2VEC_AUDIO_CONFIG = _TINY_ENCODER | dict(num_conv_pos_embedding_groups=4)
# Whisper's encoder with its real front end (80 mel bins, 1500 frames = 30 s), narrowed; a token-free tiny decoder.
TINY_WHISPER_CONFIG = dict(
    d_model=64,
    encoder_layers=4,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    decoder_layers=1,
    decoder_attention_heads=4,
    decoder_ffn_dim=128,
    vocab_size=32,
    max_target_positions=32,
    # The default special tokens (50256, ...) lie outside a 32-token vocabulary.
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=1,
    decoder_start_token_id=1,
    suppress_tokens=None,
    begin_suppress_tokens=None,
)


def _save_seeded(model_class, config, extractor, out_dir: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    model_class(config).eval().save_pretrained(out_dir)
    extractor.save_pretrained(out_dir)
    return out_dir


def save_random_wav2vec2(out_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """Save a seeded, randomly initialised ``Wav2Vec2Model`` and its feature extractor to ``out_dir``."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    # wav2vec2-base's preprocessing: per-utterance zero mean / unit variance, no attention mask.
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    return _save_seeded(Wav2Vec2Model, Wav2Vec2Config(**config_overrides), extractor, out_dir, seed)


def save_random_data2vec_audio(out_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """Save a seeded, randomly initialised ``Data2VecAudioModel`` and its feature extractor to ``out_dir``."""
    from transformers import Data2VecAudioConfig, Data2VecAudioModel, Wav2Vec2FeatureExtractor

    # facebook/data2vec-audio-base's preprocessing: zero mean / unit variance, with an attention mask for batches.
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    return _save_seeded(Data2VecAudioModel, Data2VecAudioConfig(**config_overrides), extractor, out_dir, seed)


def save_random_whisper(out_dir: Path, seed: int = 0, window_seconds: int = 30, **config_overrides) -> Path:
    """Save a seeded, randomly initialised ``WhisperForConditionalGeneration`` and its log-mel feature extractor.

    ``window_seconds`` is the encoder's one input window: Whisper's is 30 s (1500 frames); a shorter one makes a
    model that runs the same code on a fraction of the work (the end-to-end pipeline tests).
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    # 50 encoder frames per second: 100 mel frames per second, halved by the second convolution's stride.
    config = WhisperConfig(max_source_positions=50 * window_seconds, **config_overrides)
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=window_seconds, dither=0.0)
    return _save_seeded(WhisperForConditionalGeneration, config, extractor, out_dir, seed)


def save_tiny_wav2vec2(out_dir: Path, seed: int = 0) -> Path:
    return save_random_wav2vec2(out_dir, seed, **TINY_CONFIG)


def save_tiny_data2vec_audio(out_dir: Path, seed: int = 0) -> Path:
    return save_random_data2vec_audio(out_dir, seed, **TINY_DATA2VEC_AUDIO_CONFIG)


def save_tiny_whisper(out_dir: Path, seed: int = 0, window_seconds: int = 30) -> Path:
    return save_random_whisper(out_dir, seed, window_seconds, **TINY_WHISPER_CONFIG)


TINY_MODELS = {"wav2vec2": save_tiny_wav2vec2, "data2vec-audio": save_tiny_data2vec_audio, "whisper": save_tiny_whisper}


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a miniature random speech encoder (the offline default: wav2vec2).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--architecture", choices=sorted(TINY_MODELS), default="wav2vec2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    TINY_MODELS[args.architecture](args.out_dir, args.seed)


if __name__ == "__main__":
    main()
