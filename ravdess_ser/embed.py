"""wav2vec2 frame embeddings through Hugging Face ``transformers``.

One ``(time, features)`` float32 array per clip, from a chosen transformer
layer. ``layer`` counts transformer blocks: 0 is the transformer's input (the
projected CNN features plus the convolutional position embedding), ``k`` is the
output of block ``k``, and ``-1`` is the model's ``last_hidden_state``. Blocks
above the chosen layer are removed from the model before it runs, so a shallow
layer costs only what it needs.

Each clip is embedded on its own, so a clip's result never depends on what
else was in a batch (wav2vec2-base's group norm makes padded batches differ).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ravdess_ser.cli import param
from ravdess_ser.atomic import atomic_path, remove_stale_temporaries
from ravdess_ser.audio import is_wav, read_audio, write_skip_report
from ravdess_ser.device import resolve_device
from ravdess_ser.errors import PipelineError

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EmbedConfig:
    """Which model, which layer, and where and how to run it."""

    model: str = param("models/wav2vec2-tiny-random", "a local Hugging Face model folder, or a hub id such as facebook/wav2vec2-base")
    revision: str | None = param(None, "hub revision (commit hash) to pin a hub model to; ignored for local folders")
    layer: int = param(-1, "transformer layer to keep: 0 = transformer input, k = output of block k, -1 = last hidden state")
    device: str = param("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:1, ...")
    dtype: str = param("float32", "model weights and compute dtype: float32, bfloat16 or float16")


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (huggingface_hub would retry for a minute)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_pretrained(config: EmbedConfig):
    """The feature extractor and model: from a local folder, the HF cache, or the hub, in that order."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    def load(source: str, **kwargs):
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, **kwargs)
        return extractor, Wav2Vec2Model.from_pretrained(source, **kwargs)

    folder = Path(config.model).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise PipelineError("model folder has no config.json (expected a Hugging Face model folder)", folder)
        try:
            return load(str(folder))
        except (OSError, ValueError) as error:
            raise PipelineError(f"cannot load a wav2vec2 model from this folder ({error})", folder) from None
    if _looks_like_path(config.model):
        raise PipelineError("model folder does not exist (embed.model)", folder)
    try:
        return load(config.model, revision=config.revision, local_files_only=True)
    except OSError:
        pass
    if hub_reachable():
        try:
            return load(config.model, revision=config.revision)
        except OSError as error:
            raise PipelineError(f"cannot load '{config.model}' from the Hugging Face hub ({error})") from None
    revision = f" --revision {config.revision}" if config.revision else ""
    raise PipelineError(
        f"'{config.model}' (revision {config.revision or 'main'}) is neither a local model folder nor in the "
        "Hugging Face cache, and the hub cannot be reached. On a machine with internet access run "
        f"`hf download {config.model}{revision}` and copy ~/.cache/huggingface to this machine, or save the "
        "model with save_pretrained() and set embed.model to that folder."
    )


def truncate_to_layer(model, layer: int):
    """Drop the transformer blocks above ``layer`` so they are never computed."""
    import torch

    num_layers = model.config.num_hidden_layers
    if layer == -1 or layer == num_layers:
        return model
    if not 0 <= layer < num_layers:
        raise PipelineError(
            f"embed.layer={layer} is out of range: this model has {num_layers} transformer layers "
            f"(use 0..{num_layers}, or -1 for the last hidden state)"
        )
    model.encoder.layers = model.encoder.layers[:layer]
    if model.config.do_stable_layer_norm:
        # Pre-LN models apply a final LayerNorm after the last block only; block k's own output has none.
        model.encoder.layer_norm = torch.nn.Identity()
    return model


class Wav2Vec2Embedder:
    """A loaded model, ready to turn 16 kHz mono waveforms into frame embeddings."""

    def __init__(self, config: EmbedConfig):
        import torch

        if config.dtype not in DTYPES:
            raise PipelineError(f"embed.dtype={config.dtype!r} is not one of {', '.join(DTYPES)}")
        self.config = config
        self.device = resolve_device(config.device)
        self.extractor, model = _load_pretrained(config)
        self.sample_rate = self.extractor.sampling_rate
        self.receptive_field = _receptive_field(model.config)
        model = truncate_to_layer(model, config.layer)
        self.model = model.to(self.device, dtype=getattr(torch, config.dtype)).eval()

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """Embed one clip: ``(samples,)`` float at the model's rate -> ``(frames, features)`` float32."""
        import torch

        if samples.shape[0] < self.receptive_field:
            raise PipelineError(
                f"clip has {samples.shape[0]} samples, fewer than the model's receptive field "
                f"({self.receptive_field} samples = {1000 * self.receptive_field / self.sample_rate:.0f} ms)"
            )
        inputs = self.extractor(samples, sampling_rate=self.sample_rate, return_tensors="pt")
        input_values = inputs.input_values.to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            hidden = self.model(input_values).last_hidden_state
        return hidden[0].float().cpu().numpy()


def _receptive_field(model_config) -> int:
    field = 1
    for kernel, stride in zip(reversed(model_config.conv_kernel), reversed(model_config.conv_stride)):
        field = (field - 1) * stride + kernel
    return field


def embed_actor(embedder: Wav2Vec2Embedder, audio_dir: Path, out_dir: Path, progress: bool = True) -> list[Path]:
    """Embed every WAV of one actor folder to ``out_dir/<clip>.npy``; skipped clips go to ``skipped.tsv``."""
    from tqdm import tqdm

    audio_dir, out_dir = Path(audio_dir), Path(out_dir)
    if not audio_dir.is_dir():
        raise PipelineError("audio folder does not exist", audio_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    wavs = sorted(path for path in audio_dir.iterdir() if is_wav(path))
    skipped, written = [], []
    for path in tqdm(wavs, desc=f"embed {audio_dir.name}", unit="clip", disable=not progress):
        try:
            samples, rate = read_audio(path)
            if rate != embedder.sample_rate:
                raise PipelineError(f"sample rate is {rate} Hz, the model expects {embedder.sample_rate} Hz")
            features = embedder.embed(samples)
        except PipelineError as error:
            skipped.append((path.name, error.reason))
            log.warning("skipped %s: %s", path, error.reason)
            continue
        target = out_dir / (path.stem + ".npy")
        with atomic_path(target) as tmp:
            np.save(tmp, features)
        written.append(target)
    write_skip_report(out_dir, skipped)
    return written
